/*
 * eval_collect.c — the worker scores evaluation answers in sets.
 *
 * The requests of an evaluation run (tag "eval-<run>") carry no callback:
 * once a turn's outcomes are written, their ids go to llm._eval_collect in
 * the same transaction, one statement for the turn, so that an answer and
 * its score are committed together.  A callback per answer (a transaction,
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

#include "queue/queue_private.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

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

void
llm_queue_collect_evals(List *finished)
{
	static SPIPlanPtr collect_plan = NULL;
	static SPIPlanPtr failed_plan = NULL;
	Datum	   *ids = palloc(sizeof(Datum) * (list_length(finished) + 1));
	int			n = 0;
	ListCell   *cell;
	Datum		args[2];

	foreach(cell, finished)
	{
		QueuedCall *qc = lfirst(cell);

		if (qc->tag != NULL && strncmp(qc->tag, EVAL_TAG_PREFIX, strlen(EVAL_TAG_PREFIX)) == 0)
			ids[n++] = Int64GetDatum(qc->id);
	}
	if (n == 0)
	{
		pfree(ids);
		return;
	}
	if (collect_plan == NULL)
	{
		collect_plan = llm_queue_keep_plan("SELECT llm._eval_collect($1)", 1, (Oid[]) {INT8ARRAYOID});
		failed_plan = llm_queue_keep_plan("SELECT llm._eval_collect_failed($1, $2)", 2,
										  (Oid[]) {INT8OID, TEXTOID});
	}
	args[0] = id_array(ids, n);
	if (n == 1 || run_isolated(collect_plan, args) != NULL)
	{
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
	pfree(ids);
}
