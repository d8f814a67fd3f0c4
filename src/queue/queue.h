/*
 * queue.h — the asynchronous queue (llm.requests), run by the worker.
 */
#ifndef LLMEXT_QUEUE_H
#define LLMEXT_QUEUE_H

#include "postgres.h"

/* GUC: requests the worker keeps in flight at once */
extern int	llm_worker_concurrency;

typedef struct LlmQueue LlmQueue;

/* Worker side; each call manages its own transactions. */
/* A short transaction of the worker's, reported in pg_stat_activity. */
extern void llm_queue_begin(const char *activity);
extern void llm_queue_end(void);

extern LlmQueue *llm_queue_create(void);
extern void llm_queue_recover(void);
extern void llm_queue_start_due(LlmQueue *queue);
extern bool llm_queue_busy(LlmQueue *queue);
/* How long the worker may wait: longest_ms, or less when rows put back fall due. */
extern long llm_queue_idle_wait_ms(LlmQueue *queue, long longest_ms);
extern void llm_queue_collect(LlmQueue *queue, long wait_ms);
extern void llm_queue_write(LlmQueue *queue);
/* Scores the evaluation answers written, when enough have come or waited (or force). */
extern void llm_queue_score_evals(LlmQueue *queue, bool force);

/* At a stop: puts back what was claimed but not sent. */
extern void llm_queue_shutdown(LlmQueue *queue);

/* Stops the transfers of requests cancelled while in flight. */
extern void llm_queue_drop_cancelled(LlmQueue *queue);

/* Backends: wake the worker when the current transaction commits (work was queued). */
extern void llm_queue_wake_at_commit(void);

#endif							/* LLMEXT_QUEUE_H */
