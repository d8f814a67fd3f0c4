/*
 * call.c — one synchronous chat call, from model name to normalised result.
 */
#include "llmext.h"

#include "call/call.h"

#include "call/budget.h"
#include "call/failure.h"
#include "core/cachekey.h"
#include "core/json_checks.h"
#include "core/jsonschema.h"
#include "core/redact.h"
#include "net/engine.h"
#include "store/cache.h"
#include "store/ledger.h"
#include "store/ratelimit.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include <math.h>

/*
 * What a failure does, from an option whose value is "error" (the default:
 * raise it) or "null" (a WARNING, and the call gives NULL).
 */
static int
error_or_null(const cJSON *options, const char *key)
{
	const cJSON *value = cJSON_GetObjectItemCaseSensitive(options, key);

	if (value == NULL || cJSON_IsNull(value) ||
		(cJSON_IsString(value) && strcmp(value->valuestring, "error") == 0))
		return ERROR;
	if (cJSON_IsString(value) && strcmp(value->valuestring, "null") == 0)
		return WARNING;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for option \"%s\"", key),
			 errhint("Use \"error\" (the default) or \"null\".")));
	return ERROR;				/* not reached */
}

static const char *
provider_option_string(const LlmModel *model, const char *key, const char *fallback)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(model->provider_options, key);

	return cJSON_IsString(item) ? item->valuestring : fallback;
}

const char **
llm_provider_headers(const LlmModel *model, bool json_body, int *nheaders)
{
	const cJSON *extra = cJSON_GetObjectItemCaseSensitive(model->provider_options, "headers");
	const char *const *fixed = model->routine->headers;
	int			nfixed = 0;
	const char **headers;
	const cJSON *item;
	int			n = 0;

	while (fixed != NULL && fixed[nfixed] != NULL)
		nfixed++;
	headers = palloc(sizeof(char *) * (4 + nfixed + cJSON_GetArraySize(extra)));

	if (json_body)
		headers[n++] = "Content-Type: application/json";
	headers[n++] = "Accept: application/json";
	headers[n++] = "Expect:";	/* no 100-continue round trip for large prompts */
	if (model->api_key != NULL)
		headers[n++] = model->routine->auth_header(provider_option_string(model, "auth_header", NULL),
												   model->api_key);
	for (int i = 0; i < nfixed; i++)
	{
		size_t		name_len = strcspn(fixed[i], ":");
		bool		replaced = false;

		cJSON_ArrayForEach(item, extra)
		{
			if (strlen(item->string) == name_len &&
				pg_strncasecmp(item->string, fixed[i], name_len) == 0)
				replaced = true;
		}
		if (!replaced)
			headers[n++] = fixed[i];
	}
	cJSON_ArrayForEach(item, extra)
	{
		if (cJSON_IsString(item))
			headers[n++] = psprintf("%s: %s", item->string, item->valuestring);
	}
	*nheaders = n;
	return headers;
}

/* Builds "Name: value" header lines: JSON, the key, and the provider's extras. */
static const char **
build_headers(const LlmModel *model, int *nheaders)
{
	return llm_provider_headers(model, true, nheaders);
}

char *
llm_provider_url(const LlmModel *model, const char *path)
{
	size_t		len = strlen(model->base_url);

	while (len > 0 && model->base_url[len - 1] == '/')
		len--;
	return psprintf("%.*s%s", (int) len, model->base_url, path);
}

static char *
chat_url(const LlmModel *model)
{
	return llm_provider_url(model, provider_option_string(model, "chat_path",
														   model->routine->chat_path));
}

/*
 * A model is registered for one use (llm.models.use): calling it for the
 * other is refused before anything is looked up in the cache or sent.
 */
static void
check_use(const LlmModel *model, bool embedding)
{
	const char *wanted = embedding ? "embedding" : "chat";

	if (strcmp(model->use, wanted) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model \"%s\" is registered for %s, not for %s",
						model->name, model->use, wanted),
				 embedding
				 ? errhint("Embed with a model registered with use => 'embedding'.")
				 : errhint("Call llm_embed or llm_embed_batch for an embedding model, or pick a chat model.")));
	if (embedding && model->routine->embeddings_path == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("provider \"%s\" (kind %s) has no embeddings", model->provider,
						model->provider_kind)));
}

/*
 * "batch_api" is the queue's: a call that waits for its answer would wait
 * up to a day, so asking for it there is refused rather than ignored (the
 * caller expects the batch price).
 */
static void
check_batch_option(const LlmCallRequest *req)
{
	const cJSON *batch = cJSON_GetObjectItemCaseSensitive(req->options, "batch_api");

	if (batch != NULL && !cJSON_IsBool(batch))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"batch_api\" must be true or false")));
	if (cJSON_IsTrue(batch) && !req->batch_api)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"batch_api\" applies only to queued requests"),
				 errhint("Queue the request with llm_submit or llm_submit_prompt and wait with llm_wait or llm_wait_batch: a provider's batch answers within 24 hours.")));
}

static void
forget_headers(const char **headers, int nheaders, const char *secret)
{
	llm_forget_headers(headers, nheaders, secret);
}

void
llm_forget_headers(const char **headers, int nheaders, const char *secret)
{
	if (secret == NULL)
		return;
	for (int i = 0; i < nheaders; i++)
		if (strstr(headers[i], secret) != NULL)
			explicit_bzero((char *) headers[i], strlen(headers[i]));
}

/* With expect_json: parses and checks the answer; the failure, or NULL. */
static LlmFailure *
check_output(const LlmCallRequest *req, LlmCallResult *result)
{
	char		err[512];
	const char *content = result->chat.content;

	result->output_json = content ? cJSON_Parse(content) : NULL;
	if (result->output_json == NULL)
		return llm_failure_of_output(result->model, "the answer is not valid JSON", content);
	if (req->response_schema != NULL &&
		!llm_json_validate(result->output_json, req->response_schema, err, sizeof(err)))
		return llm_failure_of_output(result->model,
									 psprintf("the answer does not match the response schema: %s", err),
									 content);
	return NULL;
}

/* Fills result from a cached normalised result. */
static void
result_from_cache(const cJSON *cached, LlmCallResult *result)
{
	const cJSON *usage = cJSON_GetObjectItemCaseSensitive(cached, "usage");
	const cJSON *tool_calls = cJSON_GetObjectItemCaseSensitive(cached, "tool_calls");
	const cJSON *item;

#define CACHED_STRING(key) \
	((item = cJSON_GetObjectItemCaseSensitive(cached, key)) && cJSON_IsString(item) \
	 ? llm_strdup(item->valuestring) : NULL)
#define CACHED_COUNT(key) \
	((item = cJSON_GetObjectItemCaseSensitive(usage, key)) && cJSON_IsNumber(item) \
	 ? (int64) item->valuedouble : 0)

	result->chat.content = CACHED_STRING("content");
	result->chat.finish_reason = CACHED_STRING("finish_reason");
	result->chat.remote_model = CACHED_STRING("remote_model");
	result->chat.refusal = CACHED_STRING("refusal");
	result->request_id = CACHED_STRING("request_id");
	if (cJSON_IsArray(tool_calls))
		result->chat.tool_calls = cJSON_Duplicate(tool_calls, true);
	result->chat.usage.present = usage != NULL;
	result->chat.usage.input_tokens = CACHED_COUNT("input_tokens");
	result->chat.usage.cached_input_tokens = CACHED_COUNT("cached_input_tokens");
	result->chat.usage.cache_write_tokens = CACHED_COUNT("cache_creation_input_tokens");
	result->chat.usage.output_tokens = CACHED_COUNT("output_tokens");
	result->chat.usage.reasoning_tokens = CACHED_COUNT("reasoning_tokens");
#undef CACHED_STRING
#undef CACHED_COUNT
}

/*
 * Fills result->embed from a cached result's "embeddings" ([[...], ...]);
 * false when they are not n vectors of one length (then it is no hit).
 */
static bool
embed_from_cache(const cJSON *cached, int n, LlmCallResult *result)
{
	const cJSON *vectors = cJSON_GetObjectItemCaseSensitive(cached, "embeddings");
	const cJSON *first = cJSON_GetArrayItem(vectors, 0);
	const cJSON *vector;
	LlmEmbedResult *embed = &result->embed;
	int			i = 0;

	if (!cJSON_IsArray(vectors) || cJSON_GetArraySize(vectors) != n ||
		!cJSON_IsArray(first) || cJSON_GetArraySize(first) == 0)
		return false;
	embed->n = n;
	embed->dimensions = cJSON_GetArraySize(first);
	embed->vectors = palloc(sizeof(float) * (size_t) n * embed->dimensions);
	cJSON_ArrayForEach(vector, vectors)
	{
		const cJSON *number;
		int			j = 0;

		if (!cJSON_IsArray(vector) || cJSON_GetArraySize(vector) != embed->dimensions)
			return false;
		cJSON_ArrayForEach(number, vector)
		{
			if (!cJSON_IsNumber(number))
				return false;
			embed->vectors[(size_t) i * embed->dimensions + j++] = (float) number->valuedouble;
		}
		i++;
	}
	embed->usage = result->chat.usage;
	embed->remote_model = result->chat.remote_model;
	return true;
}

/* The usage a call reports, whichever kind it is. */
static const LlmUsage *
usage_of(const LlmCallRequest *req, const LlmCallResult *result)
{
	return req->inputs != NULL ? &result->embed.usage : &result->chat.usage;
}

/* Bytes a string takes inside JSON text, escapes and quotes included. */
static size_t
json_string_bytes(const char *s)
{
	size_t		n = 2;

	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
		n += (*p == '"' || *p == '\\' || *p == '\b' || *p == '\f' ||
			  *p == '\n' || *p == '\r' || *p == '\t') ? 2 : *p < 0x20 ? 6 : 1;
	return n;
}

/*
 * An upper bound on the bytes cJSON_PrintUnformatted writes for json: the
 * strings as escaped, and 32 for each item's punctuation, number or literal
 * (a number takes at most 26).  Computed without allocating.
 */
static size_t
json_printed_bound(const cJSON *item)
{
	size_t		n;

	if (item == NULL)
		return 0;
	n = 32;
	if (item->string != NULL)
		n += json_string_bytes(item->string);
	if (cJSON_IsString(item) && item->valuestring != NULL)
		n += json_string_bytes(item->valuestring);
	for (const cJSON *child = item->child; child != NULL; child = child->next)
		n += json_printed_bound(child);
	return n;
}

/*
 * Refuses, before it is built, a request larger than llmext.max_request_bytes:
 * printing it would take a multiple of its size, and a huge one would end in
 * an allocation the server refuses with an internal error.
 */
static void
check_request_size(const cJSON *messages, const cJSON *params)
{
	/* messages: or an embedding request's inputs */
	size_t		bound = json_printed_bound(messages) + json_printed_bound(params);

	if (bound > (size_t) llm_max_request_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the request would be larger than llmext.max_request_bytes (%d bytes)",
						llm_max_request_bytes),
				 errdetail("The messages and parameters take up to %zu bytes as JSON.", bound),
				 errhint("Send a shorter prompt, or ask a superuser to raise llmext.max_request_bytes.")));
}

static void
record_call(const LlmCallRequest *req, LlmCallResult *result, const char *error)
{
	LlmLedgerRow row;

	memset(&row, 0, sizeof(row));
	row.source = req->source;
	row.prompt_name = req->prompt_name;
	row.prompt_version = req->prompt_version;
	row.model = result->model->name;
	row.remote_model = result->chat.remote_model ? result->chat.remote_model
		: result->embed.remote_model ? result->embed.remote_model
		: result->model->remote_model;
	row.provider = result->model->provider;
	row.cache_hit = result->cache_hit;
	row.http_status = result->http_status;
	row.error = error;
	row.usage = *usage_of(req, result);
	row.cost_usd = result->cost_usd;
	row.cost_saved_usd = result->cost_saved_usd;
	row.latency_ms = result->latency_ms;
	row.request_id = result->request_id;
	row.fingerprint = result->fingerprint;
	/* an embedding's inputs may be many and long: llm.call_io keeps none */
	if (!req->keep_no_io && req->inputs == NULL)
	{
		row.vars = req->vars;
		row.messages = req->messages;
		row.output = result->chat.content;
	}
	result->entry_id = llm_ledger_record(&row);
}

/*
 * Turns the provider's answer into the result; the failure, or NULL.
 * secret is the key, redacted from anything the provider said.
 */
static LlmFailure *
read_response(LlmModel *model, const LlmHttpResponse *resp, long timeout_ms,
			  const char *secret, const cJSON *inputs, LlmCallResult *result)
{
	char		err[256];
	char	   *text;

	result->http_status = resp->status;
	result->latency_ms = resp->elapsed_ms;
	/* the header was cut to a buffer's size: it may end inside the key */
	result->request_id = resp->request_id
		? llm_redact_cut(resp->request_id, strlen(resp->request_id), secret, SIZE_MAX, false)
		: NULL;

	if (resp->outcome != LLM_HTTP_RESPONSE || resp->status < 200 || resp->status >= 300)
		return llm_failure_of_transfer(model, resp, timeout_ms, secret);
	if (!pg_verify_mbstr(PG_UTF8, resp->body, resp->body_len, true))
		return llm_failure_of_response(model, "the body is not valid UTF-8", resp, secret);
	text = pg_any_to_server(resp->body, resp->body_len, PG_UTF8);
	if (inputs != NULL)
	{
		if (!model->routine->parse_embed_response(text, strlen(text), cJSON_GetArraySize(inputs),
												  &result->embed, err, sizeof(err)))
			return llm_failure_of_response(model, err, resp, secret);
		/* numbers carry no key; the model id the provider chose might */
		if (result->embed.remote_model != NULL && secret != NULL)
			result->embed.remote_model = llm_redact(result->embed.remote_model, secret);
		result->cost_usd = llm_cost_usd(&result->embed.usage, &result->model->prices);
		return NULL;
	}
	if (!model->routine->parse_chat_response(text, strlen(text), &result->chat, err, sizeof(err)))
		return llm_failure_of_response(model, err, resp, secret);

	/*
	 * Whatever the provider says is shown and stored: the answer, ids and
	 * names.  A provider that echoes the key must not hand it to the caller
	 * (who may not see keys) nor to llm.calls, the cache or llm.requests.
	 */
	llm_chat_result_redact(&result->chat, secret);
	if (result->request_id == NULL)
		result->request_id = result->chat.response_id;
	result->cost_usd = llm_cost_usd(&result->chat.usage, &result->model->prices);

	/*
	 * PostgreSQL text cannot hold NUL, and cJSON's strings end at one: an
	 * answer with \u0000 would come back silently cut.  Refused instead
	 * (after the cost is known: the provider charged for it).
	 */
	if (llm_json_has_nul_escape(text, strlen(text)))
		return llm_failure_of_nul(model);
	return NULL;
}

LlmPreparedCall *
llm_call_prepare(const LlmCallRequest *req, LlmCallResult *result)
{
	LlmPreparedCall *call = palloc0(sizeof(LlmPreparedCall));
	LlmModel   *model;
	char		err[256];
	char	   *body;

	call->req = req;
	call->result = result;
	memset(result, 0, sizeof(*result));
	if (req->options != NULL && !cJSON_IsObject(req->options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object"),
				 errhint("For example '{\"temperature\": 0, \"on_error\": \"null\"}'.")));
	check_batch_option(req);
	call->elevel = error_or_null(req->options, "on_error");
	/* checked on every call, so that a misspelt value never passes silently */
	call->invalid_elevel = error_or_null(req->options, "on_invalid");
	/* an embedding request's inputs are checked by its SQL function */
	if (req->inputs == NULL && !llm_validate_messages(req->messages, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid messages: %s", err),
				 errhint("Pass an array like '[{\"role\": \"user\", \"content\": \"Hello\"}]'.")));

	model = llm_lookup_model(req->model_name);
	call->model = result->model = model;
	check_use(model, req->inputs != NULL);
	call->params = llm_merge_params(model->params, req->options, err, sizeof(err));
	if (call->params == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid options: %s", err),
				 errhint("The model comes from the model argument and messages are built by llmext.")));
	if (req->inputs != NULL && cJSON_GetObjectItemCaseSensitive(call->params, "input") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid options: \"input\" cannot be set"),
				 errhint("The inputs come from the input argument.")));
	/* a number that does not fit would be sent as null, and cached as if sent */
	if (!llm_check_param_numbers(call->params, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid options: %s", err),
				 errdetail("The parameters come from the model's params and the call's options."),
				 errhint("Numbers must fit a double precision value; seed is a whole number of at most 2^53 - 1 in size, and max_tokens, max_completion_tokens, n and top_logprobs whole numbers from 0.")));
	check_request_size(req->inputs ? req->inputs : req->messages, call->params);
	/*
	 * An embedding is a function of its input: always deterministic.  Its
	 * inputs (an array of strings) stand where a chat's messages (objects)
	 * do, so that the two kinds of request never share a key.
	 */
	if (req->inputs != NULL)
		llm_cache_policy_for(req->options, true, &call->cache);
	else
		llm_cache_policy(req->options, call->params, &call->cache);
	result->fingerprint = llm_sha256_hex(llm_canonical_request(model->provider,
															   model->remote_model,
															   req->inputs ? req->inputs : req->messages,
															   call->params));

	if (call->cache.read && !req->batch_answer)
	{
		TimestampTz start = GetCurrentTimestamp();
		cJSON	   *cached = llm_cache_get(result->fingerprint);

		if (cached != NULL && req->inputs != NULL)
		{
			result_from_cache(cached, result);
			if (embed_from_cache(cached, cJSON_GetArraySize(req->inputs), result))
			{
				result->cache_hit = true;
				result->cost_saved_usd = llm_cost_usd(&result->embed.usage, &model->prices);
				result->latency_ms = (GetCurrentTimestamp() - start) / 1000.0;
				record_call(req, result, NULL);
				call->answered = true;
				return call;
			}
			memset(&result->embed, 0, sizeof(result->embed));
			llm_chat_result_free(&result->chat);
			result->request_id = NULL;
		}
		else if (cached != NULL)
		{
			result_from_cache(cached, result);
			/*
			 * An answer cached by a call that did not check it (say
			 * llm_complete_prompt) may not be what llm_complete_json needs:
			 * then it is not a hit, and the provider is asked.
			 */
			if (!req->expect_json || check_output(req, result) == NULL)
			{
				result->cache_hit = true;
				result->cost_saved_usd = llm_cost_usd(&result->chat.usage, &model->prices);
				result->latency_ms = (GetCurrentTimestamp() - start) / 1000.0;
				record_call(req, result, NULL);
				call->answered = true;
				return call;
			}
			llm_chat_result_free(&result->chat);
			result->request_id = NULL;
			result->output_json = NULL;
		}
	}

	/* refused before any request: nothing has been spent on it */
	call->failure = req->batch_answer ? NULL : llm_budget_check();
	if (call->failure != NULL)
	{
		call->elevel = ERROR;	/* a refusal is not a provider's failure */
		call->answered = true;
		return call;
	}

	body = req->inputs != NULL
		? model->routine->embed_request(model->remote_model, req->inputs, call->params)
		: model->routine->chat_request(model->remote_model, req->messages, call->params);
	/* providers speak UTF-8 whatever the database's encoding */
	call->http.body = pg_server_to_any(body, strlen(body), PG_UTF8);
	call->estimated_tokens = llm_rate_estimate(model->routine, call->http.body, call->params);
	if (req->batch_api)
		return call;			/* a line of a file: the batch carries the key */
	llm_load_key(model);
	/* the key is kept only to redact it from whatever the provider says */
	call->secret = model->api_key ? pstrdup(model->api_key) : NULL;
	call->headers = build_headers(model, &call->http.nheaders);
	llm_forget_key(model);
	call->http.headers = call->headers;
	call->http.url = req->inputs != NULL
		? llm_provider_url(model, model->routine->embeddings_path)
		: chat_url(model);
	call->http.connect_timeout_ms = llm_connect_timeout_ms;
	call->http.timeout_ms = llm_request_timeout_ms;
	call->http.max_response_bytes = (size_t) llm_effective_max_response_bytes();
	return call;
}

double
llm_call_admit(LlmPreparedCall *call)
{
	double		wait_ms = llm_rate_admit(call->model, call->estimated_tokens);

	call->admitted = wait_ms <= 0;
	return wait_ms;
}

void
llm_call_release(LlmPreparedCall *call)
{
	if (call->admitted)
		llm_rate_release(call->model);
	call->admitted = false;
}

LlmFailure *
llm_call_complete(LlmPreparedCall *call)
{
	const LlmCallRequest *req = call->req;
	LlmCallResult *result = call->result;
	LlmFailure *failure;

	forget_headers(call->headers, call->http.nheaders, call->secret);
	llm_call_release(call);
	failure = read_response(call->model, &call->resp, call->http.timeout_ms, call->secret,
							req->inputs, result);
	if (req->batch_api)
		result->cost_usd *= call->model->batch_price_ratio;
	/* a Batch API answer was never admitted: the provider meters batches apart */
	if (usage_of(req, result)->present && !req->batch_api)
		llm_rate_settle(call->model, call->estimated_tokens,
						usage_of(req, result)->input_tokens + usage_of(req, result)->output_tokens);
	if (call->secret != NULL)
		explicit_bzero(call->secret, strlen(call->secret));
	if (failure == NULL && req->expect_json)
	{
		failure = check_output(req, result);
		if (failure != NULL)
			call->elevel = call->invalid_elevel;
	}

	/* the ledger hears of the call before anything can abort the statement */
	record_call(req, result, failure ? llm_failure_text(failure) : NULL);
	if (failure == NULL && call->cache.write)
		llm_cache_put(result->fingerprint, call->model->name, call->model->provider,
					  call->model->remote_model, llm_call_result_json(result),
					  result->cost_usd, call->cache.ttl_s);
	call->failure = failure;
	return failure;
}

void
llm_call_rearm(LlmPreparedCall *call)
{
	LlmCallResult *result = call->result;
	char	   *fingerprint = result->fingerprint;

	memset(result, 0, sizeof(*result));
	result->model = call->model;
	result->fingerprint = fingerprint;
	memset(&call->resp, 0, sizeof(call->resp));
	call->failure = NULL;
	llm_load_key(call->model);
	call->secret = call->model->api_key ? pstrdup(call->model->api_key) : NULL;
	call->headers = build_headers(call->model, &call->http.nheaders);
	call->http.headers = call->headers;
	llm_forget_key(call->model);
}

LlmFailureKind
llm_call_failure_kind(const LlmPreparedCall *call)
{
	switch (call->resp.outcome)
	{
		case LLM_HTTP_RESPONSE:
			return call->resp.status >= 300 ? LLM_FAILED_HTTP : LLM_FAILED_OTHER;
		case LLM_HTTP_TIMEOUT:
			return LLM_FAILED_TIMEOUT;
		case LLM_HTTP_CONNECT_FAILED:
			return LLM_FAILED_CONNECTION;
		default:
			return LLM_FAILED_OTHER;
	}
}

void
llm_call_abandon(LlmPreparedCall *call)
{
	forget_headers(call->headers, call->http.nheaders, call->secret);
	llm_call_release(call);
	record_call(call->req, call->result, "cancelled while waiting for the provider");
}

bool
llm_chat_call(const LlmCallRequest *req, LlmCallResult *result)
{
	LlmPreparedCall *call = llm_call_prepare(req, result);

	if (!call->answered)
	{
		double		wait_ms;

		/* the provider's rate limits: wait our turn, still hearing cancel */
		while ((wait_ms = llm_call_admit(call)) > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 (long) Min(wait_ms + 1, 1000), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		PG_TRY();
		{
			llm_http_perform(&call->http, &call->resp);
		}
		PG_CATCH();
		{
			llm_call_abandon(call);
			PG_RE_THROW();
		}
		PG_END_TRY();
		llm_call_complete(call);
	}
	if (call->failure != NULL)
	{
		llm_failure_raise(call->elevel, call->failure);
		return false;
	}
	return true;
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
	const LlmEmbedResult *embed = &result->embed;
	/* an embedding result: its usage, with the chat fields empty */
	const LlmUsage *counts = embed->vectors != NULL ? &embed->usage : &chat->usage;
	cJSON	   *json = cJSON_CreateObject();
	cJSON	   *usage = cJSON_CreateObject();

	add_string_or_null(json, "content", chat->content);
	add_string_or_null(json, "finish_reason", chat->finish_reason);
	cJSON_AddStringToObject(json, "model", result->model->name);
	add_string_or_null(json, "remote_model",
					   chat->remote_model ? chat->remote_model
					   : embed->remote_model ? embed->remote_model : result->model->remote_model);
	cJSON_AddStringToObject(json, "provider", result->model->provider);
	cJSON_AddNumberToObject(usage, "input_tokens", (double) counts->input_tokens);
	cJSON_AddNumberToObject(usage, "cached_input_tokens", (double) counts->cached_input_tokens);
	cJSON_AddNumberToObject(usage, "cache_creation_input_tokens", (double) counts->cache_write_tokens);
	cJSON_AddNumberToObject(usage, "output_tokens", (double) counts->output_tokens);
	cJSON_AddNumberToObject(usage, "reasoning_tokens", (double) counts->reasoning_tokens);
	cJSON_AddItemToObject(json, "usage", usage);
	cJSON_AddNumberToObject(json, "cost_usd", result->cost_usd);
	cJSON_AddBoolToObject(json, "cache_hit", result->cache_hit);
	if (result->cache_hit)
		cJSON_AddNumberToObject(json, "cost_saved_usd", result->cost_saved_usd);
	cJSON_AddNumberToObject(json, "latency_ms", rint(result->latency_ms * 1000.0) / 1000.0);
	add_string_or_null(json, "request_id", result->request_id);
	/* the ledger row's entry_id: what llm_feedback takes */
	if (result->entry_id != NULL)
		cJSON_AddStringToObject(json, "call_id", result->entry_id);
	if (chat->refusal != NULL)
		cJSON_AddStringToObject(json, "refusal", chat->refusal);
	if (chat->tool_calls != NULL)
		cJSON_AddItemToObject(json, "tool_calls", cJSON_Duplicate(chat->tool_calls, true));
	if (embed->vectors != NULL)
	{
		cJSON	   *vectors = cJSON_AddArrayToObject(json, "embeddings");

		for (int i = 0; i < embed->n; i++)
		{
			cJSON	   *vector = cJSON_CreateArray();

			for (int j = 0; j < embed->dimensions; j++)
				cJSON_AddItemToArray(vector, cJSON_CreateNumber(embed->vectors[(size_t) i * embed->dimensions + j]));
			cJSON_AddItemToArray(vectors, vector);
		}
	}
	return json;
}
