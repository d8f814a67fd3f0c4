/*
 * secrets.c — redaction, excerpts, key_env and host patterns, and the
 * checks on incoming and outgoing JSON.
 *
 * Pure code (see secrets.h).
 */
#include "core/secrets.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char redact_mask[] = "[redacted]";

#define MASK_LEN (sizeof(redact_mask) - 1)

char *
llm_redact_cut(const char *text, size_t len, const char *secret,
			   size_t max_bytes, bool printable)
{
	size_t		secret_len = secret != NULL ? strlen(secret) : 0;
	size_t		keep = len < max_bytes ? len : max_bytes;
	size_t		i = 0;
	size_t		o = 0;
	size_t		tail_start = 0; /* where the text after the last mask starts */
	bool		cut = false;
	char	   *out;

	if (text == NULL)
		return NULL;

	/*
	 * Room for: the kept bytes, a mask for every key they may hold (a mask
	 * may be longer than the key), one mask for a trailing prefix, "...".
	 */
	out = cJSON_malloc(keep + (secret_len > 0 ? (keep / secret_len + 1) * MASK_LEN : 0) +
					   MASK_LEN + 4);
	while (i < len)
	{
		unsigned char c;

		if (o >= max_bytes)
		{
			cut = true;
			break;
		}
		/* the key is redacted before the cut, so that the cut never splits it */
		if (secret_len > 0 && len - i >= secret_len &&
			memcmp(text + i, secret, secret_len) == 0)
		{
			memcpy(out + o, redact_mask, MASK_LEN);
			o += MASK_LEN;
			i += secret_len;
			tail_start = o;
			continue;
		}
		c = (unsigned char) text[i++];
		out[o++] = (printable && (c < 0x20 || c >= 0x7f)) ? ' ' : (char) c;
	}

	/* a cut inside a UTF-8 character drops its first bytes too */
	if (cut && !printable)
	{
		while (o > tail_start && ((unsigned char) text[i] & 0xC0) == 0x80)
		{
			o--;
			i--;
		}
	}

	/*
	 * The text may end inside the key: because we cut it, or because the
	 * provider (or a buffer) did.  Mask the longest prefix of the key that
	 * ends the text, if it is long enough to say something.
	 */
	if (secret_len > LLM_REDACT_MIN_PREFIX)
	{
		size_t		k = o - tail_start;

		if (k > secret_len - 1)
			k = secret_len - 1;
		for (; k >= LLM_REDACT_MIN_PREFIX; k--)
		{
			if (memcmp(out + o - k, secret, k) == 0)
			{
				o -= k;
				memcpy(out + o, redact_mask, MASK_LEN);
				o += MASK_LEN;
				break;
			}
		}
	}
	if (cut)
	{
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

static void
replace_string(char **field, char *value)
{
	cJSON_free(*field);
	*field = value;
}

/* An id or name the provider chose: redacted, trailing prefix included. */
static char *
redact_name(const char *text, const char *secret)
{
	return text != NULL ? llm_redact_cut(text, strlen(text), secret, SIZE_MAX, false) : NULL;
}

void
llm_chat_result_redact(LlmChatResult *result, const char *secret)
{
	if (secret == NULL || secret[0] == '\0')
		return;
	replace_string(&result->content, llm_redact(result->content, secret));
	replace_string(&result->refusal, llm_redact(result->refusal, secret));
	replace_string(&result->finish_reason, redact_name(result->finish_reason, secret));
	replace_string(&result->remote_model, redact_name(result->remote_model, secret));
	replace_string(&result->response_id, redact_name(result->response_id, secret));
	llm_json_redact(result->tool_calls, secret);
}

void
llm_json_redact(cJSON *json, const char *secret)
{
	cJSON	   *child;

	if (json == NULL || secret == NULL || secret[0] == '\0')
		return;
	if (json->string != NULL && !(json->type & cJSON_StringIsConst) &&
		strstr(json->string, secret) != NULL)
		replace_string(&json->string, llm_redact(json->string, secret));
	if (cJSON_IsString(json) && json->valuestring != NULL &&
		strstr(json->valuestring, secret) != NULL)
		replace_string(&json->valuestring, llm_redact(json->valuestring, secret));
	/* cJSON_Parse nests at most CJSON_NESTING_LIMIT deep: bounded recursion */
	for (child = json->child; child != NULL; child = child->next)
		llm_json_redact(child, secret);
}

static bool
same_char(char a, char b, bool ignore_case)
{
	return ignore_case ? tolower((unsigned char) a) == tolower((unsigned char) b) : a == b;
}

/* Does s[0..slen) match pattern[0..plen), "*" matching any run? */
static bool
glob_match(const char *pattern, size_t plen, const char *s, size_t slen, bool ignore_case)
{
	size_t		pi = 0;
	size_t		si = 0;
	size_t		star = SIZE_MAX;
	size_t		mark = 0;

	/* the classic greedy matcher: linear backtracking to the last star */
	while (si < slen)
	{
		if (pi < plen && pattern[pi] == '*')
		{
			star = pi++;
			mark = si;
		}
		else if (pi < plen && same_char(pattern[pi], s[si], ignore_case))
		{
			pi++;
			si++;
		}
		else if (star != SIZE_MAX)
		{
			pi = star + 1;
			si = ++mark;
		}
		else
			return false;
	}
	while (pi < plen && pattern[pi] == '*')
		pi++;
	return pi == plen;
}

/*
 * The next pattern of a comma-separated list, blanks trimmed; false at the
 * end.  Empty patterns are skipped.
 */
static bool
next_pattern(const char **cursor, const char **start, size_t *len)
{
	const char *p = *cursor;

	while (*p != '\0')
	{
		const char *end;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		*start = p;
		while (*p != '\0' && *p != ',')
			p++;
		end = p;
		while (end > *start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if (end > *start)
		{
			*len = end - *start;
			*cursor = p;
			return true;
		}
	}
	*cursor = p;
	return false;
}

bool
llm_pattern_list_match(const char *list, const char *name, bool ignore_case)
{
	const char *start;
	size_t		len;

	if (list == NULL || name == NULL)
		return false;
	while (next_pattern(&list, &start, &len))
		if (glob_match(start, len, name, strlen(name), ignore_case))
			return true;
	return false;
}

bool
llm_url_host(const char *url, char *host, size_t hostlen, int *port)
{
	const char *p;
	size_t		n = 0;
	int			default_port;

	if (url == NULL || hostlen == 0)
		return false;
	if (strncasecmp(url, "http://", 7) == 0)
	{
		p = url + 7;
		default_port = 80;
	}
	else if (strncasecmp(url, "https://", 8) == 0)
	{
		p = url + 8;
		default_port = 443;
	}
	else
		return false;

	if (*p == '[')
	{
		/* IPv6 address: hexadecimal digits, colons and dots (no zone id) */
		for (p++; *p != ']'; p++)
		{
			if (!isxdigit((unsigned char) *p) && *p != ':' && *p != '.')
				return false;
			if (n + 1 >= hostlen)
				return false;
			host[n++] = (char) tolower((unsigned char) *p);
		}
		p++;
	}
	else
	{
		for (; *p != '\0' && *p != ':' && *p != '/'; p++)
		{
			/* "@", "\", "?", "#", "%"...: libcurl might see another host */
			if (!isalnum((unsigned char) *p) && *p != '-' && *p != '.' && *p != '_')
				return false;
			if (n + 1 >= hostlen)
				return false;
			host[n++] = (char) tolower((unsigned char) *p);
		}
		/* "example.com." is "example.com" */
		if (n > 0 && host[n - 1] == '.')
			n--;
	}
	if (n == 0)
		return false;
	host[n] = '\0';

	*port = default_port;
	if (*p == ':')
	{
		long		value = 0;

		p++;
		if (!isdigit((unsigned char) *p))
			return false;
		for (; isdigit((unsigned char) *p); p++)
		{
			value = value * 10 + (*p - '0');
			if (value > 65535)
				return false;
		}
		if (value == 0)
			return false;
		*port = (int) value;
	}
	return *p == '\0' || *p == '/';
}

/* Does one allowed_hosts pattern (host pattern, optional ":port") match? */
static bool
host_pattern_match(const char *pattern, size_t len, const char *host, int port)
{
	const char *host_pattern = pattern;
	size_t		host_len = len;
	const char *port_pattern = NULL;
	size_t		port_len = 0;

	if (pattern[0] == '[')
	{
		const char *close = memchr(pattern, ']', len);

		if (close == NULL)
			return false;
		host_pattern = pattern + 1;
		host_len = close - host_pattern;
		if ((size_t) (close + 1 - pattern) < len)
		{
			if (close[1] != ':')
				return false;
			port_pattern = close + 2;
			port_len = len - (port_pattern - pattern);
		}
	}
	else
	{
		const char *colon = NULL;

		for (size_t i = 0; i < len; i++)
			if (pattern[i] == ':')
				colon = pattern + i;
		if (colon != NULL)
		{
			host_len = colon - pattern;
			port_pattern = colon + 1;
			port_len = len - host_len - 1;
		}
	}
	if (!glob_match(host_pattern, host_len, host, strlen(host), true))
		return false;
	if (port_pattern == NULL || (port_len == 1 && port_pattern[0] == '*'))
		return true;
	{
		char		digits[8];

		snprintf(digits, sizeof(digits), "%d", port);
		return port_len == strlen(digits) && memcmp(port_pattern, digits, port_len) == 0;
	}
}

bool
llm_host_allowed(const char *list, const char *url)
{
	const char *cursor = list;
	const char *start;
	size_t		len;
	char		host[256];
	int			port;

	if (list == NULL)
		return false;
	while (next_pattern(&cursor, &start, &len))
		if (len == 1 && start[0] == '*')
			return true;
	if (!llm_url_host(url, host, sizeof(host), &port))
		return false;
	cursor = list;
	while (next_pattern(&cursor, &start, &len))
		if (host_pattern_match(start, len, host, port))
			return true;
	return false;
}

int
llm_json_text_depth(const char *text)
{
	int			depth = 0;
	int			max = 0;
	bool		in_string = false;

	for (const char *p = text; *p != '\0'; p++)
	{
		if (in_string)
		{
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '"')
				in_string = false;
		}
		else if (*p == '"')
			in_string = true;
		else if (*p == '[' || *p == '{')
		{
			if (++depth > max)
				max = depth;
		}
		else if (*p == ']' || *p == '}')
			depth--;
	}
	return max;
}

const cJSON *
llm_json_find_nonfinite(const cJSON *json)
{
	const cJSON *child;

	if (json == NULL)
		return NULL;
	if (cJSON_IsNumber(json))
		return isfinite(json->valuedouble) ? NULL : json;
	for (child = json->child; child != NULL; child = child->next)
	{
		const cJSON *found = llm_json_find_nonfinite(child);

		if (found != NULL)
			return found;
	}
	return NULL;
}

bool
llm_json_has_nul_escape(const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++)
	{
		if (text[i] != '\\')
			continue;
		if (len - i >= 6 && text[i + 1] == 'u' && memcmp(text + i + 2, "0000", 4) == 0)
			return true;
		i++;					/* the escaped character: "\\u0000" is no NUL */
	}
	return false;
}

/* 2^53 - 1: every whole number up to it is exact in a double. */
#define LLM_MAX_EXACT_INTEGER 9007199254740991.0

static const struct
{
	const char *key;
	double		min;
	double		max;
}			whole_params[] = {
	{"seed", -LLM_MAX_EXACT_INTEGER, LLM_MAX_EXACT_INTEGER},
	{"max_tokens", 0, 2147483647.0},
	{"max_completion_tokens", 0, 2147483647.0},
	{"n", 0, 2147483647.0},
	{"top_logprobs", 0, 2147483647.0},
};

bool
llm_check_param_numbers(const cJSON *params, char *err, size_t errlen)
{
	const cJSON *item;

	cJSON_ArrayForEach(item, params)
	{
		if (llm_json_find_nonfinite(item) != NULL)
		{
			snprintf(err, errlen, "parameter \"%s\" holds a number too large for a double precision value",
					 item->string);
			return false;
		}
		for (size_t i = 0; i < LLM_LENGTHOF(whole_params); i++)
		{
			if (item->string == NULL || strcmp(item->string, whole_params[i].key) != 0 ||
				cJSON_IsNull(item))
				continue;
			if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble) ||
				item->valuedouble < whole_params[i].min || item->valuedouble > whole_params[i].max)
			{
				snprintf(err, errlen, "parameter \"%s\" must be a whole number from %.0f to %.0f",
						 item->string, whole_params[i].min, whole_params[i].max);
				return false;
			}
		}
	}
	return true;
}
