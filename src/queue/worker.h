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

#endif							/* LLMEXT_WORKER_H */
