/*
 * score_json.c — the JSON scorers: json_valid (the output parses as JSON,
 * optionally of one type), json_schema (it conforms to a schema, through
 * core/jsonschema.c) and json_match (named fields, or JSON Pointers to values
 * inside, equal the expected ones),
 * and JSON equality by value.
 *
 * The output is parsed whole by cJSON (white space around it allowed,
 * nothing else: no Markdown fences), nested at most CJSON_NESTING_LIMIT
 * deep, which also bounds the recursion of llm_json_equal.
 */
#include "core/score.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/jsonschema.h"
#include "core/score_internal.h"

bool
llm_json_equal(const cJSON *a, const cJSON *b)
{
	const cJSON *x;
	const cJSON *y;

	if (a == NULL || b == NULL)
		return a == b;
	if (cJSON_IsNumber(a) && cJSON_IsNumber(b))
		return a->valuedouble == b->valuedouble;
	if (cJSON_IsString(a) && cJSON_IsString(b))
		return strcmp(a->valuestring, b->valuestring) == 0;
	if (cJSON_IsBool(a) && cJSON_IsBool(b))
		return cJSON_IsTrue(a) == cJSON_IsTrue(b);
	if (cJSON_IsNull(a) && cJSON_IsNull(b))
		return true;
	if (cJSON_IsArray(a) && cJSON_IsArray(b))
	{
		for (x = a->child, y = b->child; x != NULL && y != NULL; x = x->next, y = y->next)
			if (!llm_json_equal(x, y))
				return false;
		return x == NULL && y == NULL;
	}
	if (cJSON_IsObject(a) && cJSON_IsObject(b))
	{
		int			na = 0;
		int			nb = 0;

		for (x = a->child; x != NULL; x = x->next)
			na++;
		for (y = b->child; y != NULL; y = y->next)
			nb++;
		if (na != nb)
			return false;
		for (x = a->child; x != NULL; x = x->next)
		{
			/* the key's first occurrence in each (the one a reader sees) */
			if (cJSON_GetObjectItemCaseSensitive(a, x->string) != x)
				continue;
			if (!llm_json_equal(x, cJSON_GetObjectItemCaseSensitive(b, x->string)))
				return false;
		}
		return true;
	}
	return false;
}

static const char *
json_type_name(const cJSON *item)
{
	if (cJSON_IsObject(item))
		return "object";
	if (cJSON_IsArray(item))
		return "array";
	if (cJSON_IsString(item))
		return "string";
	if (cJSON_IsNumber(item))
		return "number";
	if (cJSON_IsBool(item))
		return "boolean";
	return "null";
}

static cJSON *
parse_output(const char *output)
{
	return cJSON_ParseWithOpts(output, NULL, true);
}

bool
llm_score_json_valid(const LlmScorer *s, const char *output, LlmScore *out,
					 char *err, size_t errlen)
{
	cJSON	   *parsed = parse_output(output);

	if (parsed == NULL)
		llm_score_set(out, s, 0, "the output is not JSON");
	else if (s->json_type != NULL && strcmp(json_type_name(parsed), s->json_type) != 0)
		llm_score_set(out, s, 0, "the output is JSON but not %s %s, it is %s %s",
					  s->json_type[0] == 'a' || s->json_type[0] == 'o' ? "an" : "a", s->json_type,
					  json_type_name(parsed)[0] == 'a' || json_type_name(parsed)[0] == 'o' ? "an" : "a",
					  json_type_name(parsed));
	else
		llm_score_set(out, s, 1, NULL);
	cJSON_Delete(parsed);
	return true;
}

bool
llm_score_json_schema(const LlmScorer *s, const char *output, LlmScore *out,
					  char *err, size_t errlen)
{
	cJSON	   *parsed = parse_output(output);
	char		violation[LLM_SCORE_REASON_LEN];

	if (parsed == NULL)
		llm_score_set(out, s, 0, "the output is not JSON");
	else if (llm_json_validate(parsed, s->schema, violation, sizeof(violation)))
		llm_score_set(out, s, 1, NULL);
	else
		llm_score_set(out, s, 0, "%s", violation);
	cJSON_Delete(parsed);
	return true;
}

bool
llm_json_pointer_valid(const char *pointer)
{
	if (pointer[0] != '/')
		return true;			/* a top-level key, taken as it is */
	for (const char *p = pointer; *p; p++)
		if (*p == '~' && p[1] != '0' && p[1] != '1')
			return false;
	return true;
}

/*
 * The value a field names in json: a top-level key, or (starting with "/")
 * a JSON Pointer (RFC 6901: "/a/b/0", "~1" for "/" and "~0" for "~" in a
 * name; a number in an array is its index).  NULL when there is none.
 */
static const cJSON *
field_value(const cJSON *json, const char *field)
{
	const char *p = field;
	char		token[256];

	if (field[0] != '/')
		return cJSON_GetObjectItemCaseSensitive(json, field);
	while (json != NULL && *p == '/')
	{
		size_t		n = 0;

		for (p++; *p && *p != '/'; p++)
		{
			char		c = *p;

			if (c == '~')
				c = *++p == '1' ? '/' : '~';
			if (n + 1 >= sizeof(token))
				return NULL;	/* no key is that long in what we compare */
			token[n++] = c;
		}
		token[n] = '\0';
		if (cJSON_IsArray(json))
		{
			char	   *end;
			long		index;

			if (n == 0 || strspn(token, "0123456789") != n || (n > 1 && token[0] == '0'))
				return NULL;
			index = strtol(token, &end, 10);
			json = index < INT_MAX ? cJSON_GetArrayItem(json, (int) index) : NULL;
		}
		else if (cJSON_IsObject(json))
			json = cJSON_GetObjectItemCaseSensitive(json, token);
		else
			return NULL;
	}
	return json;
}

bool
llm_score_json_match(const LlmScorer *s, const char *output, const cJSON *expected,
					 LlmScore *out, char *err, size_t errlen)
{
	cJSON	   *parsed;
	const cJSON *field;
	int			total = 0;
	int			equal = 0;
	int			differ = 0;
	char		first[80 + 4] = "";
	bool		first_missing = false;

	if (!cJSON_IsObject(expected))
	{
		llm_score_unknown(out, "the expected answer is not a JSON object");
		return true;
	}
	parsed = parse_output(output);
	if (!cJSON_IsObject(parsed))
	{
		llm_score_set(out, s, 0, parsed ? "the output is not a JSON object" : "the output is not JSON");
		cJSON_Delete(parsed);
		return true;
	}
	for (field = s->fields ? s->fields->child : expected->child; field != NULL; field = field->next)
	{
		const char *name = s->fields ? field->valuestring : field->string;
		const cJSON *want = s->fields ? field_value(expected, name)
			: cJSON_GetObjectItemCaseSensitive(expected, name);
		const cJSON *got = s->fields ? field_value(parsed, name)
			: cJSON_GetObjectItemCaseSensitive(parsed, name);

		/* a key listed twice counts once */
		if (s->fields == NULL && want != field)
			continue;
		total++;
		if (llm_json_equal(want, got))
			equal++;
		else if (differ++ == 0)
		{
			llm_score_excerpt(first, name, 80);
			first_missing = got == NULL;
		}
	}
	cJSON_Delete(parsed);
	if (differ == 0)
		llm_score_set(out, s, 1, NULL);
	else
		llm_score_set(out, s, (double) equal / total, "field \"%s\" %s%s", first,
					  first_missing ? "is missing" : "differs",
					  differ > 1 ? " (and more fields)" : "");
	return true;
}
