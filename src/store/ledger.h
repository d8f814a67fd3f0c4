/*
 * ledger.h — ledger rows and cache entries on their way to their tables.
 *
 * A backend hands each entry to the worker serving its database through
 * shared memory, so the write happens in the worker's own transaction and
 * survives the caller's ROLLBACK.  Without a worker (no preload, or the
 * database is not in llmext.databases) the backend writes the entry itself,
 * in its own transaction, and says so once with a WARNING.
 */
#ifndef LLMEXT_LEDGER_H
#define LLMEXT_LEDGER_H

#include "postgres.h"

#include "core/request.h"
#include "store/shmem.h"
#include "utils/timestamp.h"

/* One ledger row: a provider call or a cache hit. */
typedef struct LlmLedgerRow
{
	const char *source;			/* sync, batch, queue or finetune */
	const char *prompt_name;	/* NULL unless a stored prompt was used */
	int			prompt_version;
	const char *model;
	const char *remote_model;
	const char *provider;
	bool		cache_hit;
	long		http_status;	/* 0: no HTTP answer */
	const char *error;			/* NULL: the call succeeded */
	LlmUsage	usage;
	double		cost_usd;
	double		cost_saved_usd;
	double		latency_ms;
	const char *request_id;
	const char *fingerprint;
	/* kept in llm.call_io (llmext.keep_call_io), each up to LLM_CALL_IO_MAX_BYTES */
	const cJSON *vars;			/* a stored prompt's variables */
	const cJSON *messages;		/* the request's messages: the last user message is kept */
	const char *output;			/* the answer */
} LlmLedgerRow;

#define LLM_CALL_IO_MAX_BYTES 65536

/* llmext.keep_call_io: whether calls keep their variables, input and answer */
extern bool llm_keep_call_io;

/* llmext.queue_full_wait: how long a backend waits for a place in a full queue (ms) */
extern int	llm_queue_full_wait_ms;

/* The entry_id of the last ledger row this backend made, or NULL. */
extern const char *llm_ledger_last_entry_id(void);

/* Queues a ledger row (see llm_pending_add): its entry_id (palloc'd). */
extern char *llm_ledger_record(const LlmLedgerRow *row);
/*
 * The JSON object of a ledger row for llm._persist (acting and login roles
 * the current ones), for a caller that writes it itself in its own
 * transaction with llm_persist: the fine-tuning worker, whose ledger row
 * commits with the job's success, exactly once.
 */
extern char *llm_ledger_row_json(const LlmLedgerRow *row);

/* ISO 8601 text of t, whatever the session's DateStyle. */
extern char *llm_iso_timestamp(TimestampTz t);

/*
 * Queues one entry: json is a JSON object with "kind" "call" or "cache"
 * (see llm._persist).  key is the cache key of a cache entry, or NULL.
 * cost_usd counts towards pending spend for budgets.
 */
extern void llm_pending_add(LlmEntryKind kind, const char *key, double cost_usd,
							const char *json);

/* The newest queued cache entry for key in this database (palloc'd JSON), or NULL. */
extern char *llm_pending_cache_entry(const char *key);

/* Unwritten spend of one pair of acting and login roles. */
typedef struct LlmPendingSpend
{
	Oid			roleid;
	Oid			loginid;
	double		cost_usd;
} LlmPendingSpend;

/*
 * Queued, unwritten spend in this database: everyone's in *all, and the
 * calls made as roleid or from loginid by pair of roles in *own (palloc'd):
 * the number of pairs.
 */
extern int	llm_pending_spend(Oid roleid, Oid loginid, LlmPendingSpend **own, double *all);

/* Waits until the entries queued so far in this database are written. */
extern bool llm_pending_wait_written(long timeout_ms);

/* Writes a JSON array of entries with llm._persist, as the extension's owner. */
extern void llm_persist(const char *json_array);

/*
 * Worker side: see worker.c.  Entries the worker made itself while the
 * queue was full are held in its own memory (the llm_held_* calls, oldest
 * first) and written by it; the others are claimed from the queue.
 */
extern int	llm_held_count(void);
extern const char *llm_held_payload(int index);
extern int	llm_held_attempts(int index);
extern void llm_held_release(int first, int n, bool written);
extern int	llm_pending_claim(Oid dboid, int max, int *indexes);
extern char *llm_pending_payload(int index);
extern int	llm_pending_attempts(int index);
extern void llm_pending_release(const int *indexes, int n, bool written);
extern void llm_pending_unclaim_all(Oid dboid);

#endif							/* LLMEXT_LEDGER_H */
