/*
 * openai.c — OpenAI chat completions: request bodies, responses, error
 * bodies.  Tolerant of the OpenAI-compatible servers' differences: every
 * usage detail is optional, unknown keys are ignored, and error bodies may
 * lack param and code.
 *
 * Pure code (see request.h).
 */
#include "providers/openai.h"

#include <stdio.h>
#include <string.h>

char *
openai_chat_request(const char *remote_model, const cJSON *messages,
					const cJSON *params)
{
	cJSON	   *body = cJSON_CreateObject();
	const cJSON *param;
	char	   *text;

	cJSON_AddStringToObject(body, "model", remote_model);
	cJSON_AddItemToObject(body, "messages", cJSON_Duplicate(messages, true));
	cJSON_ArrayForEach(param, params)
		cJSON_AddItemToObject(body, param->string, cJSON_Duplicate(param, true));
	text = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	return text;
}

static char *
string_member(const cJSON *object, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

	return cJSON_IsString(item) ? llm_strdup(item->valuestring) : NULL;
}

static int64_t
count_member(const cJSON *object, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

	if (!cJSON_IsNumber(item) || item->valuedouble < 0)
		return 0;
	return (int64_t) item->valuedouble;
}

static void
parse_usage(const cJSON *usage, LlmUsage *out)
{
	const cJSON *prompt_details;
	const cJSON *completion_details;

	if (!cJSON_IsObject(usage))
		return;
	out->present = true;
	out->input_tokens = count_member(usage, "prompt_tokens");
	out->output_tokens = count_member(usage, "completion_tokens");
	prompt_details = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens_details");
	completion_details = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens_details");
	out->cached_input_tokens = count_member(prompt_details, "cached_tokens");
	out->reasoning_tokens = count_member(completion_details, "reasoning_tokens");
}

/* Some servers send content as an array of {type: "text", text} parts. */
static char *
content_text(const cJSON *content)
{
	const cJSON *part;
	size_t		len = 0;
	char	   *text;

	if (cJSON_IsString(content))
		return llm_strdup(content->valuestring);
	if (!cJSON_IsArray(content))
		return NULL;
	cJSON_ArrayForEach(part, content)
	{
		const cJSON *piece = cJSON_GetObjectItemCaseSensitive(part, "text");

		if (cJSON_IsString(piece))
			len += strlen(piece->valuestring);
	}
	text = cJSON_malloc(len + 1);
	text[0] = '\0';
	len = 0;
	cJSON_ArrayForEach(part, content)
	{
		const cJSON *piece = cJSON_GetObjectItemCaseSensitive(part, "text");

		if (cJSON_IsString(piece))
		{
			size_t		piece_len = strlen(piece->valuestring);

			memcpy(text + len, piece->valuestring, piece_len + 1);
			len += piece_len;
		}
	}
	return text;
}

bool
openai_parse_chat_response(const char *body, size_t len,
						   LlmChatResult *result, char *err, size_t errlen)
{
	cJSON	   *root;
	const cJSON *choices;
	const cJSON *choice;
	const cJSON *message;
	const cJSON *tool_calls;

	memset(result, 0, sizeof(*result));
	root = cJSON_ParseWithLength(body, len);
	if (root == NULL)
	{
		snprintf(err, errlen, "the response body is not valid JSON");
		return false;
	}
	choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
	choice = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
	message = cJSON_GetObjectItemCaseSensitive(choice, "message");
	if (!cJSON_IsObject(message))
	{
		snprintf(err, errlen, "the response has no choices[0].message object");
		cJSON_Delete(root);
		return false;
	}

	result->content = content_text(cJSON_GetObjectItemCaseSensitive(message, "content"));
	result->refusal = string_member(message, "refusal");
	result->finish_reason = string_member(choice, "finish_reason");
	result->remote_model = string_member(root, "model");
	result->response_id = string_member(root, "id");
	tool_calls = cJSON_GetObjectItemCaseSensitive(message, "tool_calls");
	if (cJSON_IsArray(tool_calls) && cJSON_GetArraySize(tool_calls) > 0)
		result->tool_calls = cJSON_Duplicate(tool_calls, true);
	parse_usage(cJSON_GetObjectItemCaseSensitive(root, "usage"), &result->usage);
	cJSON_Delete(root);
	return true;
}

char *
openai_error_message(const char *body, size_t len)
{
	cJSON	   *root = cJSON_ParseWithLength(body, len);
	const cJSON *error;
	const cJSON *message;
	const cJSON *type;
	const cJSON *code;
	char	   *text = NULL;

	if (root == NULL)
		return NULL;
	error = cJSON_GetObjectItemCaseSensitive(root, "error");
	/* vLLM and some proxies put the message at the top level */
	message = cJSON_IsObject(error)
		? cJSON_GetObjectItemCaseSensitive(error, "message")
		: cJSON_GetObjectItemCaseSensitive(root, "message");
	if (cJSON_IsString(error) && !cJSON_IsString(message))
		message = error;
	if (cJSON_IsString(message))
	{
		size_t		size;

		type = cJSON_GetObjectItemCaseSensitive(error, "type");
		code = cJSON_GetObjectItemCaseSensitive(error, "code");
		size = strlen(message->valuestring) + 200;
		text = cJSON_malloc(size);
		if (cJSON_IsString(type) && cJSON_IsString(code))
			snprintf(text, size, "%s (type %.60s, code %.60s)",
					 message->valuestring, type->valuestring, code->valuestring);
		else if (cJSON_IsString(type))
			snprintf(text, size, "%s (type %.60s)",
					 message->valuestring, type->valuestring);
		else
			snprintf(text, size, "%s", message->valuestring);
	}
	cJSON_Delete(root);
	return text;
}
