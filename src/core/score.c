/*
 * score.c — scorers: checking a scorer's JSON, the dispatch, and the text
 * scorers (exact, normalized, contains, numeric).  The JSON scorers are in
 * score_json.c, similarity in similarity.c, regex in sql/sql_eval.c (it
 * uses the server's regular expressions).
 */
#include "core/score.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/jsonschema.h"
#include "core/score_internal.h"

static const struct
{
	const char *name;
	LlmScorerType type;
}			scorer_types[] =
{
	{"exact", LLM_SCORER_EXACT},
	{"normalized", LLM_SCORER_NORMALIZED},
	{"contains", LLM_SCORER_CONTAINS},
	{"regex", LLM_SCORER_REGEX},
	{"json_valid", LLM_SCORER_JSON_VALID},
	{"json_schema", LLM_SCORER_JSON_SCHEMA},
	{"json_match", LLM_SCORER_JSON_MATCH},
	{"numeric", LLM_SCORER_NUMERIC},
	{"similarity", LLM_SCORER_SIMILARITY},
	{"embedding_similarity", LLM_SCORER_EMBEDDING_SIMILARITY},
	{"judge", LLM_SCORER_JUDGE},
	{"function", LLM_SCORER_FUNCTION},
};

#define N_SCORER_TYPES (sizeof(scorer_types) / sizeof(scorer_types[0]))

/* "an embedding_similarity scorer", "a numeric scorer" */
static const char *
article(const char *type)
{
	return strchr("aeiou", type[0]) != NULL && type[0] != '\0' ? "an" : "a";
}

static bool
bool_option(const cJSON *scorer, const char *name, bool *value, const char *type,
			char *err, size_t errlen)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(scorer, name);

	if (item == NULL || cJSON_IsNull(item))
		return true;
	if (!cJSON_IsBool(item))
	{
		snprintf(err, errlen, "option \"%s\" of %s %s scorer must be a boolean", name, article(type), type);
		return false;
	}
	*value = cJSON_IsTrue(item);
	return true;
}

/* A finite number >= 0 (and <= max when max >= 0). */
static bool
number_option(const cJSON *scorer, const char *name, double *value, double max,
			  const char *type, char *err, size_t errlen)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(scorer, name);

	if (item == NULL || cJSON_IsNull(item))
		return true;
	if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble < 0 ||
		(max >= 0 && item->valuedouble > max))
	{
		if (max >= 0)
			snprintf(err, errlen, "option \"%s\" of %s %s scorer must be a number between 0 and %g",
					 name, article(type), type, max);
		else
			snprintf(err, errlen, "option \"%s\" of %s %s scorer must be a number of at least 0",
					 name, article(type), type);
		return false;
	}
	*value = item->valuedouble;
	return true;
}

static bool
string_option(const cJSON *scorer, const char *name, const char **value, const char *type,
			  char *err, size_t errlen)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(scorer, name);

	if (item == NULL || cJSON_IsNull(item))
		return true;
	if (!cJSON_IsString(item))
	{
		snprintf(err, errlen, "option \"%s\" of %s %s scorer must be a string", name, article(type), type);
		return false;
	}
	*value = item->valuestring;
	return true;
}

bool
llm_scorer_parse(const cJSON *scorer, LlmScorer *out, char *err, size_t errlen)
{
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(scorer, "type");
	const char *name;
	const char *flags = NULL;
	size_t		i;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(scorer))
	{
		snprintf(err, errlen, "a scorer must be a JSON object with a \"type\"");
		return false;
	}
	if (!cJSON_IsString(type))
	{
		snprintf(err, errlen, "a scorer needs a \"type\" string");
		return false;
	}
	for (i = 0; i < N_SCORER_TYPES; i++)
		if (strcmp(type->valuestring, scorer_types[i].name) == 0)
			break;
	if (i == N_SCORER_TYPES)
	{
		char		excerpt[64 + 4];

		snprintf(err, errlen, "unknown scorer type \"%s\"",
				 llm_score_excerpt(excerpt, type->valuestring, 64));
		return false;
	}
	out->type = scorer_types[i].type;
	out->name = name = scorer_types[i].name;
	out->threshold = out->type == LLM_SCORER_SIMILARITY ||
		out->type == LLM_SCORER_EMBEDDING_SIMILARITY ? 0.8 : 1.0;
	if (out->type == LLM_SCORER_JUDGE || out->type == LLM_SCORER_FUNCTION)
		return true;			/* their options are the evaluation's */
	if (!number_option(scorer, "threshold", &out->threshold, 1, name, err, errlen))
		return false;

	switch (out->type)
	{
		case LLM_SCORER_CONTAINS:
			return bool_option(scorer, "case_sensitive", &out->case_sensitive, name, err, errlen);
		case LLM_SCORER_REGEX:
			if (!string_option(scorer, "pattern", &out->pattern, name, err, errlen) ||
				!string_option(scorer, "flags", &flags, name, err, errlen))
				return false;
			for (const char *f = flags; f != NULL && *f != '\0'; f++)
			{
				if (*f != 'i')
				{
					snprintf(err, errlen, "option \"flags\" of a regex scorer may only hold \"i\" (ignore case)");
					return false;
				}
				out->ignore_case = true;
			}
			return true;
		case LLM_SCORER_JSON_VALID:
			/* "type" is the scorer's own: the JSON type is "json_type" */
			{
				const cJSON *jt = cJSON_GetObjectItemCaseSensitive(scorer, "json_type");
				static const char *const names[] = {"object", "array", "string", "number", "boolean", "null"};
				size_t		j;

				if (jt == NULL || cJSON_IsNull(jt))
					return true;
				for (j = 0; cJSON_IsString(jt) && j < sizeof(names) / sizeof(names[0]); j++)
					if (strcmp(jt->valuestring, names[j]) == 0)
						break;
				if (!cJSON_IsString(jt) || j == sizeof(names) / sizeof(names[0]))
				{
					snprintf(err, errlen, "option \"json_type\" of a json_valid scorer must be one of object, array, string, number, boolean, null");
					return false;
				}
				out->json_type = names[j];
			}
			return true;
		case LLM_SCORER_JSON_SCHEMA:
			out->schema = cJSON_GetObjectItemCaseSensitive(scorer, "schema");
			if (!cJSON_IsObject(out->schema))
			{
				snprintf(err, errlen, "a json_schema scorer needs a \"schema\" object");
				return false;
			}
			return llm_json_schema_check(out->schema, err, errlen);
		case LLM_SCORER_JSON_MATCH:
			{
				const cJSON *fields = cJSON_GetObjectItemCaseSensitive(scorer, "fields");
				const cJSON *field;

				if (fields == NULL || cJSON_IsNull(fields))
					return true;
				if (!cJSON_IsArray(fields))
				{
					snprintf(err, errlen, "option \"fields\" of a json_match scorer must be an array of field names");
					return false;
				}
				cJSON_ArrayForEach(field, fields)
				{
					if (!cJSON_IsString(field))
					{
						snprintf(err, errlen, "option \"fields\" of a json_match scorer must be an array of field names");
						return false;
					}
					if (!llm_json_pointer_valid(field->valuestring))
					{
						snprintf(err, errlen, "option \"fields\" of a json_match scorer: \"%.80s\" is not a valid JSON Pointer (\"~\" must be followed by 0 or 1)",
								 field->valuestring);
						return false;
					}
				}
				out->fields = fields;
				return true;
			}
		case LLM_SCORER_NUMERIC:
			return bool_option(scorer, "extract", &out->extract, name, err, errlen) &&
				number_option(scorer, "tolerance", &out->tolerance, -1, name, err, errlen) &&
				number_option(scorer, "relative", &out->relative, -1, name, err, errlen);
		case LLM_SCORER_SIMILARITY:
			return bool_option(scorer, "normalize", &out->normalize, name, err, errlen);
		case LLM_SCORER_EMBEDDING_SIMILARITY:
			/* no default model: an evaluation's scores must not change with a setting */
			if (!string_option(scorer, "model", &out->model, name, err, errlen))
				return false;
			if (out->model == NULL || out->model[0] == '\0')
			{
				snprintf(err, errlen, "an embedding_similarity scorer needs a \"model\": the name of an embedding model");
				return false;
			}
			return true;
		default:
			return true;
	}
}

void
llm_score_unknown(LlmScore *out, const char *reason)
{
	out->has_score = false;
	out->score = 0;
	out->passed = false;
	snprintf(out->reason, sizeof(out->reason), "%s", reason);
}

void
llm_score_set(LlmScore *out, const LlmScorer *scorer, double score, const char *reason_fmt,...)
{
	if (!(score >= 0))
		score = 0;				/* NaN too */
	if (score > 1)
		score = 1;
	out->has_score = true;
	out->score = score;
	out->passed = score >= scorer->threshold;
	out->reason[0] = '\0';
	if (reason_fmt != NULL && reason_fmt[0] != '\0')
	{
		va_list		ap;

		va_start(ap, reason_fmt);
		vsnprintf(out->reason, sizeof(out->reason), reason_fmt, ap);
		va_end(ap);
		/* a cut reason must not end inside a UTF-8 character */
		llm_score_excerpt(out->reason, out->reason, sizeof(out->reason) - 4);
	}
}

char *
llm_score_excerpt(char *buf, const char *text, size_t max)
{
	size_t		len = strlen(text);
	size_t		cut;

	if (len <= max)
	{
		memmove(buf, text, len + 1);
		return buf;
	}
	cut = max;
	/* back off continuation bytes, then the lead byte of the cut character */
	while (cut > 0 && ((unsigned char) text[cut] & 0xC0) == 0x80)
		cut--;
	memmove(buf, text, cut);
	memcpy(buf + cut, "...", 4);
	return buf;
}

char *
llm_score_expected_text(const cJSON *expected)
{
	if (cJSON_IsString(expected))
	{
		size_t		len = strlen(expected->valuestring);
		char	   *copy = cJSON_malloc(len + 1);

		if (copy != NULL)
			memcpy(copy, expected->valuestring, len + 1);
		return copy;
	}
	return cJSON_PrintUnformatted(expected);
}

static inline bool
ascii_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static inline unsigned char
ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

char *
llm_score_normalize(const char *text)
{
	char	   *out = cJSON_malloc(strlen(text) + 1);
	char	   *w = out;
	bool		space = false;

	if (out == NULL)
		return NULL;
	for (const unsigned char *p = (const unsigned char *) text; *p != '\0'; p++)
	{
		if (ascii_space(*p))
			space = true;
		else if (*p < 0x80 && ispunct(*p))
			continue;
		else
		{
			if (space && w != out)
				*w++ = ' ';
			space = false;
			*w++ = (char) ascii_lower(*p);
		}
	}
	*w = '\0';
	return out;
}

static char *
lower_copy(const char *text)
{
	size_t		len = strlen(text);
	char	   *out = cJSON_malloc(len + 1);

	if (out != NULL)
		for (size_t i = 0; i <= len; i++)
			out[i] = (char) ascii_lower((unsigned char) text[i]);
	return out;
}

/* The length of a number at p, 0 if none starts there. */
static size_t
number_length(const char *p)
{
	const char *q = p;
	size_t		digits = 0;

	if (*q == '+' || *q == '-')
		q++;
	while (*q >= '0' && *q <= '9')
		q++, digits++;
	if (*q == '.' && q[1] >= '0' && q[1] <= '9')
	{
		q++;
		while (*q >= '0' && *q <= '9')
			q++, digits++;
	}
	else if (*q == '.' && digits > 0)
		q++;					/* "3." */
	if (digits == 0)
		return 0;
	if (*q == 'e' || *q == 'E')
	{
		const char *e = q + 1;

		if (*e == '+' || *e == '-')
			e++;
		if (*e >= '0' && *e <= '9')
		{
			while (*e >= '0' && *e <= '9')
				e++;
			q = e;
		}
	}
	return (size_t) (q - p);
}

static bool
convert_number(const char *p, size_t len, double *value)
{
	char		buf[64];
	char	   *copy = len < sizeof(buf) ? buf : cJSON_malloc(len + 1);
	double		v;

	if (copy == NULL)
		return false;
	memcpy(copy, p, len);
	copy[len] = '\0';
	v = strtod(copy, NULL);
	if (copy != buf)
		cJSON_free(copy);
	if (!isfinite(v))
		return false;
	*value = v;
	return true;
}

bool
llm_score_parse_number(const char *text, bool extract, double *value)
{
	const char *p = text;
	size_t		len;

	if (!extract)
	{
		while (ascii_space((unsigned char) *p))
			p++;
		len = number_length(p);
		if (len == 0)
			return false;
		for (const char *q = p + len; *q != '\0'; q++)
			if (!ascii_space((unsigned char) *q))
				return false;
		return convert_number(p, len, value);
	}
	for (; *p != '\0'; p++)
	{
		/* a sign only when it is not a hyphen inside a word ("A-1" is 1) */
		if ((*p == '-' || *p == '+') && p > text && isalnum((unsigned char) p[-1]))
			continue;
		/* nor digits that continue a word ("A1" has no number) */
		if (p > text && (isalnum((unsigned char) p[-1]) || p[-1] == '.') &&
			*p >= '0' && *p <= '9')
			continue;
		len = number_length(p);
		if (len > 0)
			return convert_number(p, len, value);
	}
	return false;
}

static bool
oom(char *err, size_t errlen)
{
	snprintf(err, errlen, "out of memory");
	return false;
}

static bool
score_exact(const LlmScorer *s, const char *output, const cJSON *expected, LlmScore *out,
			char *err, size_t errlen)
{
	char		a[60 + 4];
	char		b[60 + 4];

	if (cJSON_IsString(expected))
	{
		if (strcmp(output, expected->valuestring) == 0)
			llm_score_set(out, s, 1, NULL);
		else
			llm_score_set(out, s, 0, "expected \"%s\", got \"%s\"",
						  llm_score_excerpt(a, expected->valuestring, 60),
						  llm_score_excerpt(b, output, 60));
		return true;
	}
	else
	{
		/* the same JSON value, however it is spelled */
		cJSON	   *parsed = cJSON_Parse(output);
		bool		equal = parsed != NULL && llm_json_equal(parsed, expected);
		char	   *text;

		cJSON_Delete(parsed);
		if (equal)
		{
			llm_score_set(out, s, 1, NULL);
			return true;
		}
		if ((text = cJSON_PrintUnformatted(expected)) == NULL)
			return oom(err, errlen);
		llm_score_set(out, s, 0, "expected %s, got \"%s\"",
					  llm_score_excerpt(a, text, 60), llm_score_excerpt(b, output, 60));
		cJSON_free(text);
		return true;
	}
}

static bool
score_normalized(const LlmScorer *s, const char *output, const cJSON *expected,
				 LlmScore *out, char *err, size_t errlen)
{
	char	   *want = llm_score_expected_text(expected);
	char	   *a = want ? llm_score_normalize(want) : NULL;
	char	   *b = a ? llm_score_normalize(output) : NULL;
	char		ea[60 + 4];
	char		eb[60 + 4];

	if (b == NULL)
	{
		cJSON_free(want);
		cJSON_free(a);
		return oom(err, errlen);
	}
	if (strcmp(a, b) == 0)
		llm_score_set(out, s, 1, NULL);
	else
		llm_score_set(out, s, 0, "expected \"%s\", got \"%s\" (normalized)",
					  llm_score_excerpt(ea, a, 60), llm_score_excerpt(eb, b, 60));
	cJSON_free(want);
	cJSON_free(a);
	cJSON_free(b);
	return true;
}

static bool
score_contains(const LlmScorer *s, const char *output, const cJSON *expected,
			   LlmScore *out, char *err, size_t errlen)
{
	char	   *hay = s->case_sensitive ? (char *) output : lower_copy(output);
	const cJSON *single = cJSON_IsArray(expected) ? NULL : expected;
	const cJSON *item = single ? single : expected->child;
	int			total = 0;
	int			found = 0;
	char		missing[80 + 4] = "";
	int			n_missing = 0;

	if (hay == NULL)
		return oom(err, errlen);
	for (; item != NULL; item = single ? NULL : item->next)
	{
		char	   *needle = llm_score_expected_text(item);
		char	   *folded = needle && !s->case_sensitive ? lower_copy(needle) : needle;

		if (folded == NULL)
		{
			cJSON_free(needle);
			if (hay != output)
				cJSON_free(hay);
			return oom(err, errlen);
		}
		total++;
		if (strstr(hay, folded) != NULL)
			found++;
		else if (n_missing++ == 0)
			llm_score_excerpt(missing, needle, 80);
		if (folded != needle)
			cJSON_free(folded);
		cJSON_free(needle);
	}
	if (hay != output)
		cJSON_free(hay);
	if (total == 0)
		llm_score_set(out, s, 1, NULL);
	else if (n_missing == 0)
		llm_score_set(out, s, 1, NULL);
	else if (n_missing == 1)
		llm_score_set(out, s, (double) found / total, "missing \"%s\"", missing);
	else
		llm_score_set(out, s, (double) found / total, "missing \"%s\" and %d more",
					  missing, n_missing - 1);
	return true;
}

static bool
score_numeric(const LlmScorer *s, const char *output, const cJSON *expected, LlmScore *out)
{
	double		want;
	double		got;
	double		allowed;
	char		excerpt[60 + 4];

	if (cJSON_IsNumber(expected) && isfinite(expected->valuedouble))
		want = expected->valuedouble;
	else if (!cJSON_IsString(expected) ||
			 !llm_score_parse_number(expected->valuestring, false, &want))
	{
		llm_score_unknown(out, "the expected answer is not a number");
		return true;
	}
	if (!llm_score_parse_number(output, s->extract, &got))
	{
		llm_score_set(out, s, 0, s->extract ? "no number in the output \"%s\"" :
					  "the output \"%s\" is not a number",
					  llm_score_excerpt(excerpt, output, 60));
		return true;
	}
	allowed = fmax(s->tolerance, s->relative * fabs(want));
	if (fabs(got - want) <= allowed)
		llm_score_set(out, s, 1, NULL);
	else
		llm_score_set(out, s, 0, "expected %.15g, got %.15g", want, got);
	return true;
}

bool
llm_score_parsed(const LlmScorer *s, const char *output, const cJSON *expected,
				 const cJSON *vars, LlmScore *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	switch (s->type)
	{
		case LLM_SCORER_JUDGE:
		case LLM_SCORER_FUNCTION:
			snprintf(err, errlen, "scorer \"%s\" is run by llm_eval_run, not by llm_eval_score",
					 s->name);
			return false;
		case LLM_SCORER_REGEX:
			snprintf(err, errlen, "scorer \"regex\" is scored by the server's regular expressions");
			return false;
		case LLM_SCORER_EMBEDDING_SIMILARITY:
			snprintf(err, errlen, "scorer \"embedding_similarity\" is scored by the server, which embeds the texts");
			return false;
		default:
			break;
	}
	if (output == NULL)
	{
		llm_score_unknown(out, "no output");
		return true;
	}
	switch (s->type)
	{
		case LLM_SCORER_JSON_VALID:
			return llm_score_json_valid(s, output, out, err, errlen);
		case LLM_SCORER_JSON_SCHEMA:
			return llm_score_json_schema(s, output, out, err, errlen);
		default:
			break;
	}
	if (expected == NULL)
	{
		llm_score_unknown(out, "no expected answer");
		return true;
	}
	switch (s->type)
	{
		case LLM_SCORER_EXACT:
			return score_exact(s, output, expected, out, err, errlen);
		case LLM_SCORER_NORMALIZED:
			return score_normalized(s, output, expected, out, err, errlen);
		case LLM_SCORER_CONTAINS:
			return score_contains(s, output, expected, out, err, errlen);
		case LLM_SCORER_JSON_MATCH:
			return llm_score_json_match(s, output, expected, out, err, errlen);
		case LLM_SCORER_NUMERIC:
			return score_numeric(s, output, expected, out);
		case LLM_SCORER_SIMILARITY:
			return llm_score_similarity(s, output, expected, out, err, errlen);
		default:
			snprintf(err, errlen, "scorer \"%s\" is not scored here", s->name);
			return false;
	}
}

bool
llm_score(const cJSON *scorer, const char *output, const cJSON *expected,
		  const cJSON *vars, LlmScore *out, char *err, size_t errlen)
{
	LlmScorer	s;

	memset(out, 0, sizeof(*out));
	if (!llm_scorer_parse(scorer, &s, err, errlen))
		return false;
	return llm_score_parsed(&s, output, expected, vars, out, err, errlen);
}
