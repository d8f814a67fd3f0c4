/*
 * provider_batch.h — the worker's side of provider batches: queued requests
 * that asked for a provider's Batch API (llm.requests.batch_api) are sent
 * as batches (llm.provider_batches) and answered from their output files.
 */
#ifndef LLMEXT_PROVIDER_BATCH_H
#define LLMEXT_PROVIDER_BATCH_H

#include "postgres.h"

#include "queue/queue.h"

/* llmext.batch_api_wait: how long the oldest request waits for company (ms) */
extern int	llm_batch_api_wait_ms;
/* llmext.batch_api_max_requests: the most requests in one provider batch */
extern int	llm_batch_api_max_requests;
/* llmext.batch_api_poll_interval: between two polls of a batch (ms) */
extern int	llm_batch_api_poll_ms;

/*
 * llmext.batch_api_crash_after_create: a test hook.  The worker kills itself
 * (SIGKILL) right after a provider accepted a batch and before recording
 * its id, to test that recovery finds the batch instead of creating another.
 */
extern bool llm_batch_api_crash_after_create;

/* llmext.batch_api_max_bytes: the largest input file (OpenAI takes 200 MB) */
extern int	llm_batch_api_max_bytes;

/* The largest output file read. */
#define LLM_BATCH_MAX_OUTPUT_BYTES ((int64) 2 * 1024 * 1024 * 1024 - 1)
/* The most failed provider requests in a row before a batch fails. */
#define LLM_BATCH_MAX_ATTEMPTS 10
/* The most provider batches handled in one turn of the worker's loop. */
#define LLM_BATCH_PER_TURN 4

/*
 * One turn: collects the requests that are due into new provider batches,
 * and handles a few due batches (an upload, a create, a poll, or reading
 * the answers), each step in short transactions of its own, the requests
 * to the provider with no transaction open.  Answers go through queue's
 * usual writing (ledger, cache, callbacks, evaluation scoring).  Cheap when
 * nothing is due: one indexed look a second.  Call with no transaction open.
 */
extern void llm_provider_batches_run(LlmQueue *queue, bool (*stop) (void));

/* How long the worker may sleep before llm_provider_batches_run has work (ms). */
extern long llm_provider_batches_wait_ms(long longest_ms);

#endif							/* LLMEXT_PROVIDER_BATCH_H */
