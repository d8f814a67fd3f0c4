/* Unit tests of retry.c: which failures retry, and the wait before each. */
#include "unit.h"

#include <math.h>

#include "core/retry.h"

void
test_retry(void)
{
	/* retried: rate limits, conflicts, timeouts, server errors, no connection */
	CHECK(llm_retryable(LLM_FAILED_HTTP, 429, -1));
	CHECK(llm_retryable(LLM_FAILED_HTTP, 408, -1));
	CHECK(llm_retryable(LLM_FAILED_HTTP, 409, -1));
	CHECK(llm_retryable(LLM_FAILED_HTTP, 500, -1));
	CHECK(llm_retryable(LLM_FAILED_HTTP, 503, 1000));
	CHECK(llm_retryable(LLM_FAILED_HTTP, 529, -1));
	CHECK(llm_retryable(LLM_FAILED_TIMEOUT, 0, -1));
	CHECK(llm_retryable(LLM_FAILED_CONNECTION, 0, -1));
	/* not retried: the request itself is wrong, or the answer unusable */
	CHECK(!llm_retryable(LLM_FAILED_HTTP, 400, -1));
	CHECK(!llm_retryable(LLM_FAILED_HTTP, 401, -1));
	CHECK(!llm_retryable(LLM_FAILED_HTTP, 403, -1));
	CHECK(!llm_retryable(LLM_FAILED_HTTP, 404, -1));
	CHECK(!llm_retryable(LLM_FAILED_HTTP, 422, -1));
	CHECK(!llm_retryable(LLM_FAILED_OTHER, 200, -1));
	/* a provider asking for more than two minutes is not retried */
	CHECK(!llm_retryable(LLM_FAILED_HTTP, 429, 120001));
	CHECK(llm_retryable(LLM_FAILED_HTTP, 429, 120000));

	/* Retry-After wins when it is reasonable */
	CHECK(llm_retry_delay_ms(0, 1000, 0.5) == 1000);
	CHECK(llm_retry_delay_ms(3, 0, 0.9) == 0);
	/* otherwise exponential back-off from 0.5 s, capped at 8 s, less up to 25 % */
	CHECK(llm_retry_delay_ms(0, -1, 0) == 500);
	CHECK(llm_retry_delay_ms(1, -1, 0) == 1000);
	CHECK(llm_retry_delay_ms(2, -1, 0) == 2000);
	CHECK(llm_retry_delay_ms(4, -1, 0) == 8000);
	CHECK(llm_retry_delay_ms(30, -1, 0) == 8000);
	CHECK(fabs(llm_retry_delay_ms(0, -1, 0.999) - 500 * (1 - 0.25 * 0.999)) < 1e-9);
	CHECK(llm_retry_delay_ms(1, -1, 0.5) >= 750 && llm_retry_delay_ms(1, -1, 0.5) <= 1000);
	CHECK(llm_retry_delay_ms(0, 500000, 0) == 500);	/* too long a wait: back-off instead */
}
