/*
 * shmem.h — llmext's shared memory: the queue of ledger rows and cache
 * entries waiting to be written, and the registry of background workers.
 *
 * Present only when llmext is in shared_preload_libraries; llm_shared is
 * NULL otherwise, and callers fall back to doing the work themselves.
 */
#ifndef LLMEXT_SHMEM_H
#define LLMEXT_SHMEM_H

#include "postgres.h"

#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/dsa.h"
#include "utils/timestamp.h"

#include "core/bucket.h"

#define LLM_MAX_WORKERS 16
#define LLM_MAX_RATE_SLOTS 64

typedef enum LlmEntryState
{
	LLM_ENTRY_FREE = 0,
	LLM_ENTRY_FILLED,			/* waiting for a worker */
	LLM_ENTRY_CLAIMED			/* a worker is writing it */
} LlmEntryState;

typedef enum LlmEntryKind
{
	LLM_ENTRY_CALL = 'L',		/* a ledger row */
	LLM_ENTRY_CACHE = 'C'		/* a cache entry */
} LlmEntryKind;

/* One pending entry; its JSON text lives in the dynamic shared area. */
typedef struct LlmPendingEntry
{
	LlmEntryState state;
	char		kind;
	uint8		attempts;		/* failed writes so far */
	Oid			dboid;
	Oid			roleid;			/* the acting role of a ledger row */
	Oid			loginid;		/* and its login role */
	uint64		seq;
	double		cost_usd;
	char		key[65];		/* cache key (hex SHA-256) */
	dsa_pointer payload;
} LlmPendingEntry;

typedef struct LlmWorkerInfo
{
	Oid			dboid;
	pid_t		pid;
	Latch	   *latch;
	uint64		held_seq;		/* oldest entry it holds itself, 0: none */
} LlmWorkerInfo;

/*
 * Evaluation answers a database's worker has written, handed to its scorer
 * (queue/scorer.c), a process of its own started while there are some.
 */
#define LLM_EVAL_HANDOFF 8192
typedef struct LlmScorerInfo
{
	pid_t		pid;			/* 0: none; -1: being started */
	TimestampTz started_at;		/* when it was registered */
	Latch	   *latch;
	int			count;
	bool		now;			/* the worker has nothing more in hand: score at once */
	TimestampTz first_at;		/* when ids[0] was handed */
	int64		ids[LLM_EVAL_HANDOFF];
} LlmScorerInfo;

/* Rate-limit buckets of one provider or model (see ratelimit.c). */
#define LLM_RATE_KEY_LEN 200	/* provider (63) "/" model (128), and room */
typedef struct LlmRateSlot
{
	char		key[LLM_RATE_KEY_LEN];	/* provider or provider/model; "" : free */
	LlmBucket	requests;
	LlmBucket	tokens;
	int			rpm;			/* the limits last applied to the buckets */
	int			tpm;
	int			in_flight;		/* requests sent and not yet answered */
} LlmRateSlot;

typedef struct LlmShared
{
	LWLock	   *lock;
	int			dsa_tranche;
	dsa_handle	area_handle;
	uint64		next_seq;
	int			capacity;
	int			next_free;		/* where to start looking for a free slot */
	int			cache_entries;	/* queued cache entries: 0 spares look-ups a scan */
	int			used;			/* slots not free */
	LlmWorkerInfo workers[LLM_MAX_WORKERS];
	LlmScorerInfo scorers[LLM_MAX_WORKERS];	/* by the worker's slot */
	LlmRateSlot rates[LLM_MAX_RATE_SLOTS];
	LlmPendingEntry entries[FLEXIBLE_ARRAY_MEMBER];
} LlmShared;

extern LlmShared *llm_shared;

/* GUCs that size shared memory (see llmext.c) */
extern int	llm_pending_capacity;
extern int	llm_pending_memory_mb;

/* Installs the shared-memory hooks; called from _PG_init when preloading. */
extern void llm_shmem_install(void);

/* The dynamic shared area for entry payloads, created or attached on first use. */
extern dsa_area *llm_shared_area(void);

/* The latch of the worker serving database dboid, or NULL if none runs. */
extern Latch *llm_worker_latch(Oid dboid);

#endif							/* LLMEXT_SHMEM_H */
