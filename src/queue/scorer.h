/*
 * scorer.h — the evaluation scorer (scorer.c) and the scoring of
 * evaluation answers in sets (eval_collect.c).
 */
#ifndef LLMEXT_SCORER_H
#define LLMEXT_SCORER_H

#include "postgres.h"

/* Answers are scored once EVAL_BATCH have come or the first has waited EVAL_DELAY_MS. */
#define EVAL_BATCH 1024
#define EVAL_DELAY_MS 250

/* In the worker: the slot whose scorer it feeds. */
extern void llm_scorer_attach(int slot);

/*
 * Hands the id of an evaluation answer written to the scorer, starting one
 * if none runs; false when that cannot be done (then the worker scores it).
 */
extern bool llm_scorer_hand(int64 id);

/* The worker has nothing more in hand: what it handed is scored at once. */
extern void llm_scorer_now(void);

/* Takes back up to max ids handed to a scorer that could not be started. */
extern int	llm_scorer_take_back(int64 *ids, int max);

/* Scores the answers to ids[0..n-1] in a transaction of its own (eval_collect.c). */
extern void llm_queue_score_ids(const int64 *ids, int n);

#endif							/* LLMEXT_SCORER_H */
