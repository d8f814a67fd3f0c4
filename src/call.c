/*
 * call.c — one synchronous chat call, from model name to normalised result.
 */
#include "llmext.h"

#include <math.h>

#include "call.h"

#include "engine.h"
#include "mb/pg_wchar.h"
#include "openai.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#define ERROR_SNIPPET_BYTES 200

/* "error" (the default) or "null", from the call's options. */
static int
failure_elevel(const cJSON *options)
{
	const cJSON *on_error = cJSON_GetObjectItemCaseSensitive(options, "on_error");

	if (on_error == NULL || cJSON_IsNull(on_error))
		return ERROR;
	if (cJSON_IsString(on_error) && strcmp(on_error->valuestring, "error") == 0)
		return ERROR;
	if (cJSON_IsString(on_error) && strcmp(on_error->valuestring, "null") == 0)
		return WARNING;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for option \"on_error\""),
			 errhint("Use \"error\" (the default) or \"null\".")));
	return ERROR;				/* not reached */
}

/*
 * A printable excerpt of a body that is not what we expected: no key, no
 * bytes that could upset the client's encoding.
 */
static char *
body_excerpt(const char *body, size_t len, const char *secret)
{
	size_t		n = Min(len, ERROR_SNIPPET_BYTES);
	char	   *excerpt;
	char	   *redacted;

	if (len == 0)
		return pstrdup("(empty body)");
	excerpt = palloc(n + 4);
	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) body[i];

		excerpt[i] = (c >= 0x20 && c < 0x7f) ? (char) c : ' ';
	}
	strcpy(excerpt + n, len > n ? "..." : "");
	redacted = llm_redact(excerpt, secret);
	return redacted;
}

static int
sqlstate_for_status(long status)
{
	if (status == 401 || status == 403)
		return ERRCODE_LLM_AUTHENTICATION;
	if (status == 404)
		return ERRCODE_LLM_NOT_FOUND;
	if (status == 408)
		return ERRCODE_LLM_TIMEOUT;
	if (status == 429)
		return ERRCODE_LLM_RATE_LIMITED;
	if (status >= 500)
		return ERRCODE_LLM_SERVER_ERROR;
	if (status >= 400)
		return ERRCODE_LLM_BAD_REQUEST;
	return ERRCODE_LLM_PROVIDER_ERROR;
}

static const char *
hint_for_status(long status)
{
	if (status == 401 || status == 403)
		return "Check the provider's key (llm_provider_set_key) and its access to this model.";
	if (status == 404)
		return "Check the model's remote_model in llm.models and the provider's base_url in llm.providers.";
	if (status == 408)
		return "The provider timed out: retry later, or ask for a shorter answer.";
	if (status == 429)
		return "The provider is limiting this account's rate or quota: retry later, or send fewer calls at once.";
	if (status >= 500)
		return "The provider failed: retry later.";
	return "Check the parameters passed in options and the model's params.";
}

/* Reports an HTTP error answer of the provider at elevel. */
static void
report_http_error(int elevel, const LlmModel *model, const LlmHttpResponse *resp,
				  const char *secret)
{
	char	   *message = openai_error_message(resp->body, resp->body_len);
	char	   *detail = message != NULL
		? llm_redact(message, secret)
		: body_excerpt(resp->body, resp->body_len, secret);

	ereport(elevel,
			(errcode(sqlstate_for_status(resp->status)),
			 errmsg("provider \"%s\" answered HTTP %ld for model \"%s\"",
					model->provider, resp->status, model->name),
			 errdetail("%s", detail),
			 resp->retry_after_ms >= 0
			 ? errhint("%s It asked to wait %.0f ms before retrying.",
					   hint_for_status(resp->status), resp->retry_after_ms)
			 : errhint("%s", hint_for_status(resp->status))));
}

/* Reports a transfer that produced no HTTP answer at elevel. */
static void
report_transport_error(int elevel, const LlmModel *model, const LlmHttpResponse *resp,
					   long timeout_ms)
{
	switch (resp->outcome)
	{
		case LLM_HTTP_TIMEOUT:
			ereport(elevel,
					(errcode(ERRCODE_LLM_TIMEOUT),
					 resp->connected
					 ? errmsg("provider \"%s\" did not answer within %ld ms for model \"%s\"",
							  model->provider, timeout_ms, model->name)
					 : errmsg("could not connect to provider \"%s\" within %d ms",
							  model->provider, llm_connect_timeout_ms),
					 errdetail("%s", resp->error),
					 errhint("Raise llmext.request_timeout (or llmext.connect_timeout), or check that the provider is up.")));
			break;
		case LLM_HTTP_CONNECT_FAILED:
			ereport(elevel,
					(errcode(ERRCODE_LLM_CONNECTION_FAILURE),
					 errmsg("could not connect to provider \"%s\"", model->provider),
					 errdetail("%s", resp->error),
					 errhint("Check base_url in llm.providers and that the server can reach it.")));
			break;
		case LLM_HTTP_TOO_LARGE:
			ereport(elevel,
					(errcode(ERRCODE_LLM_RESPONSE_TOO_LARGE),
					 errmsg("the answer of provider \"%s\" is larger than llmext.max_response_bytes (%d bytes)",
							model->provider, llm_max_response_bytes),
					 errhint("Raise llmext.max_response_bytes, or ask for a shorter answer (max_completion_tokens).")));
			break;
		default:
			ereport(elevel,
					(errcode(ERRCODE_LLM_PROVIDER_ERROR),
					 errmsg("the request to provider \"%s\" failed", model->provider),
					 errdetail("%s", resp->error)));
			break;
	}
}

static void
report_invalid_response(int elevel, const LlmModel *model, const char *reason,
						const LlmHttpResponse *resp, const char *secret)
{
	ereport(elevel,
			(errcode(ERRCODE_LLM_INVALID_RESPONSE),
			 errmsg("provider \"%s\" sent an invalid response for model \"%s\": %s",
					model->provider, model->name, reason),
			 errdetail("The body begins: %s", body_excerpt(resp->body, resp->body_len, secret)),
			 errhint("Check that base_url points at an OpenAI-compatible API (it usually ends in /v1).")));
}

static const char *
provider_option_string(const LlmModel *model, const char *key, const char *fallback)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(model->provider_options, key);

	return cJSON_IsString(item) ? item->valuestring : fallback;
}

/* Builds "Name: value" header lines: JSON, the key, and the provider's extras. */
static const char **
build_headers(const LlmModel *model, int *nheaders)
{
	const cJSON *extra = cJSON_GetObjectItemCaseSensitive(model->provider_options, "headers");
	const char **headers = palloc(sizeof(char *) * (4 + cJSON_GetArraySize(extra)));
	const cJSON *item;
	int			n = 0;

	headers[n++] = "Content-Type: application/json";
	headers[n++] = "Accept: application/json";
	headers[n++] = "Expect:";	/* no 100-continue round trip for large prompts */
	if (model->api_key != NULL)
	{
		const char *auth = provider_option_string(model, "auth_header", "Authorization");

		if (pg_strcasecmp(auth, "Authorization") == 0)
			headers[n++] = psprintf("Authorization: Bearer %s", model->api_key);
		else
			headers[n++] = psprintf("%s: %s", auth, model->api_key);
	}
	cJSON_ArrayForEach(item, extra)
	{
		if (cJSON_IsString(item))
			headers[n++] = psprintf("%s: %s", item->string, item->valuestring);
	}
	*nheaders = n;
	return headers;
}

static char *
chat_url(const LlmModel *model)
{
	const char *path = provider_option_string(model, "chat_path", "/chat/completions");
	size_t		len = strlen(model->base_url);

	while (len > 0 && model->base_url[len - 1] == '/')
		len--;
	return psprintf("%.*s%s", (int) len, model->base_url, path);
}

/* Overwrites the header line that carries the key. */
static void
forget_headers(const char **headers, int nheaders, const LlmModel *model)
{
	if (model->api_key == NULL)
		return;
	for (int i = 0; i < nheaders; i++)
		if (strstr(headers[i], model->api_key) != NULL)
			explicit_bzero((char *) headers[i], strlen(headers[i]));
}

bool
llm_chat_call(const char *model_name, const cJSON *messages,
			  const cJSON *options, LlmCallResult *result)
{
	LlmModel   *model;
	int			elevel;
	char		err[256];
	cJSON	   *params;
	char	   *body;
	LlmHttpRequest req;
	LlmHttpResponse resp;
	const char **headers;
	char	   *secret;
	bool		ok = false;

	memset(result, 0, sizeof(*result));
	if (options != NULL && !cJSON_IsObject(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object"),
				 errhint("For example '{\"temperature\": 0, \"on_error\": \"null\"}'.")));
	elevel = failure_elevel(options);
	if (!llm_validate_messages(messages, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid messages: %s", err),
				 errhint("Pass an array like '[{\"role\": \"user\", \"content\": \"Hello\"}]'.")));

	model = llm_lookup_model(model_name);
	if (strcmp(model->provider_kind, "openai") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("provider kind \"%s\" is not supported", model->provider_kind)));
	params = llm_merge_params(model->params, options, err, sizeof(err));
	if (params == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid options: %s", err),
				 errhint("The model comes from the model argument and messages are built by llmext.")));

	body = openai_chat_request(model->remote_model, messages, params);
	/* providers speak UTF-8 whatever the database's encoding */
	body = pg_server_to_any(body, strlen(body), PG_UTF8);

	headers = build_headers(model, &req.nheaders);
	req.url = chat_url(model);
	req.body = body;
	req.headers = headers;
	req.connect_timeout_ms = llm_connect_timeout_ms;
	req.timeout_ms = llm_request_timeout_ms;
	req.max_response_bytes = (size_t) llm_max_response_bytes;

	/* the key is kept only to redact it from whatever the provider says */
	secret = model->api_key ? pstrdup(model->api_key) : NULL;
	PG_TRY();
	{
		llm_http_perform(&req, &resp);
	}
	PG_FINALLY();
	{
		forget_headers(headers, req.nheaders, model);
		llm_forget_key(model);
	}
	PG_END_TRY();

	result->model = model;
	result->http_status = resp.status;
	result->latency_ms = resp.elapsed_ms;

	if (resp.outcome != LLM_HTTP_RESPONSE)
		report_transport_error(elevel, model, &resp, req.timeout_ms);
	else if (resp.status < 200 || resp.status >= 300)
		report_http_error(elevel, model, &resp, secret);
	else if (!pg_verify_mbstr(PG_UTF8, resp.body, resp.body_len, true))
		report_invalid_response(elevel, model, "the body is not valid UTF-8", &resp, secret);
	else
	{
		char	   *text = pg_any_to_server(resp.body, resp.body_len, PG_UTF8);

		if (!openai_parse_chat_response(text, strlen(text), &result->chat, err, sizeof(err)))
			report_invalid_response(elevel, model, err, &resp, secret);
		else
		{
			result->request_id = resp.request_id ? resp.request_id
				: result->chat.response_id;
			result->cost_usd = llm_cost_usd(&result->chat.usage, &model->prices);
			ok = true;
		}
	}

	if (secret != NULL)
		explicit_bzero(secret, strlen(secret));
	return ok;
}

static void
add_string_or_null(cJSON *object, const char *key, const char *value)
{
	if (value != NULL)
		cJSON_AddStringToObject(object, key, value);
	else
		cJSON_AddNullToObject(object, key);
}

cJSON *
llm_call_result_json(const LlmCallResult *result)
{
	const LlmChatResult *chat = &result->chat;
	cJSON	   *json = cJSON_CreateObject();
	cJSON	   *usage = cJSON_CreateObject();

	add_string_or_null(json, "content", chat->content);
	add_string_or_null(json, "finish_reason", chat->finish_reason);
	cJSON_AddStringToObject(json, "model", result->model->name);
	add_string_or_null(json, "remote_model",
					   chat->remote_model ? chat->remote_model : result->model->remote_model);
	cJSON_AddStringToObject(json, "provider", result->model->provider);
	cJSON_AddNumberToObject(usage, "input_tokens", (double) chat->usage.input_tokens);
	cJSON_AddNumberToObject(usage, "cached_input_tokens", (double) chat->usage.cached_input_tokens);
	cJSON_AddNumberToObject(usage, "output_tokens", (double) chat->usage.output_tokens);
	cJSON_AddNumberToObject(usage, "reasoning_tokens", (double) chat->usage.reasoning_tokens);
	cJSON_AddItemToObject(json, "usage", usage);
	cJSON_AddNumberToObject(json, "cost_usd", result->cost_usd);
	cJSON_AddNumberToObject(json, "latency_ms", rint(result->latency_ms * 1000.0) / 1000.0);
	add_string_or_null(json, "request_id", result->request_id);
	if (chat->refusal != NULL)
		cJSON_AddStringToObject(json, "refusal", chat->refusal);
	if (chat->tool_calls != NULL)
		cJSON_AddItemToObject(json, "tool_calls", cJSON_Duplicate(chat->tool_calls, true));
	return json;
}

cJSON *
llm_jsonb_to_cjson(Datum jsonb)
{
	Jsonb	   *jb = DatumGetJsonbP(jsonb);
	char	   *text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	cJSON	   *json = cJSON_Parse(text);

	if (json == NULL)
		elog(ERROR, "llmext: could not convert jsonb to cJSON");
	pfree(text);
	return json;
}

Datum
llm_cjson_to_jsonb(const cJSON *json)
{
	char	   *text = cJSON_PrintUnformatted(json);

	return DirectFunctionCall1(jsonb_in, CStringGetDatum(text));
}
