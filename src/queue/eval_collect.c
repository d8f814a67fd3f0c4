/*
 * eval_collect.c — evaluation answers scored in sets.
 *
 * The requests of an evaluation run (tag "eval-<run>") carry no callback:
 * the worker hands the ids of those it has written to the scorer
 * (scorer.c), which gives them to llm._eval_collect in one statement once
 * EVAL_BATCH have come or the first has waited EVAL_DELAY_MS.  When no
 * scorer can take them, the worker keeps them and scores them itself in
 * the same way, between its turns.  A callback per answer (a transaction,
 * a subtransaction and a nest of settings each, one after another in the
 * queue's one worker) held a run to half the queue's rate.
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
#include "queue/scorer.h"
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

static void
keep(LlmQueue *queue, int64 id)
{
	if (queue->n_eval_ids == queue->max_eval_ids)
	{
		queue->max_eval_ids = Max(2 * queue->max_eval_ids, EVAL_BATCH);
		queue->eval_ids = queue->eval_ids == NULL
			? MemoryContextAlloc(queue->context, sizeof(int64) * queue->max_eval_ids)
			: repalloc(queue->eval_ids, sizeof(int64) * queue->max_eval_ids);
	}
	if (queue->n_eval_ids == 0)
		queue->eval_since = GetCurrentTimestamp();
	queue->eval_ids[queue->n_eval_ids++] = id;
}

void
llm_queue_note_eval(LlmQueue *queue, QueuedCall *qc)
{
	int64		back[64];
	int			n;

	if (qc->tag == NULL || strncmp(qc->tag, EVAL_TAG_PREFIX, strlen(EVAL_TAG_PREFIX)) != 0)
		return;
	if (llm_scorer_hand(qc->id))
		return;
	keep(queue, qc->id);
	/* and what was handed to a scorer that did not come up */
	while ((n = llm_scorer_take_back(back, lengthof(back))) > 0)
		for (int i = 0; i < n; i++)
			keep(queue, back[i]);
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
llm_queue_score_ids(const int64 *ids, int n)
{
	MemoryContext caller = CurrentMemoryContext;
	Datum	   *datums;

	llm_queue_begin("llmext: scoring evaluation answers");
	llm_spi_connect();
	datums = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
		datums[i] = Int64GetDatum(ids[i]);
	score(datums, n);
	SPI_finish();
	llm_queue_end();
	MemoryContextSwitchTo(caller);
}

void
llm_queue_score_evals(LlmQueue *queue, bool force)
{
	int			n = queue->n_eval_ids;

	if (!llm_queue_busy(queue))
		llm_scorer_now();
	if (n == 0)
		return;
	if (!force && n < EVAL_BATCH && llm_queue_busy(queue) &&
		llm_queue_eval_wait_ms(queue, GetCurrentTimestamp(), 1) > 0)
		return;
	queue->n_eval_ids = 0;
	llm_queue_score_ids(queue->eval_ids, n);
}
