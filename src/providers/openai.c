/*
 * openai.c — OpenAI chat completions: request bodies, responses, error
 * bodies.  Tolerant of the OpenAI-compatible servers' differences: every
 * usage detail is optional, unknown keys are ignored, and error bodies may
 * lack param and code.
 *
 * Pure code (see request.h).
 */
#include "providers/openai.h"
#include "providers/provider.h"

/* the largest count a double holds exactly: 2^53 */
#define LLM_MAX_TOKEN_COUNT 9007199254740992.0

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

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

	/*
	 * A count is whatever the provider says; one beyond 2^53 (1e300, or an
	 * infinity) would not survive the cast to int64: it counts as 2^53.
	 */
	if (!cJSON_IsNumber(item) || !(item->valuedouble >= 0))
		return 0;
	if (item->valuedouble > LLM_MAX_TOKEN_COUNT)
		return (int64_t) LLM_MAX_TOKEN_COUNT;
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

/* "Authorization: Bearer <key>", or "<header>: <key>" (Azure's api-key) */
static char *
openai_auth_header(const char *header_name, const char *key)
{
	const char *name = header_name ? header_name : "Authorization";
	bool		bearer = strcasecmp(name, "Authorization") == 0;
	size_t		size = strlen(name) + strlen(key) + 16;
	char	   *line = cJSON_malloc(size);

	snprintf(line, size, "%s: %s%s", name, bearer ? "Bearer " : "", key);
	return line;
}

/* Structured outputs: {"type": "json_schema", "json_schema": {"name", "schema"}} */
static void
openai_add_json_output(cJSON *params, const char *name, const cJSON *schema)
{
	cJSON	   *format = cJSON_CreateObject();
	cJSON	   *json_schema = cJSON_CreateObject();
	char		safe_name[65];
	size_t		i;

	/* OpenAI's schema names: letters, digits, _ and -, at most 64 */
	for (i = 0; name[i] != '\0' && i < 64; i++)
		safe_name[i] = (isalnum((unsigned char) name[i]) || name[i] == '_' || name[i] == '-')
			? name[i] : '_';
	safe_name[i] = '\0';
	cJSON_AddStringToObject(format, "type", "json_schema");
	cJSON_AddStringToObject(json_schema, "name", safe_name);
	cJSON_AddItemToObject(json_schema, "schema", cJSON_Duplicate(schema, true));
	cJSON_AddItemToObject(format, "json_schema", json_schema);
	cJSON_AddItemToObject(params, "response_format", format);
}

static bool
openai_has_output_format(const cJSON *params)
{
	return cJSON_GetObjectItemCaseSensitive(params, "response_format") != NULL;
}

/* max_completion_tokens, or the older max_tokens that compatible servers read */
static double
openai_max_output_tokens(const cJSON *params)
{
	const cJSON *max = cJSON_GetObjectItemCaseSensitive(params, "max_completion_tokens");

	if (!cJSON_IsNumber(max))
		max = cJSON_GetObjectItemCaseSensitive(params, "max_tokens");
	return cJSON_IsNumber(max) ? max->valuedouble : -1;
}

const LlmProviderRoutine openai_routine = {
	.kind = "openai",
	.api_description = "an OpenAI-compatible API (it usually ends in /v1)",
	.chat_path = "/chat/completions",
	.auth_header = openai_auth_header,
	.chat_request = openai_chat_request,
	.parse_chat_response = openai_parse_chat_response,
	.embeddings_path = "/embeddings",
	.embed_request = openai_embed_request,
	.parse_embed_response = openai_parse_embed_response,
	.error_message = openai_error_message,
	.add_json_output = openai_add_json_output,
	.has_output_format = openai_has_output_format,
	.max_output_tokens = openai_max_output_tokens,
	.files_path = "/files",
	.files_purpose = "fine-tune",
	.jobs_path = "/fine_tuning/jobs",
	.finetune_request = openai_finetune_request,
	.finetune_list_query = openai_finetune_list_query,
	.parse_file = openai_parse_file,
	.parse_finetune_job = openai_parse_finetune_job,
	.parse_finetune_list = openai_parse_finetune_list,
	.batches_path = "/batches",
	.batch_files_purpose = "batch",
	.batch_chat_url = "/v1/chat/completions",
	.batch_line = openai_batch_line,
	.batch_request = openai_batch_request,
	.batch_list_query = openai_batch_list_query,
	.parse_batch = openai_parse_batch,
	.parse_batch_list = openai_parse_batch_list,
	.parse_batch_line = openai_parse_batch_line,
};
