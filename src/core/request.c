/*
 * request.c — provider-neutral messages, parameters, results and cost.
 *
 * Pure code (see request.h).
 */
#include "core/request.h"

#include <stdio.h>
#include <string.h>

static const char *const reserved_options[] = {
	"on_error",
	"cache",
	"cache_ttl",
	"on_invalid",
	"batch_api",				/* the queue's: send through the provider's Batch API */
};

static const char *const forbidden_params[] = {
	"model",					/* chosen by the model registry */
	"messages",					/* built by llmext */
	"stream",					/* llmext reads whole responses */
};

static const char *const known_roles[] = {
	"system", "developer", "user", "assistant", "tool",
};

bool
llm_str_in_list(const char *key, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(key, list[i]) == 0)
			return true;
	return false;
}

bool
llm_is_reserved_option(const char *key)
{
	return llm_str_in_list(key, reserved_options, LLM_LENGTHOF(reserved_options));
}

char *
llm_strdup(const char *s)
{
	size_t		len;
	char	   *copy;

	if (s == NULL)
		return NULL;
	len = strlen(s);
	copy = cJSON_malloc(len + 1);
	memcpy(copy, s, len + 1);
	return copy;
}

bool
llm_validate_messages(const cJSON *messages, char *err, size_t errlen)
{
	const cJSON *message;
	int			index = 0;

	if (!cJSON_IsArray(messages))
	{
		snprintf(err, errlen, "messages must be a JSON array of message objects");
		return false;
	}
	if (cJSON_GetArraySize(messages) == 0)
	{
		snprintf(err, errlen, "messages must not be an empty array");
		return false;
	}
	cJSON_ArrayForEach(message, messages)
	{
		const cJSON *role = cJSON_GetObjectItemCaseSensitive(message, "role");
		const cJSON *content = cJSON_GetObjectItemCaseSensitive(message, "content");

		if (!cJSON_IsObject(message))
		{
			snprintf(err, errlen, "message %d is not a JSON object", index);
			return false;
		}
		if (!cJSON_IsString(role))
		{
			snprintf(err, errlen, "message %d has no \"role\" string", index);
			return false;
		}
		if (!llm_str_in_list(role->valuestring, known_roles, LLM_LENGTHOF(known_roles)))
		{
			snprintf(err, errlen,
					 "message %d has unknown role \"%.40s\" (expected system, developer, user, assistant or tool)",
					 index, role->valuestring);
			return false;
		}
		if (content == NULL || cJSON_IsNull(content))
		{
			/* an assistant turn that only calls tools carries no content */
			if (strcmp(role->valuestring, "assistant") != 0 ||
				cJSON_GetObjectItemCaseSensitive(message, "tool_calls") == NULL)
			{
				snprintf(err, errlen, "message %d has no \"content\"", index);
				return false;
			}
		}
		else if (!cJSON_IsString(content) && !cJSON_IsArray(content))
		{
			snprintf(err, errlen,
					 "message %d has a \"content\" that is neither a string nor an array of parts",
					 index);
			return false;
		}
		index++;
	}
	return true;
}

static cJSON *
make_message(const char *role, const char *content)
{
	cJSON	   *message = cJSON_CreateObject();

	cJSON_AddStringToObject(message, "role", role);
	cJSON_AddStringToObject(message, "content", content);
	return message;
}

cJSON *
llm_messages_from_prompt(const char *prompt, const char *system)
{
	cJSON	   *messages = cJSON_CreateArray();

	if (system != NULL && system[0] != '\0')
		cJSON_AddItemToArray(messages, make_message("system", system));
	cJSON_AddItemToArray(messages, make_message("user", prompt));
	return messages;
}

/* Copies the entries of from into into, later ones replacing earlier ones. */
static bool
merge_into(cJSON *into, const cJSON *from, char *err, size_t errlen)
{
	const cJSON *item;

	if (from == NULL || cJSON_IsNull(from))
		return true;
	if (!cJSON_IsObject(from))
	{
		snprintf(err, errlen, "parameters must be a JSON object");
		return false;
	}
	cJSON_ArrayForEach(item, from)
	{
		if (llm_str_in_list(item->string, forbidden_params, LLM_LENGTHOF(forbidden_params)))
		{
			snprintf(err, errlen, "parameter \"%s\" cannot be set", item->string);
			return false;
		}
		if (llm_is_reserved_option(item->string))
			continue;
		cJSON_DeleteItemFromObjectCaseSensitive(into, item->string);
		cJSON_AddItemToObject(into, item->string, cJSON_Duplicate(item, true));
	}
	return true;
}

cJSON *
llm_merge_params(const cJSON *defaults, const cJSON *overrides,
				 char *err, size_t errlen)
{
	cJSON	   *merged = cJSON_CreateObject();

	if (!merge_into(merged, defaults, err, errlen) ||
		!merge_into(merged, overrides, err, errlen))
	{
		cJSON_Delete(merged);
		return NULL;
	}
	return merged;
}

double
llm_cost_usd(const LlmUsage *usage, const LlmPrices *prices)
{
	int64_t		cached = usage->cached_input_tokens;
	int64_t		written = usage->cache_write_tokens;
	int64_t		uncached;

	/*
	 * A server that reports more cached or written than total tokens is not
	 * trusted: the total is what is billed, cache reads first.
	 */
	if (cached > usage->input_tokens)
		cached = usage->input_tokens;
	if (written > usage->input_tokens - cached)
		written = usage->input_tokens - cached;
	uncached = usage->input_tokens - cached - written;
	return ((double) uncached * prices->input +
			(double) cached * prices->cached_input +
			(double) written * prices->cache_write +
			(double) usage->output_tokens * prices->output) / 1e6;
}

void
llm_chat_result_free(LlmChatResult *result)
{
	cJSON_free(result->content);
	cJSON_free(result->finish_reason);
	cJSON_free(result->remote_model);
	cJSON_free(result->response_id);
	cJSON_free(result->refusal);
	cJSON_Delete(result->tool_calls);
	memset(result, 0, sizeof(*result));
}

void
llm_embed_result_free(LlmEmbedResult *result)
{
	cJSON_free(result->vectors);
	cJSON_free(result->remote_model);
	memset(result, 0, sizeof(*result));
}

void
llm_trim_partial_utf8(char *err, size_t errlen)
{
	size_t		len;
	size_t		start;
	size_t		need;
	unsigned char lead;

	if (err == NULL || errlen == 0)
		return;
	len = strlen(err);
	start = len;
	while (start > 0 && ((unsigned char) err[start - 1] & 0xC0) == 0x80)
		start--;
	if (start == 0)
		return;
	lead = (unsigned char) err[start - 1];
	if (lead < 0xC0)
		return;
	need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
	if (len - (start - 1) < need)
		err[start - 1] = '\0';
}

bool
llm_is_plain_id(const char *id)
{
	size_t		len;

	if (id == NULL || id[0] == '\0' || id[0] == '.')
		return false;
	len = strlen(id);
	return len <= 200 &&
		strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-") == len;
}
