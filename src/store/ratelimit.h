/*
 * ratelimit.h — limits on requests and tokens per minute and on requests in
 * flight (options requests_per_minute, tokens_per_minute, max_concurrency),
 * set per provider (its options) and per model (its limits), shared by
 * every backend and worker through shared memory.  Without
 * shared_preload_libraries each process keeps its own buckets.
 */
#ifndef LLMEXT_RATELIMIT_H
#define LLMEXT_RATELIMIT_H

#include "postgres.h"

#include "store/catalog.h"

/*
 * Admits a request of about tokens tokens to the model and its provider: 0
 * when it may go now (and is counted, in flight until llm_rate_release),
 * else the milliseconds to wait before asking again (nothing is counted).
 * max_concurrency caps the requests in flight at once, across every backend
 * and the worker.
 */
extern double llm_rate_admit(const LlmModel *model, int64 tokens);

/* An admitted request is answered, failed or abandoned. */
extern void llm_rate_release(const LlmModel *model);

/* After the answer: counts the difference between used and estimated tokens. */
extern void llm_rate_settle(const LlmModel *model, int64 estimated, int64 used);

/* The tokens a request body is likely to cost: prompt and answer. */
extern int64 llm_rate_estimate(const LlmProviderRoutine *routine, const char *body,
								 const cJSON *params);

#endif							/* LLMEXT_RATELIMIT_H */
