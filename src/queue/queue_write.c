/*
 * queue_write.c — the worker's queue, second half: outcomes and callbacks.
 *
 * A finished request is completed as its submitter (ledger, cache) and its
 * outcome decided: done, error, or a retry.  Outcomes are written only to
 * rows still running, so a cancel wins and nothing is written twice: all
 * of a turn's in one statement, or one by one in subtransactions when that
 * statement fails.  Retries go back to the queue with a run_after;
 * callbacks run afterwards, each in its own transaction, with the
 * submitter's rights.
 */
#include "llmext.h"

#include "call/failure.h"
#include "core/retry.h"
#include "queue/queue_private.h"
#include "store/caller.h"
#include "store/spi_check.h"
#include "store/subxact.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timeout.h"

/*
 * The result a request stores and its callback gets: the call's result
 * with the entry_id of its ledger row (llm.calls.entry_id).
 */
static cJSON *
stored_result_json(const QueuedCall *qc)
{
	cJSON	   *json = llm_call_result_json(&qc->result);

	if (qc->result.entry_id != NULL)
		cJSON_AddStringToObject(json, "entry_id", qc->result.entry_id);
	return json;
}

/* Writes one request's outcome; false when it was cancelled meanwhile. */
static bool
write_outcome(QueuedCall *qc, const char *state, const char *error, bool retry, double delay_ms)
{
	static SPIPlanPtr finish_plan = NULL;
	static SPIPlanPtr retry_plan = NULL;
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;

	args[0] = Int64GetDatum(qc->id);
	if (retry)
	{
		if (retry_plan == NULL)
			retry_plan = llm_queue_keep_plan("SELECT llm._retry_later($1, $2, $3)", 3,
											 (Oid[]) {INT8OID, FLOAT8OID, TEXTOID});
		args[1] = Float8GetDatum(delay_ms);
		args[2] = CStringGetTextDatum(error);
		llm_spi_check(SPI_execute_plan(retry_plan, args, NULL, false, 0), "llm._retry_later");
	}
	else
	{
		bool		ok = error == NULL;

		if (finish_plan == NULL)
			finish_plan = llm_queue_keep_plan("SELECT llm._finish($1, $2, $3, $4::pg_catalog.jsonb,"
											  "                   $5, $6::pg_catalog.numeric)", 6,
											  (Oid[]) {INT8OID, TEXTOID, TEXTOID, TEXTOID,
											  TEXTOID, TEXTOID});
		args[1] = CStringGetTextDatum(state);
		nulls[2] = nulls[3] = 'n';
		if (ok && qc->result.chat.content != NULL)
		{
			args[2] = CStringGetTextDatum(qc->result.chat.content);
			nulls[2] = ' ';
		}
		if (ok)
		{
			args[3] = CStringGetTextDatum(cJSON_PrintUnformatted(stored_result_json(qc)));
			nulls[3] = ' ';
		}
		args[4] = error ? CStringGetTextDatum(error) : (Datum) 0;
		nulls[4] = error ? ' ' : 'n';
		args[5] = CStringGetTextDatum(psprintf("%.12f", qc->result.cost_usd));
		llm_spi_check(SPI_execute_plan(finish_plan, args, nulls, false, 0), "llm._finish");
	}
	return SPI_processed == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * The time limit of a callback (and of scoring evaluation answers, whose
 * patterns users give).  A timer cancels the callback once it runs
 * past llmext.callback_timeout, and again every tick while it goes on
 * (PL/pgSQL can catch one cancel); a callback that has ignored cancels for
 * CALLBACK_DIE_TICKS ticks ends the worker, which the postmaster restarts
 * with the queue intact.
 */
#define CALLBACK_TICK_MS 100
#define CALLBACK_DIE_TICKS 50

static TimeoutId callback_timer = MAX_TIMEOUTS;
static volatile sig_atomic_t callback_overran = false;
static volatile int callback_ticks = 0;

static void
callback_timer_fired(void)
{
	callback_overran = true;
	if (++callback_ticks > CALLBACK_DIE_TICKS)
		ProcDiePending = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

void
llm_queue_timer_start(void)
{
	if (callback_timer == MAX_TIMEOUTS)
		callback_timer = RegisterTimeout(USER_TIMEOUT, callback_timer_fired);
	callback_overran = false;
	callback_ticks = 0;
	enable_timeout_every(callback_timer,
						 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), llm_callback_timeout_ms),
						 CALLBACK_TICK_MS);
}

void
llm_queue_timer_stop(void)
{
	if (callback_timer != MAX_TIMEOUTS)
		disable_timeout(callback_timer, false);
	/* a tick that came after the callback's last check is not for the worker */
	QueryCancelPending = false;
}

bool
llm_queue_timer_overran(void)
{
	return callback_overran;
}

/*
 * Runs the request's callback the way PostgreSQL runs user code during
 * maintenance (index expressions in VACUUM and ANALYZE): as the submitter,
 * as a security-restricted operation (no SET ROLE, SET SESSION
 * AUTHORIZATION or temporary objects), inside a GUC nest level that is
 * rolled back afterwards whatever the callback set or reset, and under
 * llmext.callback_timeout.  What the callback asks of llmext is done for
 * the request's own roles, which llmext keeps in C (caller.c), out of the
 * callback's reach.  An error is recorded on the row.
 */
static void
run_callback(QueuedCall *qc)
{
	MemoryContext context = CurrentMemoryContext;
	LlmActing	acting;

	llm_queue_begin("llmext: running a callback");
	PG_TRY();
	{
		Oid			types[2] = {INT8OID, JSONBOID};
		Datum		args[2];
		char	   *name = get_func_name(qc->callback);
		char	   *schema = name ? get_namespace_name(get_func_namespace(qc->callback)) : NULL;
		int			nest_level;

		if (name == NULL || schema == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("the callback function no longer exists")));
		if (!OidIsValid(qc->submitter))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("the role that submitted the request no longer exists")));
		llm_spi_connect();
		args[0] = Int64GetDatum(qc->id);
		args[1] = DirectFunctionCall1(jsonb_in,
									  CStringGetDatum(cJSON_PrintUnformatted(stored_result_json(qc))));

		nest_level = NewGUCNestLevel();
		/* the callback sees the default path, not the worker's pinned one */
		(void) set_config_option("search_path", "\"$user\", public", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		llm_act_for(&acting, qc->submitter, qc->login, SECURITY_RESTRICTED_OPERATION);
		llm_queue_timer_start();
		if (SPI_execute_with_args(psprintf("SELECT %s($1, $2)", quote_qualified_identifier(schema, name)),
								  2, types, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "running the callback failed");
		llm_queue_timer_stop();
		llm_act_done(&acting);
		AtEOXact_GUC(false, nest_level);

		SPI_finish();
		llm_queue_end();
		MemoryContextSwitchTo(context);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		const char *message;

		llm_queue_timer_stop();
		/* the abort below restores the user and the settings; this, the login */
		llm_act_reset();
		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		message = callback_overran && edata->sqlerrcode == ERRCODE_QUERY_CANCELED
			? psprintf("the callback ran longer than llmext.callback_timeout (%d ms)",
					   llm_callback_timeout_ms)
			: edata->message;
		AbortCurrentTransaction();
		llm_queue_begin("llmext: recording a callback's error");
		llm_spi_connect();
		if (SPI_execute_with_args("UPDATE llm.requests SET callback_error = $2"
								  " WHERE id OPERATOR(pg_catalog.=) $1", 2,
								  (Oid[]) {INT8OID, TEXTOID},
								  (Datum[]) {Int64GetDatum(qc->id), CStringGetTextDatum(message)},
								  NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "recording a callback's error failed");
		SPI_finish();
		llm_queue_end();
		MemoryContextSwitchTo(context);
	}
	PG_END_TRY();
}

/* Completes one request (ledger, cache) and decides its outcome. */
static void
decide(QueuedCall *qc)
{
	LlmFailure *volatile failure = NULL;
	LlmActing	acting;
	const cJSON *attempts;
	int			max_attempts;

	if (qc->call == NULL)
	{
		qc->state = "error";
		qc->outcome_error = qc->error;
		return;
	}
	llm_act_for(&acting, qc->submitter, qc->login, 0);
	PG_TRY();
	{
		failure = qc->call->answered ? qc->call->failure : llm_call_complete(qc->call);
	}
	PG_FINALLY();
	{
		llm_act_done(&acting);
	}
	PG_END_TRY();
	if (failure == NULL)
	{
		qc->state = "done";
		return;
	}
	qc->outcome_error = llm_failure_text(failure);
	attempts = cJSON_GetObjectItemCaseSensitive(qc->call->model->provider_options, "max_attempts");
	max_attempts = cJSON_IsNumber(attempts) ? attempts->valueint : LLM_DEFAULT_MAX_ATTEMPTS;
	if (!qc->call->answered && qc->attempts < max_attempts &&
		llm_retryable(llm_call_failure_kind(qc->call), qc->call->resp.status,
					  qc->call->resp.retry_after_ms))
	{
		qc->state = NULL;
		qc->retry_delay_ms = llm_retry_delay_ms(qc->attempts - 1, qc->call->resp.retry_after_ms,
												(double) random() / ((double) RAND_MAX + 1));
	}
	else
		qc->state = "error";
}

/* The outcome as an element of llm._finish_many's argument. */
static cJSON *
outcome_json(QueuedCall *qc)
{
	cJSON	   *json = cJSON_CreateObject();
	bool		ok = strcmp(qc->state, "done") == 0;

	cJSON_AddNumberToObject(json, "id", (double) qc->id);
	cJSON_AddStringToObject(json, "state", qc->state);
	if (ok && qc->result.chat.content != NULL)
		cJSON_AddStringToObject(json, "completion", qc->result.chat.content);
	if (ok)
		cJSON_AddItemToObject(json, "response", stored_result_json(qc));
	if (qc->outcome_error != NULL)
		cJSON_AddStringToObject(json, "error", qc->outcome_error);
	cJSON_AddNumberToObject(json, "cost_usd", qc->result.cost_usd);
	return json;
}

/*
 * Writes one decided outcome in a subtransaction: a result that cannot be
 * stored (a user's trigger failing, say) ends its request in error instead
 * of stopping the worker.  True when a done result was written.
 */
static bool
write_isolated(QueuedCall *qc)
{
	MemoryContext old = MemoryContextSwitchTo(qc->context);
	ResourceOwner owner = CurrentResourceOwner;
	bool		written = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(qc->context);
	PG_TRY();
	{
		written = write_outcome(qc, qc->state ? qc->state : "error", qc->outcome_error,
								qc->state == NULL, qc->retry_delay_ms) &&
			qc->state != NULL && strcmp(qc->state, "done") == 0;
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata = llm_subxact_error(qc->context, owner);

		ereport(LOG,
				(errmsg("llmext worker could not store the result of request " INT64_FORMAT ": %s",
						qc->id, edata->message)));
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(qc->context);
		PG_TRY();
		{
			write_outcome(qc, "error", psprintf("could not store the result: %s", edata->message),
						  false, 0);
			ReleaseCurrentSubTransaction();
		}
		PG_CATCH();
		{
			/* left running: the next worker start runs it again */
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
		}
		PG_END_TRY();
		written = false;
	}
	PG_END_TRY();
	CurrentResourceOwner = owner;
	MemoryContextSwitchTo(old);
	return written;
}

/*
 * Writes every finished (not retried) outcome in one statement; the ids
 * written, or NIL with *failed set if the statement failed (then nothing
 * was written, and the caller writes them one by one).
 */
static List *
write_all(LlmQueue *queue, List *finished, bool *failed)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	cJSON	   *array = cJSON_CreateArray();
	ListCell   *cell;
	List	   *written = NIL;
	Datum		args[2];

	foreach(cell, finished)
		cJSON_AddItemToArray(array, outcome_json(lfirst(cell)));
	args[0] = CStringGetTextDatum(cJSON_PrintUnformatted(array));
	args[1] = llm_queue_busy_tags(queue);
	*failed = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		if (plan == NULL)
			plan = llm_queue_keep_plan("SELECT llm._finish_many($1::pg_catalog.jsonb, $2)", 2,
									   (Oid[]) {TEXTOID, TEXTARRAYOID});
		if (SPI_execute_plan(plan, args, NULL, false, 0) < 0)
			elog(ERROR, "writing results failed");
		MemoryContextSwitchTo(caller);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;

			written = lappend(written, (void *) (intptr_t)
							  DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 1, &isnull)));
		}
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		written = NIL;
		*failed = true;
	}
	PG_END_TRY();
	CurrentResourceOwner = owner;
	MemoryContextSwitchTo(caller);
	return written;
}

/*
 * Writes the outcomes collected: finished ones in one statement, retries
 * alone; then runs the callbacks of those written, each in a transaction
 * of its own.
 */
void
llm_queue_write(LlmQueue *queue)
{
	MemoryContext caller = CurrentMemoryContext;
	QueuedCall *qc;
	List	   *callbacks = NIL;
	ListCell   *cell;
	dlist_mutable_iter iter;

	if (dlist_is_empty(&queue->done))
		return;

	llm_queue_begin("llmext: writing request results");
	llm_spi_connect();
	{
		List	   *finished = NIL;
		List	   *written;
		bool		failed;

		MemoryContextSwitchTo(caller);
		dlist_foreach_modify(iter, &queue->done)
		{
			qc = dlist_container(QueuedCall, node, iter.cur);
			dlist_delete(&qc->node);
			{
				MemoryContext old = MemoryContextSwitchTo(qc->context);

				decide(qc);
				MemoryContextSwitchTo(old);
			}
			if (qc->state == NULL)
			{
				write_isolated(qc);		/* a retry: rare, written alone */
				llm_queue_expect_due(queue, qc->retry_delay_ms);
				MemoryContextDelete(qc->context);
			}
			else
				finished = lappend(finished, qc);
		}
		written = finished ? write_all(queue, finished, &failed) : NIL;
		foreach(cell, finished)
		{
			bool		done;

			qc = lfirst(cell);
			if (failed)
				done = write_isolated(qc);
			else
				done = strcmp(qc->state, "done") == 0 &&
					list_member_ptr(written, (void *) (intptr_t) qc->id);
			if (done && OidIsValid(qc->callback))
				callbacks = lappend(callbacks, qc);
			else
			{
				llm_queue_note_eval(queue, qc);
				MemoryContextDelete(qc->context);
			}
		}
		list_free(finished);
	}
	SPI_finish();
	llm_queue_end();
	MemoryContextSwitchTo(caller);

	foreach(cell, callbacks)
	{
		qc = lfirst(cell);
		run_callback(qc);
		/* a function scorer's answer: recorded as failed if its callback failed */
		llm_queue_note_eval(queue, qc);
		MemoryContextDelete(qc->context);
	}
	list_free(callbacks);
}
