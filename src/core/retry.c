/*
 * retry.c — the retry policy (see retry.h).
 */
#include "core/retry.h"

#include <math.h>

bool
llm_retryable(LlmFailureKind kind, long status, double retry_after_ms)
{
	if (retry_after_ms > LLM_MAX_RETRY_AFTER_MS)
		return false;			/* the provider wants a pause, not a retry */
	switch (kind)
	{
		case LLM_FAILED_TIMEOUT:
		case LLM_FAILED_CONNECTION:
			return true;
		case LLM_FAILED_HTTP:
			return status == 408 || status == 409 || status == 429 || status >= 500;
		default:
			return false;
	}
}

double
llm_retry_delay_ms(int retries, double retry_after_ms, double random01)
{
	double		backoff;

	if (retry_after_ms >= 0 && retry_after_ms <= LLM_MAX_RETRY_AFTER_MS)
		return retry_after_ms;
	backoff = 500.0 * pow(2.0, retries < 0 ? 0 : (retries > 10 ? 10 : retries));
	if (backoff > 8000.0)
		backoff = 8000.0;
	return backoff * (1.0 - 0.25 * random01);
}
