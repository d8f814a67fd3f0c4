/*
 * json_checks.c — checks on JSON that comes in (nesting, numbers that do not
 * fit) or goes out (NUL characters) before llmext trusts it.
 *
 * Pure code (see json_checks.h).
 */
#include "core/json_checks.h"

#include "core/request.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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
