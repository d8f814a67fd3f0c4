/*
 * worker.h — the background worker (see worker.c).
 */
#ifndef LLMEXT_WORKER_H
#define LLMEXT_WORKER_H

extern char *llm_databases;
extern char *llm_database;

/* Registers one worker per database in llmext.databases; from _PG_init. */
extern void llm_worker_register_all(void);

/* In the worker: has it been told to stop (SIGTERM)? */
extern bool llm_worker_stop_requested(void);

/*
 * Writes the ledger entries waiting in shared memory and those the worker
 * holds itself: called between the steps of long work (a provider batch's
 * answers), so that its own entries do not pile up in its memory.
 */
extern void llm_worker_flush_ledger(void);

#endif							/* LLMEXT_WORKER_H */
