/*
 * failure.c — error reports for failed provider calls (see failure.h).
 */
#include "llmext.h"

#include "call/failure.h"

#include "core/redact.h"

#define ERROR_SNIPPET_BYTES 200

static LlmFailure *
make_failure(int sqlstate, char *message, char *detail, char *hint)
{
	LlmFailure *f = palloc(sizeof(LlmFailure));

	f->sqlstate = sqlstate;
	f->message = message;
	f->detail = detail;
	f->hint = hint;
	return f;
}

/*
 * A printable excerpt of a body that is not what we expected: no key (not
 * even the part of one that a cut would leave at its end), no bytes that
 * could upset the client's encoding.
 */
static char *
body_excerpt(const char *body, size_t len, const char *secret)
{
	if (len == 0)
		return pstrdup("(empty body)");
	return llm_redact_cut(body, len, secret, ERROR_SNIPPET_BYTES, true);
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

static LlmFailure *
http_failure(const LlmModel *model, const LlmHttpResponse *resp, const char *secret)
{
	char	   *message = model->routine->error_message(resp->body, resp->body_len);
	const char *hint = hint_for_status(resp->status);

	return make_failure(sqlstate_for_status(resp->status),
						psprintf("provider \"%s\" answered HTTP %ld for model \"%s\"",
								 model->provider, resp->status, model->name),
						message != NULL
						? llm_redact_cut(message, strlen(message), secret, SIZE_MAX, false)
						: body_excerpt(resp->body, resp->body_len, secret),
						resp->retry_after_ms >= 0
						? psprintf("%s It asked to wait %.0f ms before retrying.",
								   hint, resp->retry_after_ms)
						: pstrdup(hint));
}

LlmFailure *
llm_failure_of_transfer(const LlmModel *model, const LlmHttpResponse *resp,
						long timeout_ms, const char *secret)
{
	switch (resp->outcome)
	{
		case LLM_HTTP_RESPONSE:
			return http_failure(model, resp, secret);
		case LLM_HTTP_TIMEOUT:
			return make_failure(ERRCODE_LLM_TIMEOUT,
								resp->connected
								? psprintf("provider \"%s\" did not answer within %ld ms for model \"%s\"",
										   model->provider, timeout_ms, model->name)
								: psprintf("could not connect to provider \"%s\" within %d ms",
										   model->provider, llm_connect_timeout_ms),
								pstrdup(resp->error),
								pstrdup("Raise llmext.request_timeout (or llmext.connect_timeout), or check that the provider is up."));
		case LLM_HTTP_CONNECT_FAILED:
			return make_failure(ERRCODE_LLM_CONNECTION_FAILURE,
								psprintf("could not connect to provider \"%s\"", model->provider),
								pstrdup(resp->error),
								pstrdup("Check base_url in llm.providers and that the server can reach it."));
		case LLM_HTTP_TOO_LARGE:
			/* name the setting that bounded it: the user's, or the ceiling */
			if (llm_max_response_bytes > llm_max_response_bytes_limit)
				return make_failure(ERRCODE_LLM_RESPONSE_TOO_LARGE,
									psprintf("the answer of provider \"%s\" is larger than llmext.max_response_bytes_limit (%d bytes)",
											 model->provider, llm_max_response_bytes_limit),
									psprintf("llmext.max_response_bytes is %d bytes, but only a superuser can raise the ceiling.",
											 llm_max_response_bytes),
									pstrdup("Ask for a shorter answer (max_completion_tokens), or ask a superuser to raise llmext.max_response_bytes_limit."));
			return make_failure(ERRCODE_LLM_RESPONSE_TOO_LARGE,
								psprintf("the answer of provider \"%s\" is larger than llmext.max_response_bytes (%d bytes)",
										 model->provider, llm_max_response_bytes),
								NULL,
								pstrdup("Raise llmext.max_response_bytes, or ask for a shorter answer (max_completion_tokens)."));
		default:
			return make_failure(ERRCODE_LLM_PROVIDER_ERROR,
								psprintf("the request to provider \"%s\" failed", model->provider),
								pstrdup(resp->error), NULL);
	}
}

LlmFailure *
llm_failure_of_response(const LlmModel *model, const char *reason,
						const LlmHttpResponse *resp, const char *secret)
{
	return make_failure(ERRCODE_LLM_INVALID_RESPONSE,
						psprintf("provider \"%s\" sent an invalid response for model \"%s\": %s",
								 model->provider, model->name, reason),
						psprintf("The body begins: %s",
								 body_excerpt(resp->body, resp->body_len, secret)),
						psprintf("Check that base_url points at %s.", model->routine->api_description));
}

LlmFailure *
llm_failure_of_nul(const LlmModel *model)
{
	return make_failure(ERRCODE_UNTRANSLATABLE_CHARACTER,
						psprintf("provider \"%s\" sent an answer with a NUL character (\\u0000) for model \"%s\"",
								 model->provider, model->name),
						pstrdup("PostgreSQL text cannot hold NUL characters; the answer is refused rather than cut at the first one."),
						pstrdup("Ask the model not to produce NUL characters, or retry."));
}

LlmFailure *
llm_failure_of_output(const LlmModel *model, const char *reason, const char *content)
{
	return make_failure(ERRCODE_LLM_INVALID_OUTPUT,
						psprintf("model \"%s\" gave an unusable answer: %s", model->name, reason),
						content ? psprintf("The answer begins: %s",
										   body_excerpt(content, strlen(content), NULL))
						: pstrdup("The answer has no text."),
						pstrdup("Tighten the prompt or its response schema, or pass options => '{\"on_invalid\": \"null\"}' to get NULL instead."));
}

char *
llm_failure_text(const LlmFailure *failure)
{
	return failure->detail
		? psprintf("%s: %s", failure->message, failure->detail)
		: pstrdup(failure->message);
}

void
llm_failure_raise(int elevel, const LlmFailure *failure)
{
	ereport(elevel,
			(errcode(failure->sqlstate),
			 errmsg_internal("%s", failure->message),
			 failure->detail ? errdetail_internal("%s", failure->detail) : 0,
			 failure->hint ? errhint("%s", failure->hint) : 0));
}
