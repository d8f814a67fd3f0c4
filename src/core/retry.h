/*
 * retry.h — which failed requests are worth sending again, and when.
 *
 * The rules of the official OpenAI and Anthropic SDKs: 408, 409, 429 and
 * every 5xx (Anthropic's 529 included), timeouts and connection failures
 * are retried; other 4xx are not.  The wait honours the provider's
 * retry-after-ms or Retry-After when it is between 0 and 120 s, and is
 * otherwise min(0.5 * 2^n, 8) seconds less up to 25 % jitter.  A provider
 * that asks for more than 120 s is not retried at all.  Pure code.
 */
#ifndef LLMEXT_RETRY_H
#define LLMEXT_RETRY_H

#include <stdbool.h>

#define LLM_DEFAULT_MAX_ATTEMPTS 3
#define LLM_MAX_RETRY_AFTER_MS 120000.0

typedef enum LlmFailureKind
{
	LLM_FAILED_HTTP,			/* an HTTP error status */
	LLM_FAILED_TIMEOUT,
	LLM_FAILED_CONNECTION,
	LLM_FAILED_OTHER			/* too large, unparsable, ...: sending again will not help */
} LlmFailureKind;

/* Should a request that failed so be sent again (attempts permitting)? */
extern bool llm_retryable(LlmFailureKind kind, long status, double retry_after_ms);

/*
 * Milliseconds to wait before attempt number retries + 2, given the
 * provider's retry-after in ms (negative: none) and a uniform random number
 * in [0, 1).
 */
extern double llm_retry_delay_ms(int retries, double retry_after_ms, double random01);

#endif							/* LLMEXT_RETRY_H */
