/*
 * finetune.h — the worker's side of fine-tuning jobs (llm.finetune_jobs).
 */
#ifndef LLMEXT_FINETUNE_H
#define LLMEXT_FINETUNE_H

#include "postgres.h"

/* llmext.finetune_poll_interval: the first wait between two polls of a job (ms) */
extern int	llm_finetune_poll_interval_ms;
/* llmext.finetune_poll_max_interval: the longest wait the back-off reaches (ms) */
extern int	llm_finetune_poll_max_ms;
/*
 * llmext.finetune_crash_after_create: a test hook.  The worker kills itself
 * (SIGKILL) right after the provider accepted a job and before recording
 * its id, to test that recovery finds the job instead of creating another.
 */
extern bool llm_finetune_crash_after_create;

/* The most failed provider requests in a row before a job is failed. */
#define LLM_FINETUNE_MAX_ATTEMPTS 10
/* The most jobs handled in one turn of the worker's loop. */
#define LLM_FINETUNE_JOBS_PER_TURN 4

/*
 * One turn: handles the jobs that are due (a few at most), each in its own
 * short transactions; the requests to the provider are sent with no
 * transaction open.  Cheap when nothing is due: at most one indexed query
 * a second.  A transfer stops when stop() says the worker is stopping.
 * Manages its own transactions; call with none open.
 */
extern void llm_finetune_run(bool (*stop) (void));

/* How long the worker may sleep before llm_finetune_run has work (ms). */
extern long llm_finetune_wait_ms(long longest_ms);

#endif							/* LLMEXT_FINETUNE_H */
