/*
 * failure.h — what went wrong with a provider call, as an error report:
 * SQLSTATE, message, detail and hint.  Built first, then recorded in the
 * ledger, then raised (as an ERROR, or a WARNING with on_error "null").
 */
#ifndef LLMEXT_FAILURE_H
#define LLMEXT_FAILURE_H

#include "postgres.h"

#include "store/catalog.h"
#include "net/engine.h"

typedef struct LlmFailure
{
	int			sqlstate;
	char	   *message;
	char	   *detail;			/* may be NULL */
	char	   *hint;			/* may be NULL */
} LlmFailure;

/* Describes a transfer that ended without a usable answer.  secret is redacted. */
extern LlmFailure *llm_failure_of_transfer(const LlmModel *model, const LlmHttpResponse *resp,
										   long timeout_ms, const char *secret);

/* Describes a 2xx answer that could not be used. */
extern LlmFailure *llm_failure_of_response(const LlmModel *model, const char *reason,
										   const LlmHttpResponse *resp, const char *secret);

/* An answer holding \u0000, which text cannot hold (SQLSTATE 22P05). */
extern LlmFailure *llm_failure_of_nul(const LlmModel *model);

/* Describes an answer that is not what the prompt asked for (SQLSTATE LL004). */
extern LlmFailure *llm_failure_of_output(const LlmModel *model, const char *reason,
										 const char *content);

/* "message: detail", for the ledger's error column. */
extern char *llm_failure_text(const LlmFailure *failure);

/* Raises the failure at elevel (ERROR, or WARNING). */
extern void llm_failure_raise(int elevel, const LlmFailure *failure);

#endif							/* LLMEXT_FAILURE_H */
