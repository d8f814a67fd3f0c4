/*
 * call.h — one synchronous chat call: model look-up, request, HTTP, parsing,
 * and the errors a failed call raises.  Shared by every SQL entry point that
 * calls a model now (llm_complete, llm_chat, and stored prompts).
 */
#ifndef LLMEXT_CALL_H
#define LLMEXT_CALL_H

#include "postgres.h"

#include "store/cache.h"
#include "store/catalog.h"
#include "net/engine.h"
#include "core/request.h"
#include "core/retry.h"

typedef struct LlmCallRequest
{
	const char *model_name;		/* NULL: llmext.default_model */
	const cJSON *messages;		/* a chat request's messages, or NULL ... */
	const cJSON *inputs;		/* ... for an embedding request: its texts, an array */
	const cJSON *options;		/* provider parameters and llmext's own keys, or NULL */
	const char *prompt_name;	/* for the ledger: the stored prompt used, or NULL */
	int			prompt_version;
	const cJSON *vars;			/* for llm.call_io: the prompt's variables, or NULL */
	bool		keep_no_io;		/* keep nothing in llm.call_io (an evaluation's request) */
	const char *source;			/* for the ledger: sync (NULL), batch, queue or batch_api */
	bool		expect_json;	/* the answer must be JSON ... */
	const cJSON *response_schema;	/* ... matching this schema, if not NULL */
	/*
	 * Sent through the provider's Batch API (queue/provider_batch.c): the
	 * request is a line of a file, with no key or headers of its own, and
	 * costs batch_price_ratio of the model's prices.  With batch_answer its
	 * answer has come: neither the cache nor the budgets may turn it away,
	 * the money is spent.
	 */
	bool		batch_api;
	bool		batch_answer;
} LlmCallRequest;

typedef struct LlmCallResult
{
	LlmChatResult chat;
	LlmEmbedResult embed;		/* an embedding request's vectors */
	LlmModel   *model;			/* api_key already forgotten */
	long		http_status;
	double		latency_ms;
	char	   *request_id;		/* the provider's id for this call */
	double		cost_usd;
	bool		cache_hit;
	double		cost_saved_usd; /* for a cache hit: the cost avoided */
	char	   *fingerprint;	/* the cache key */
	cJSON	   *output_json;	/* with expect_json: the parsed answer */
	char	   *entry_id;		/* the ledger row's entry_id, once recorded */
} LlmCallResult;

/*
 * A chat call and an embedding call (inputs set) take the same path: the
 * model's use must match (22023 before anything else), and the cache, the
 * budgets, the rate limits and the ledger treat both alike.  An embedding
 * answer is always deterministic, so it is cached unless llmext.cache or the
 * "cache" option says otherwise.
 *
 * A call in two phases, so that many can share one engine (llm_chat_batch):
 * llm_call_prepare looks the model up, answers from the cache or checks the
 * budget, and builds the HTTP request; the caller runs http into resp; then
 * llm_call_complete reads the answer, records the call and caches it.
 */
typedef struct LlmPreparedCall
{
	const LlmCallRequest *req;
	LlmCallResult *result;
	LlmModel   *model;
	cJSON	   *params;
	LlmCachePolicy cache;
	int			elevel;			/* for failure: ERROR, or WARNING with on_error null */
	int			invalid_elevel;
	bool		answered;		/* by the cache, or refused by a budget: no request */
	struct LlmFailure *failure; /* what went wrong, if anything */
	LlmHttpRequest http;
	LlmHttpResponse resp;
	const char **headers;
	char	   *secret;
	int64		estimated_tokens;	/* for the provider's tokens_per_minute */
	bool		admitted;		/* counted in flight by the rate limits */
} LlmPreparedCall;

/*
 * "Name: value" header lines for a request to model's provider: a JSON
 * Content-Type when json_body, Accept JSON, the key (loaded: llm_load_key)
 * and the provider's extra headers.  Overwrite them after use with
 * llm_forget_headers.
 */
extern const char **llm_provider_headers(const LlmModel *model, bool json_body, int *nheaders);
/* Overwrites the header line that carries secret (NULL: none). */
extern void llm_forget_headers(const char **headers, int nheaders, const char *secret);
/* base_url (without trailing slashes) followed by path. */
extern char *llm_provider_url(const LlmModel *model, const char *path);

extern LlmPreparedCall *llm_call_prepare(const LlmCallRequest *req, LlmCallResult *result);
extern struct LlmFailure *llm_call_complete(LlmPreparedCall *call);

/*
 * Makes a completed call ready to be sent again (a retry): a fresh result,
 * and the key's header rebuilt.  The failed attempt stays in the ledger.
 */
extern void llm_call_rearm(LlmPreparedCall *call);

/*
 * The transfer is over: gives back its place under max_concurrency at once,
 * before the answer is read (llm_call_complete does it too, once).
 */
extern void llm_call_release(LlmPreparedCall *call);

/* What kind of failure a completed call met, for the retry policy. */
extern LlmFailureKind llm_call_failure_kind(const LlmPreparedCall *call);

/*
 * For a call whose request was sent but whose wait was cut short (query
 * cancel): the provider may bill it, so the ledger hears of it, and the
 * header with the key is wiped before its memory is freed.
 */
extern void llm_call_abandon(LlmPreparedCall *call);

/*
 * 0 when the provider's rate limits let the call go now (it is counted),
 * else the milliseconds to wait before asking again.
 */
extern double llm_call_admit(LlmPreparedCall *call);

/*
 * Calls the model, or answers from the cache, and records the call in the
 * ledger.
 *
 * Usage errors (unknown model, bad options) and a spent budget always raise
 * an ERROR.  A failed call raises an ERROR too, unless options say
 * "on_error": "null": then it is reported as a WARNING and false is
 * returned.  With expect_json, an answer that is not JSON or does not match
 * the schema is such a failure too, governed by "on_invalid" instead; it is
 * recorded in the ledger as an error and never cached.
 */
extern bool llm_chat_call(const LlmCallRequest *req, LlmCallResult *result);

/* The normalised result as JSON (content, usage, cost, latency, ids). */
extern cJSON *llm_call_result_json(const LlmCallResult *result);

/*
 * Raises 54000 for a text argument (what: "a prompt") larger than
 * llmext.max_request_bytes, before it is detoasted or copied.
 */
extern void llm_check_text_size(Datum text, const char *what);

/*
 * Converts a jsonb argument to cJSON (NULL stays NULL); 54000 when it is
 * larger than llmext.max_request_bytes.
 */
extern cJSON *llm_jsonb_to_cjson(Datum jsonb);

/* Converts cJSON to a jsonb Datum. */
extern Datum llm_cjson_to_jsonb(const cJSON *json);

#endif							/* LLMEXT_CALL_H */
