/*
 * eval_collect.c — the worker scores evaluation answers in sets.
 *
 * The requests of an evaluation run (tag "eval-<run>") carry no callback:
 * the worker notes the ids of those it has written, and hands them to
 * llm._eval_collect in one statement once EVAL_BATCH have come, or the
 * first has waited EVAL_DELAY_MS, or the queue has nothing more in hand.
 * A callback per answer (a transaction, a subtransaction and a nest of
 * settings each, one after another in the queue's one worker) held a run
 * to half the queue's rate; a statement per turn, to two thirds.  Ids not
 * yet scored are lost with the worker: its successor scores what is left
 * (llm._eval_recover).
 *
 * The scorers are llmext's own, but a regex scorer runs a pattern a user
 * gave: scoring runs under llmext.callback_timeout like a callback.  When
 * the set fails, each answer is tried alone, and one that still fails has
 * why recorded on its row: an answer is never left pending, and one bad
 * case never holds up the others.
 */
#include "llmext.h"

#include "queue/queue.h"
#include "queue/queue_private.h"
#include "store/spi_check.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#define EVAL_TAG_PREFIX "eval-"
#define EVAL_BATCH 512
#define EVAL_DELAY_MS 100

/*
 * Runs plan with args in a subtransaction, under the time limit; NULL when
 * it succeeded, else why it failed.
 */
static char *
run_isolated(SPIPlanPtr plan, Datum *args)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *volatile failure = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		llm_queue_timer_start();
		if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "scoring evaluation answers failed");
		llm_queue_timer_stop();
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		llm_queue_timer_stop();
		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		failure = llm_queue_timer_overran() && edata->sqlerrcode == ERRCODE_QUERY_CANCELED
			? psprintf("it ran longer than llmext.callback_timeout (%d ms)", llm_callback_timeout_ms)
			: edata->message;
	}
	PG_END_TRY();
	CurrentResourceOwner = owner;
	MemoryContextSwitchTo(caller);
	return failure;
}

static Datum
id_array(Datum *ids, int n)
{
	return PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

void
llm_queue_note_eval(LlmQueue *queue, QueuedCall *qc)
{
	if (qc->tag == NULL || strncmp(qc->tag, EVAL_TAG_PREFIX, strlen(EVAL_TAG_PREFIX)) != 0)
		return;
	if (queue->n_eval_ids == queue->max_eval_ids)
	{
		queue->max_eval_ids = Max(2 * queue->max_eval_ids, EVAL_BATCH);
		queue->eval_ids = queue->eval_ids == NULL
			? MemoryContextAlloc(queue->context, sizeof(int64) * queue->max_eval_ids)
			: repalloc(queue->eval_ids, sizeof(int64) * queue->max_eval_ids);
	}
	if (queue->n_eval_ids == 0)
		queue->eval_since = GetCurrentTimestamp();
	queue->eval_ids[queue->n_eval_ids++] = qc->id;
}

long
llm_queue_eval_wait_ms(LlmQueue *queue, TimestampTz now, long wait_ms)
{
	TimestampTz due;

	if (queue->n_eval_ids == 0)
		return wait_ms;
	due = TimestampTzPlusMilliseconds(queue->eval_since, EVAL_DELAY_MS);
	return due <= now ? 0 : Min(wait_ms, TimestampDifferenceMilliseconds(now, due) + 1);
}

/* Scores the answers to ids[0..n-1]: in one statement, else one by one. */
static void
score(Datum *ids, int n)
{
	static SPIPlanPtr collect_plan = NULL;
	static SPIPlanPtr failed_plan = NULL;
	Datum		args[2];

	if (collect_plan == NULL)
	{
		collect_plan = llm_queue_keep_plan("SELECT llm._eval_collect($1)", 1, (Oid[]) {INT8ARRAYOID});
		failed_plan = llm_queue_keep_plan("SELECT llm._eval_collect_failed($1, $2)", 2,
										  (Oid[]) {INT8OID, TEXTOID});
	}
	args[0] = id_array(ids, n);
	if (n > 1 && run_isolated(collect_plan, args) == NULL)
		return;
	for (int i = 0; i < n; i++)
	{
		char	   *failure;

		args[0] = id_array(&ids[i], 1);
		failure = run_isolated(collect_plan, args);
		if (failure == NULL)
			continue;
		args[0] = ids[i];
		args[1] = CStringGetTextDatum(failure);
		failure = run_isolated(failed_plan, args);
		if (failure != NULL)
			ereport(WARNING,
					(errmsg("llmext could not record why scoring the answer to request "
							INT64_FORMAT " failed: %s", DatumGetInt64(ids[i]), failure)));
	}
}

void
llm_queue_score_evals(LlmQueue *queue, bool force)
{
	MemoryContext caller = CurrentMemoryContext;
	Datum	   *ids;
	int			n = queue->n_eval_ids;

	if (n == 0)
		return;
	if (!force && n < EVAL_BATCH && llm_queue_busy(queue) &&
		llm_queue_eval_wait_ms(queue, GetCurrentTimestamp(), 1) > 0)
		return;
	queue->n_eval_ids = 0;
	llm_queue_begin("llmext: scoring evaluation answers");
	llm_spi_connect();
	ids = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
		ids[i] = Int64GetDatum(queue->eval_ids[i]);
	score(ids, n);
	SPI_finish();
	llm_queue_end();
	MemoryContextSwitchTo(caller);
}
