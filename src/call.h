/*
 * call.h — one synchronous chat call: model look-up, request, HTTP, parsing,
 * and the errors a failed call raises.  Shared by every SQL entry point that
 * calls a model now (llm_complete, llm_chat, and stored prompts).
 */
#ifndef LLMEXT_CALL_H
#define LLMEXT_CALL_H

#include "postgres.h"

#include "catalog.h"
#include "request.h"

typedef struct LlmCallResult
{
	LlmChatResult chat;
	LlmModel   *model;			/* api_key already forgotten */
	long		http_status;
	double		latency_ms;
	char	   *request_id;		/* the provider's id for this call */
	double		cost_usd;
} LlmCallResult;

/*
 * Calls the model (NULL: llmext.default_model) with messages and options
 * (a JSON object or NULL: provider parameters plus llmext's own keys).
 *
 * Usage errors (unknown model, bad options) always raise an ERROR.  A failed
 * call raises an ERROR too, unless options say "on_error": "null": then it
 * is reported as a WARNING and false is returned.
 */
extern bool llm_chat_call(const char *model_name, const cJSON *messages,
						  const cJSON *options, LlmCallResult *result);

/* The normalised result as JSON (content, usage, cost, latency, ids). */
extern cJSON *llm_call_result_json(const LlmCallResult *result);

/* Converts a jsonb argument to cJSON (NULL stays NULL). */
extern cJSON *llm_jsonb_to_cjson(Datum jsonb);

/* Converts cJSON to a jsonb Datum. */
extern Datum llm_cjson_to_jsonb(const cJSON *json);

#endif							/* LLMEXT_CALL_H */
