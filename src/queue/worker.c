/*
 * worker.c — the background worker: one per database in llmext.databases.
 *
 * It writes the ledger rows and cache entries that backends queue in shared
 * memory, in its own short transactions, at least once a second, at once
 * when asked (llm_flush, or a queue filling up), and a last time when told
 * to stop.  It runs the asynchronous queue (queue.c) on the same engine
 * that serves backends, and deletes expired cache entries.
 */
#include "llmext.h"

#include "queue/worker.h"

#include "queue/finetune.h"
#include "queue/provider_batch.h"
#include "queue/queue.h"
#include "queue/scorer.h"
#include "store/ledger.h"
#include "store/spi_check.h"
#include "store/version.h"

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#define FLUSH_INTERVAL_MS 1000
#define CANCEL_CHECK_MS 500		/* how soon a cancelled request's transfer stops */
#define QUEUE_POLL_MS 100		/* longest wait on requests in flight before looking around */
#define EXPIRE_INTERVAL_MS 60000
#define CLAIM_BATCH 1000
#define MAX_ATTEMPTS 5			/* then the entry goes to the server log instead */

char	   *llm_databases = NULL;
char	   *llm_database = NULL;

PGDLLEXPORT void llm_worker_main(Datum arg);

static volatile sig_atomic_t stop_requested = false;

static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	stop_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

bool
llm_worker_stop_requested(void)
{
	return stop_requested;
}

static List *
database_list(void)
{
	char	   *raw = pstrdup(llm_databases && llm_databases[0] ? llm_databases : llm_database);
	List	   *names = NIL;

	if (!SplitIdentifierString(raw, ',', &names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in llmext.databases")));
	return names;
}

void
llm_worker_register_all(void)
{
	List	   *names = database_list();
	ListCell   *cell;
	int			index = 0;

	if (list_length(names) > LLM_MAX_WORKERS)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("llmext.databases names %d databases; at most %d are supported",
						list_length(names), LLM_MAX_WORKERS)));
	foreach(cell, names)
	{
		BackgroundWorker worker;
		ListCell   *earlier;
		bool		repeated = false;

		/* two workers for one database would recover each other's requests */
		foreach(earlier, names)
		{
			if (earlier == cell)
				break;
			repeated |= strcmp(lfirst(earlier), lfirst(cell)) == 0;
		}
		if (repeated)
		{
			index++;
			continue;
		}

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		/* a worker that fails comes back, but not in a tight loop */
		worker.bgw_restart_time = 5;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "llmext");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "llm_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "llmext worker for database %s",
				 (char *) lfirst(cell));
		snprintf(worker.bgw_type, BGW_MAXLEN, "llmext worker");
		worker.bgw_main_arg = Int32GetDatum(index++);
		RegisterBackgroundWorker(&worker);
	}
}

static void
unregister_worker(int code, Datum arg)
{
	int			slot = DatumGetInt32(arg);

	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	llm_shared->workers[slot].pid = 0;
	llm_shared->workers[slot].latch = NULL;
	llm_shared->workers[slot].held_seq = 0;
	LWLockRelease(llm_shared->lock);
}

static void
register_worker(int slot)
{
	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	llm_shared->workers[slot].dboid = MyDatabaseId;
	llm_shared->workers[slot].pid = MyProcPid;
	llm_shared->workers[slot].latch = MyLatch;
	llm_shared->workers[slot].held_seq = 0;
	LWLockRelease(llm_shared->lock);
	before_shmem_exit(unregister_worker, Int32GetDatum(slot));
}

/* Is llmext installed here, and not half-created?  Checked in a transaction. */
static bool
extension_ready(void)
{
	return OidIsValid(get_extension_oid("llmext", true)) && !creating_extension;
}

/*
 * Writes the given claimed entries in one transaction.  On failure the
 * transaction is rolled back and false returned; the error is logged.
 */
static bool
write_entries(const char *const *payloads, int n)
{
	MemoryContext context = CurrentMemoryContext;
	StringInfoData json;

	initStringInfo(&json);
	appendStringInfoChar(&json, '[');
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(&json, ',');
		appendStringInfoString(&json, payloads[i]);
	}
	appendStringInfoChar(&json, ']');

	PG_TRY();
	{
		llm_queue_begin("llmext: writing ledger rows and cache entries");
		if (extension_ready())
			llm_persist(json.data);
		else
			ereport(LOG,
					(errmsg("llmext worker dropped %d entries: the extension is not installed in database \"%s\"",
							n, get_database_name(MyDatabaseId))));
		llm_queue_end();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		pfree(json.data);
		return false;
	}
	PG_END_TRY();
	pfree(json.data);
	return true;
}

/* The record of money spent is never silently lost: it goes to the log. */
static void
give_up_entry(const char *payload)
{
	ereport(LOG,
			(errmsg("llmext worker gave up writing an entry after %d attempts",
					MAX_ATTEMPTS),
			 errdetail("Entry: %s", payload)));
}

/*
 * Writes everything queued for this database.  A batch that fails is
 * retried; entries that keep failing are written one at a time, and one
 * that still fails after MAX_ATTEMPTS goes to the server log so that the
 * record of money spent is never silently lost.
 */
static void
flush_pending(void)
{
	int			indexes[CLAIM_BATCH];
	const char *payloads[CLAIM_BATCH];
	int			n;

	while ((n = llm_pending_claim(MyDatabaseId, CLAIM_BATCH, indexes)) > 0)
	{
		bool		retried = false;

		for (int i = 0; i < n; i++)
		{
			payloads[i] = llm_pending_payload(indexes[i]);
			retried |= llm_pending_attempts(indexes[i]) > 0;
		}
		if (!retried)
		{
			if (!write_entries(payloads, n))
			{
				llm_pending_release(indexes, n, false);
				return;			/* try again at the next tick */
			}
			llm_pending_release(indexes, n, true);
			continue;
		}
		for (int i = 0; i < n; i++)
		{
			bool		written = write_entries(&payloads[i], 1);

			if (!written && llm_pending_attempts(indexes[i]) + 1 >= MAX_ATTEMPTS)
			{
				give_up_entry(payloads[i]);
				written = true;
			}
			llm_pending_release(&indexes[i], 1, written);
		}
		if (n < CLAIM_BATCH)
			return;
	}
}

/*
 * Writes the entries the worker held itself because the queue was full
 * (see llm_pending_add), with the same retries as queued ones.
 */
static void
flush_held(void)
{
	const char *payloads[CLAIM_BATCH];
	int			n;

	while ((n = Min(llm_held_count(), CLAIM_BATCH)) > 0)
	{
		bool		retried = false;
		int			next = 0;

		for (int i = 0; i < n; i++)
		{
			payloads[i] = llm_held_payload(i);
			retried |= llm_held_attempts(i) > 0;
		}
		if (!retried)
		{
			bool		written = write_entries(payloads, n);

			llm_held_release(0, n, written);
			if (!written)
				return;			/* try again at the next turn */
			continue;
		}
		/* one at a time; those still failing stay at the front, in order */
		for (int i = 0; i < n; i++)
		{
			bool		written = write_entries(&payloads[i], 1);

			if (!written && llm_held_attempts(next) + 1 >= MAX_ATTEMPTS)
			{
				give_up_entry(payloads[i]);
				written = true;
			}
			llm_held_release(next, 1, written);
			if (!written)
				next++;
		}
		if (next > 0)
			return;
	}
}

static void
expire_cache(void)
{
	PG_TRY();
	{
		llm_queue_begin("llmext: deleting expired cache entries");
		if (extension_ready())
		{
			llm_spi_connect();
			llm_spi_check(SPI_execute("SELECT llm._cache_expire(1000)", false, 0),
						  "llm._cache_expire");
			/* and calls' inputs and answers past llmext.call_io_days */
			if (llm_call_io_days > 0 && llm_schema_is_current())
				llm_spi_check(SPI_execute(psprintf("SELECT llm._call_io_expire(%d, 10000)",
												   llm_call_io_days), false, 0),
							  "llm._call_io_expire");
			SPI_finish();
		}
		llm_queue_end();
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_END_TRY();
}

void
llm_worker_flush_ledger(void)
{
	flush_held();
	flush_pending();
}

void
llm_worker_main(Datum arg)
{
	int			slot = DatumGetInt32(arg);
	List	   *names;
	char	   *dbname;
	MemoryContext loop_context;
	TimestampTz next_expiry;
	TimestampTz next_cancel_check = 0;
	LlmQueue   *queue;

	pqsignal(SIGTERM, handle_sigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	names = database_list();
	dbname = list_nth(names, slot);
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	pgstat_report_appname("llmext worker");
	/*
	 * The worker's own queries run as a superuser: no schema a user can
	 * create in may come before pg_catalog.  Callbacks run in a nest level
	 * of settings that is rolled back (queue_write.c), so this stays.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);

	register_worker(slot);
	llm_scorer_attach(slot);
	/* a predecessor may have died while writing: its entries go again */
	llm_pending_unclaim_all(MyDatabaseId);

	loop_context = AllocSetContextCreate(TopMemoryContext, "llmext worker loop",
										 ALLOCSET_DEFAULT_SIZES);
	queue = llm_queue_create();
	/* requests a predecessor left running are run again: they end exactly once */
	llm_queue_recover();
	next_expiry = GetCurrentTimestamp();
	ereport(LOG, (errmsg("llmext worker started for database \"%s\"", dbname)));

	while (!stop_requested)
	{
		MemoryContext old = MemoryContextSwitchTo(loop_context);

		/* with requests in flight, their sockets are what the worker waits on */
		if (llm_queue_busy(queue))
			llm_queue_collect(queue, llm_queue_idle_wait_ms(queue, QUEUE_POLL_MS));
		else
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 llm_provider_batches_wait_ms(llm_finetune_wait_ms(llm_queue_idle_wait_ms(queue, FLUSH_INTERVAL_MS))),
							 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);

		/*
		 * A busy worker waits in curl, not in WaitLatch: check the
		 * postmaster here too, before claiming or sending anything more.
		 */
		if (!PostmasterIsAlive())
			proc_exit(1);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (GetCurrentTimestamp() >= next_cancel_check)
		{
			llm_queue_drop_cancelled(queue);
			next_cancel_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), CANCEL_CHECK_MS);
		}
		/* freed places are refilled first: the provider works while we write */
		llm_queue_start_due(queue);
		llm_queue_write(queue);
		llm_queue_score_evals(queue, false);
		flush_held();
		flush_pending();
		/* a few due fine-tuning jobs: a poll, an upload or a create each */
		llm_finetune_run(llm_worker_stop_requested);
		/* requests for providers' Batch APIs: collected, sent, polled, answered */
		llm_provider_batches_run(queue, llm_worker_stop_requested);
		if (GetCurrentTimestamp() >= next_expiry)
		{
			expire_cache();
			next_expiry = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), EXPIRE_INTERVAL_MS);
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(loop_context);
	}

	llm_queue_shutdown(queue);
	llm_queue_score_evals(queue, true);
	/* the last entries backends queued (or we held) before the shutdown */
	flush_held();
	flush_pending();
	ereport(LOG, (errmsg("llmext worker for database \"%s\" stopped", dbname)));
	/* a non-zero exit brings the worker back unless the server is stopping */
	proc_exit(1);
}
