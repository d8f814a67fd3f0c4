/*
 * anthropic.c — the Anthropic Messages API (POST {base_url}/messages):
 * request bodies built from llmext's OpenAI-shaped messages and parameters,
 * and responses normalised to the same result as OpenAI's.
 *
 * The differences that matter: the system prompt is a top-level field, not
 * a message; max_tokens is required; input_tokens excludes the tokens read
 * from and written to the prompt cache, which are billed apart; and there is
 * no response_format, so a response schema is a forced tool whose input is
 * the answer.
 *
 * Pure code (see request.h).
 */
#include "providers/anthropic.h"
#include "providers/openai.h"
#include "providers/provider.h"

/* the largest count a double holds exactly: 2^53 */
#define LLM_MAX_TOKEN_COUNT 9007199254740992.0

#include <stdio.h>
#include <string.h>

static const char *const anthropic_headers[] = {
	"anthropic-version: " ANTHROPIC_VERSION,
	NULL
};

/* The text of a content: a string, or the text parts of an array joined. */
static char *
joined_text(const cJSON *content, const char *separator)
{
	const cJSON *part;
	size_t		len = 0;
	size_t		seplen = strlen(separator);
	char	   *text;
	bool		first = true;

	if (cJSON_IsString(content))
		return llm_strdup(content->valuestring);
	cJSON_ArrayForEach(part, content)
	{
		const cJSON *piece = cJSON_GetObjectItemCaseSensitive(part, "text");

		if (cJSON_IsString(piece))
			len += strlen(piece->valuestring) + seplen;
	}
	text = cJSON_malloc(len + 1);
	text[0] = '\0';
	len = 0;
	cJSON_ArrayForEach(part, content)
	{
		const cJSON *piece = cJSON_GetObjectItemCaseSensitive(part, "text");
		size_t		piece_len;

		if (!cJSON_IsString(piece))
			continue;
		if (!first)
		{
			memcpy(text + len, separator, seplen);
			len += seplen;
		}
		piece_len = strlen(piece->valuestring);
		memcpy(text + len, piece->valuestring, piece_len + 1);
		len += piece_len;
		first = false;
	}
	text[len] = '\0';
	return text;
}

/* Appends text to *system, two newlines apart. */
static void
append_system(char **system, const char *text)
{
	size_t		old_len;
	size_t		len = strlen(text);
	char	   *joined;

	if (*system == NULL)
	{
		*system = llm_strdup(text);
		return;
	}
	old_len = strlen(*system);
	joined = cJSON_malloc(old_len + len + 3);
	memcpy(joined, *system, old_len);
	memcpy(joined + old_len, "\n\n", 2);
	memcpy(joined + old_len + 2, text, len + 1);
	cJSON_free(*system);
	*system = joined;
}

/*
 * An assistant turn that called tools (OpenAI's tool_calls, arguments as
 * JSON text) as Anthropic's content blocks: its text, then tool_use blocks.
 */
static cJSON *
assistant_blocks(const cJSON *content, const cJSON *tool_calls)
{
	cJSON	   *blocks = cJSON_CreateArray();
	const cJSON *call;

	if (cJSON_IsString(content) && content->valuestring[0] != '\0')
	{
		cJSON	   *text = cJSON_CreateObject();

		cJSON_AddStringToObject(text, "type", "text");
		cJSON_AddStringToObject(text, "text", content->valuestring);
		cJSON_AddItemToArray(blocks, text);
	}
	else if (cJSON_IsArray(content))
	{
		const cJSON *part;

		cJSON_ArrayForEach(part, content)
			cJSON_AddItemToArray(blocks, cJSON_Duplicate(part, true));
	}
	cJSON_ArrayForEach(call, tool_calls)
	{
		const cJSON *function = cJSON_GetObjectItemCaseSensitive(call, "function");
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(call, "id");
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(function, "name");
		const cJSON *arguments = cJSON_GetObjectItemCaseSensitive(function, "arguments");
		cJSON	   *block = cJSON_CreateObject();
		cJSON	   *input = cJSON_IsString(arguments) ? cJSON_Parse(arguments->valuestring) : NULL;

		cJSON_AddStringToObject(block, "type", "tool_use");
		cJSON_AddStringToObject(block, "id", cJSON_IsString(id) ? id->valuestring : "");
		cJSON_AddStringToObject(block, "name", cJSON_IsString(name) ? name->valuestring : "");
		cJSON_AddItemToObject(block, "input", cJSON_IsObject(input) ? input : cJSON_CreateObject());
		if (input != NULL && !cJSON_IsObject(input))
			cJSON_Delete(input);
		cJSON_AddItemToArray(blocks, block);
	}
	return blocks;
}

/* A tool turn (OpenAI's role "tool") as a user turn with a tool_result block. */
static cJSON *
tool_result_message(const cJSON *message)
{
	cJSON	   *turn = cJSON_CreateObject();
	cJSON	   *blocks = cJSON_CreateArray();
	cJSON	   *block = cJSON_CreateObject();
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(message, "tool_call_id");
	const cJSON *content = cJSON_GetObjectItemCaseSensitive(message, "content");

	cJSON_AddStringToObject(block, "type", "tool_result");
	cJSON_AddStringToObject(block, "tool_use_id", cJSON_IsString(id) ? id->valuestring : "");
	cJSON_AddItemToObject(block, "content", cJSON_Duplicate(content, true));
	cJSON_AddItemToArray(blocks, block);
	cJSON_AddStringToObject(turn, "role", "user");
	cJSON_AddItemToObject(turn, "content", blocks);
	return turn;
}

char *
anthropic_chat_request(const char *remote_model, const cJSON *messages,
					   const cJSON *params)
{
	cJSON	   *body = cJSON_CreateObject();
	cJSON	   *turns = cJSON_CreateArray();
	const cJSON *message;
	const cJSON *param;
	char	   *system = NULL;
	char	   *text;

	cJSON_AddStringToObject(body, "model", remote_model);
	cJSON_AddNumberToObject(body, "max_tokens", anthropic_max_output_tokens(params));

	cJSON_ArrayForEach(message, messages)
	{
		const cJSON *role = cJSON_GetObjectItemCaseSensitive(message, "role");
		const cJSON *content = cJSON_GetObjectItemCaseSensitive(message, "content");
		const cJSON *tool_calls = cJSON_GetObjectItemCaseSensitive(message, "tool_calls");
		cJSON	   *turn;

		if (!cJSON_IsString(role))
			continue;			/* validated before; a fuzzer's input is not */
		if (strcmp(role->valuestring, "system") == 0 ||
			strcmp(role->valuestring, "developer") == 0)
		{
			char	   *piece = joined_text(content, "\n\n");

			append_system(&system, piece);
			cJSON_free(piece);
			continue;
		}
		if (strcmp(role->valuestring, "tool") == 0)
		{
			cJSON_AddItemToArray(turns, tool_result_message(message));
			continue;
		}
		turn = cJSON_CreateObject();
		cJSON_AddStringToObject(turn, "role", role->valuestring);
		if (strcmp(role->valuestring, "assistant") == 0 && cJSON_IsArray(tool_calls))
			cJSON_AddItemToObject(turn, "content", assistant_blocks(content, tool_calls));
		else
			cJSON_AddItemToObject(turn, "content", cJSON_Duplicate(content, true));
		cJSON_AddItemToArray(turns, turn);
	}
	if (system != NULL)
	{
		cJSON_AddStringToObject(body, "system", system);
		cJSON_free(system);
	}
	cJSON_AddItemToObject(body, "messages", turns);

	cJSON_ArrayForEach(param, params)
	{
		if (strcmp(param->string, "max_tokens") == 0 ||
			strcmp(param->string, "max_completion_tokens") == 0)
			continue;			/* sent above */
		if (strcmp(param->string, "stop") == 0)
		{
			cJSON	   *sequences;

			if (cJSON_IsString(param))
			{
				sequences = cJSON_CreateArray();
				cJSON_AddItemToArray(sequences, cJSON_CreateString(param->valuestring));
			}
			else
				sequences = cJSON_Duplicate(param, true);
			cJSON_AddItemToObject(body, "stop_sequences", sequences);
			continue;
		}
		cJSON_AddItemToObject(body, param->string, cJSON_Duplicate(param, true));
	}
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

	/* nullable in Anthropic's schema; beyond 2^53 counts as 2^53 (see openai.c) */
	if (!cJSON_IsNumber(item) || !(item->valuedouble >= 0))
		return 0;
	if (item->valuedouble > LLM_MAX_TOKEN_COUNT)
		return (int64_t) LLM_MAX_TOKEN_COUNT;
	return (int64_t) item->valuedouble;
}

/* a + b, at most 2^53 */
static int64_t
add_counts(int64_t a, int64_t b)
{
	return a > (int64_t) LLM_MAX_TOKEN_COUNT - b ? (int64_t) LLM_MAX_TOKEN_COUNT : a + b;
}

/*
 * Anthropic's input_tokens excludes cache reads and writes; llmext's
 * input_tokens includes both, as OpenAI's prompt_tokens includes cached ones.
 */
static void
parse_usage(const cJSON *usage, LlmUsage *out)
{
	if (!cJSON_IsObject(usage))
		return;
	out->present = true;
	out->cached_input_tokens = count_member(usage, "cache_read_input_tokens");
	out->cache_write_tokens = count_member(usage, "cache_creation_input_tokens");
	out->input_tokens = add_counts(add_counts(count_member(usage, "input_tokens"),
											  out->cached_input_tokens),
								   out->cache_write_tokens);
	out->output_tokens = count_member(usage, "output_tokens");
}

/* Anthropic's stop_reason as OpenAI's finish_reason; unknown ones unchanged. */
static char *
finish_reason(const cJSON *stop_reason, bool answered_by_tool)
{
	static const char *const map[][2] = {
		{"end_turn", "stop"},
		{"stop_sequence", "stop"},
		{"max_tokens", "length"},
		{"model_context_window_exceeded", "length"},
		{"refusal", "content_filter"},
	};

	if (!cJSON_IsString(stop_reason))
		return NULL;
	if (strcmp(stop_reason->valuestring, "tool_use") == 0)
		return llm_strdup(answered_by_tool ? "stop" : "tool_calls");
	for (size_t i = 0; i < LLM_LENGTHOF(map); i++)
		if (strcmp(stop_reason->valuestring, map[i][0]) == 0)
			return llm_strdup(map[i][1]);
	return llm_strdup(stop_reason->valuestring);
}

/* A tool_use block as an OpenAI tool call: {id, type, function: {name, arguments}}. */
static cJSON *
tool_call(const cJSON *block)
{
	cJSON	   *call = cJSON_CreateObject();
	cJSON	   *function = cJSON_CreateObject();
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(block, "id");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(block, "name");
	char	   *arguments = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(block, "input"));

	cJSON_AddStringToObject(call, "id", cJSON_IsString(id) ? id->valuestring : "");
	cJSON_AddStringToObject(call, "type", "function");
	cJSON_AddStringToObject(function, "name", cJSON_IsString(name) ? name->valuestring : "");
	cJSON_AddStringToObject(function, "arguments", arguments ? arguments : "{}");
	cJSON_free(arguments);
	cJSON_AddItemToObject(call, "function", function);
	return call;
}

bool
anthropic_parse_chat_response(const char *body, size_t len,
							  LlmChatResult *result, char *err, size_t errlen)
{
	cJSON	   *root;
	const cJSON *content;
	const cJSON *block;
	cJSON	   *tool_calls = NULL;
	char	   *answer = NULL;

	memset(result, 0, sizeof(*result));
	root = cJSON_ParseWithLength(body, len);
	if (root == NULL)
	{
		snprintf(err, errlen, "the response body is not valid JSON");
		return false;
	}
	content = cJSON_GetObjectItemCaseSensitive(root, "content");
	if (!cJSON_IsArray(content))
	{
		snprintf(err, errlen, "the response has no content array");
		cJSON_Delete(root);
		return false;
	}

	/* the forced respond tool's input is the answer; other tools are tool calls */
	cJSON_ArrayForEach(block, content)
	{
		const cJSON *type = cJSON_GetObjectItemCaseSensitive(block, "type");
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(block, "name");

		if (!cJSON_IsString(type) || strcmp(type->valuestring, "tool_use") != 0)
			continue;
		if (answer == NULL && cJSON_IsString(name) &&
			strcmp(name->valuestring, ANTHROPIC_RESPOND_TOOL) == 0 &&
			cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(block, "input")))
			answer = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(block, "input"));
		else
		{
			if (tool_calls == NULL)
				tool_calls = cJSON_CreateArray();
			cJSON_AddItemToArray(tool_calls, tool_call(block));
		}
	}
	if (answer != NULL)
		result->content = answer;
	else
	{
		bool		has_text = false;

		cJSON_ArrayForEach(block, content)
		{
			if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(block, "text")))
				has_text = true;
		}
		/* a turn of only tool calls has no content, as with OpenAI */
		result->content = has_text ? joined_text(content, "") : NULL;
	}
	result->tool_calls = tool_calls;
	result->finish_reason = finish_reason(cJSON_GetObjectItemCaseSensitive(root, "stop_reason"),
										  answer != NULL && tool_calls == NULL);
	result->remote_model = string_member(root, "model");
	result->response_id = string_member(root, "id");
	parse_usage(cJSON_GetObjectItemCaseSensitive(root, "usage"), &result->usage);
	cJSON_Delete(root);
	return true;
}

/*
 * {"type": "error", "error": {"type", "message"}}: the same shape as
 * OpenAI's error object minus param and code, so OpenAI's reader gives
 * "<message> (type <type>)".
 */
char *
anthropic_error_message(const char *body, size_t len)
{
	return openai_error_message(body, len);
}

/* "x-api-key: <key>", or "<header>: <key>" (a gateway's own header) */
static char *
anthropic_auth_header(const char *header_name, const char *key)
{
	const char *name = header_name ? header_name : "x-api-key";
	size_t		size = strlen(name) + strlen(key) + 4;
	char	   *line = cJSON_malloc(size);

	snprintf(line, size, "%s: %s", name, key);
	return line;
}

/*
 * Anthropic has no response_format: the schema is the input schema of a
 * tool the model is forced to call, and its input is the answer.  Tools the
 * caller set are kept.
 */
void
anthropic_add_json_output(cJSON *params, const char *name, const cJSON *schema)
{
	cJSON	   *tools = cJSON_GetObjectItemCaseSensitive(params, "tools");
	cJSON	   *tool = cJSON_CreateObject();
	cJSON	   *choice = cJSON_CreateObject();

	if (!cJSON_IsArray(tools))
	{
		cJSON_DeleteItemFromObjectCaseSensitive(params, "tools");
		tools = cJSON_AddArrayToObject(params, "tools");
	}
	cJSON_AddStringToObject(tool, "name", ANTHROPIC_RESPOND_TOOL);
	cJSON_AddStringToObject(tool, "description", "Give the answer, following the input schema.");
	cJSON_AddItemToObject(tool, "input_schema", cJSON_Duplicate(schema, true));
	cJSON_AddItemToArray(tools, tool);
	cJSON_AddStringToObject(choice, "type", "tool");
	cJSON_AddStringToObject(choice, "name", ANTHROPIC_RESPOND_TOOL);
	cJSON_AddItemToObject(params, "tool_choice", choice);
}

/* A tool_choice the caller set is their format: the prompt's schema does not replace it. */
static bool
anthropic_has_output_format(const cJSON *params)
{
	return cJSON_GetObjectItemCaseSensitive(params, "tool_choice") != NULL;
}

/*
 * max_completion_tokens (as OpenAI reads it), else max_tokens, else the
 * default: Anthropic requires a limit, so there always is one.
 */
double
anthropic_max_output_tokens(const cJSON *params)
{
	const cJSON *max = cJSON_GetObjectItemCaseSensitive(params, "max_completion_tokens");

	if (!cJSON_IsNumber(max))
		max = cJSON_GetObjectItemCaseSensitive(params, "max_tokens");
	return cJSON_IsNumber(max) ? max->valuedouble : ANTHROPIC_DEFAULT_MAX_TOKENS;
}

const LlmProviderRoutine anthropic_routine = {
	.kind = "anthropic",
	.api_description = "the Anthropic API (usually https://api.anthropic.com/v1)",
	.chat_path = "/messages",
	.headers = anthropic_headers,
	.auth_header = anthropic_auth_header,
	.chat_request = anthropic_chat_request,
	.parse_chat_response = anthropic_parse_chat_response,
	.error_message = anthropic_error_message,
	.add_json_output = anthropic_add_json_output,
	.has_output_format = anthropic_has_output_format,
	.max_output_tokens = anthropic_max_output_tokens,
	/* no fine-tuning: files_path NULL */
	/* no batch mode through this interface: batches_path NULL */
};
