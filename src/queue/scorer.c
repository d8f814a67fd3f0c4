/*
 * scorer.c — the evaluation scorer: a process per database, started by
 * its worker while evaluation answers come in, that scores them in sets.
 *
 * The worker hands the ids of the evaluation answers it writes to its
 * scorer through shared memory (llm_shared->scorers, by the worker's
 * slot), starting the scorer when none runs.  The scorer waits until
 * EVAL_BATCH ids have come, or the first has waited EVAL_DELAY_MS, or the
 * worker has nothing more in hand (llm_scorer_now), scores
 * them in one statement (eval_collect.c) and goes on; after SCORER_IDLE_MS
 * with nothing to do it stops.  Scoring in the worker itself stalled its
 * transfers for as long as each statement ran (the worker is one process
 * driving every transfer); here it runs beside them, on another core.
 *
 * When no scorer can be started (no background worker slot free) or the
 * hand-off is full, the worker scores the answers itself.  Ids handed and
 * not scored are lost with the scorer's process; the next scorer, and the
 * worker at its start, score what is left (llm._eval_recover).
 */
#include "llmext.h"

#include "queue/queue.h"
#include "queue/queue_private.h"
#include "queue/scorer.h"
#include "store/shmem.h"
#include "store/spi_check.h"
#include "store/version.h"

#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#define SCORER_IDLE_MS 30000
#define SCORER_RETRY_MS 10000	/* after a scorer could not be started */

PGDLLEXPORT void llm_scorer_main(Datum arg);

/* In the worker: its slot, when starting a scorer last failed, and whether it handed ids since it last said "now". */
static int	worker_slot = -1;
static TimestampTz start_failed_at = 0;
static bool handed = false;

static volatile sig_atomic_t stop_requested = false;

static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	stop_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

void
llm_scorer_attach(int slot)
{
	worker_slot = slot;
}

/* Registers a scorer for the worker's slot; false when none can be started. */
static bool
start_scorer(void)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "llmext");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "llm_scorer_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "llmext scorer for database %u", MyDatabaseId);
	snprintf(worker.bgw_type, BGW_MAXLEN, "llmext scorer");
	worker.bgw_main_arg = Int32GetDatum(worker_slot);
	worker.bgw_notify_pid = 0;
	return RegisterDynamicBackgroundWorker(&worker, &handle);
}

bool
llm_scorer_hand(int64 id)
{
	LlmScorerInfo *scorer;
	Latch	   *latch = NULL;
	bool		start = false;

	if (llm_shared == NULL || worker_slot < 0)
		return false;
	if (start_failed_at != 0 &&
		!TimestampDifferenceExceeds(start_failed_at, GetCurrentTimestamp(), SCORER_RETRY_MS))
		return false;
	scorer = &llm_shared->scorers[worker_slot];
	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	if (scorer->count == LLM_EVAL_HANDOFF)
	{
		LWLockRelease(llm_shared->lock);
		return false;
	}
	if (scorer->count == 0)
		scorer->first_at = GetCurrentTimestamp();
	scorer->ids[scorer->count++] = id;
	/* none runs, or one registered long ago never came up */
	if (scorer->pid == 0 ||
		(scorer->pid == -1 &&
		 TimestampDifferenceExceeds(scorer->started_at, GetCurrentTimestamp(), SCORER_RETRY_MS)))
	{
		scorer->pid = -1;
		scorer->started_at = GetCurrentTimestamp();
		start = true;
	}
	/* the first id starts its wait; a full batch ends it */
	else if (scorer->count == 1 || scorer->count == EVAL_BATCH)
		latch = scorer->latch;
	LWLockRelease(llm_shared->lock);
	if (latch != NULL)
		SetLatch(latch);
	handed = true;
	if (start && !start_scorer())
	{
		/* none can be started: the worker scores what it handed itself */
		ereport(LOG,
				(errmsg("llmext could not start an evaluation scorer: no background worker slot is free"),
				 errdetail("The worker scores evaluation answers itself, and tries again in %d seconds.",
						   SCORER_RETRY_MS / 1000),
				 errhint("Raise max_worker_processes.")));
		start_failed_at = GetCurrentTimestamp();
		LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
		scorer->pid = 0;
		LWLockRelease(llm_shared->lock);
		return false;
	}
	return true;
}

void
llm_scorer_now(void)
{
	LlmScorerInfo *scorer;
	Latch	   *latch;

	if (!handed || llm_shared == NULL || worker_slot < 0)
		return;
	handed = false;
	scorer = &llm_shared->scorers[worker_slot];
	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	scorer->now = true;
	latch = scorer->latch;
	LWLockRelease(llm_shared->lock);
	if (latch != NULL)
		SetLatch(latch);
}

/* Moves up to max of the oldest ids handed out of the hand-off (lock held). */
static int
take_ids(LlmScorerInfo *scorer, int64 *ids, int max)
{
	int			n = Min(scorer->count, max);

	memcpy(ids, scorer->ids, sizeof(int64) * n);
	memmove(scorer->ids, scorer->ids + n, sizeof(int64) * (scorer->count - n));
	scorer->count -= n;
	return n;
}

int
llm_scorer_take_back(int64 *ids, int max)
{
	LlmScorerInfo *scorer;
	int			n = 0;

	if (llm_shared == NULL || worker_slot < 0)
		return 0;
	scorer = &llm_shared->scorers[worker_slot];
	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	if (scorer->pid <= 0)
		n = take_ids(scorer, ids, max);
	LWLockRelease(llm_shared->lock);
	return n;
}

static void
scorer_gone(int code, Datum arg)
{
	LlmScorerInfo *scorer = &llm_shared->scorers[DatumGetInt32(arg)];

	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	if (scorer->pid == MyProcPid)
	{
		scorer->pid = 0;
		scorer->latch = NULL;
	}
	LWLockRelease(llm_shared->lock);
}

/*
 * What the scorer should do now: take up to max ids into ids (their
 * number), or wait *wait_ms for more (0), or stop (-1: nothing came for
 * SCORER_IDLE_MS, and it has let go of its slot, so that the next id
 * starts another).
 */
static int
next_ids(LlmScorerInfo *scorer, int64 *ids, int max, TimestampTz idle_since, long *wait_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;

	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	if (scorer->count == 0)
	{
		if (TimestampDifferenceExceeds(idle_since, now, SCORER_IDLE_MS) || stop_requested)
		{
			scorer->pid = 0;
			scorer->latch = NULL;
			n = -1;
		}
		else
			*wait_ms = SCORER_IDLE_MS;
	}
	else if (scorer->count < EVAL_BATCH && !stop_requested && !scorer->now &&
			 !TimestampDifferenceExceeds(scorer->first_at, now, EVAL_DELAY_MS))
		*wait_ms = TimestampDifferenceMilliseconds(now, TimestampTzPlusMilliseconds(scorer->first_at,
																					EVAL_DELAY_MS)) + 1;
	else
	{
		n = take_ids(scorer, ids, max);
		scorer->first_at = now;
		scorer->now = false;
	}
	LWLockRelease(llm_shared->lock);
	return n;
}

void
llm_scorer_main(Datum arg)
{
	int			slot = DatumGetInt32(arg);
	LlmScorerInfo *scorer = &llm_shared->scorers[slot];
	MemoryContext loop_context;
	int64	   *ids;
	TimestampTz idle_since;

	pqsignal(SIGTERM, handle_sigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(llm_shared->workers[slot].dboid, InvalidOid, 0);
	pgstat_report_appname("llmext scorer");
	/* as in the worker: its own queries run as a superuser */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);

	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	scorer->pid = MyProcPid;
	scorer->latch = MyLatch;
	LWLockRelease(llm_shared->lock);
	before_shmem_exit(scorer_gone, Int32GetDatum(slot));

	loop_context = AllocSetContextCreate(TopMemoryContext, "llmext scorer loop",
										 ALLOCSET_DEFAULT_SIZES);
	ids = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * LLM_EVAL_HANDOFF);
	/* what an earlier scorer was handed and did not score */
	llm_queue_begin("llmext: scoring evaluation answers left");
	if (llm_schema_is_current())
	{
		llm_spi_connect();
		llm_spi_check(SPI_execute("SELECT llm._eval_recover()", false, 0), "llm._eval_recover");
		SPI_finish();
	}
	llm_queue_end();

	idle_since = GetCurrentTimestamp();
	for (;;)
	{
		long		wait_ms = 0;
		int			n;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		n = next_ids(scorer, ids, LLM_EVAL_HANDOFF, idle_since, &wait_ms);
		if (n < 0)
			break;
		if (n == 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, wait_ms,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}
		MemoryContextSwitchTo(loop_context);
		llm_queue_score_ids(ids, n);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loop_context);
		idle_since = GetCurrentTimestamp();
	}
	proc_exit(0);
}
