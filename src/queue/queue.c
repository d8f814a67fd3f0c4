/*
 * queue.c — the worker's side of the asynchronous queue.
 *
 * Rows of llm.requests are claimed in a short transaction (FOR UPDATE SKIP
 * LOCKED), prepared as their submitter (so budgets, the ledger and the
 * cache see the submitter), admitted by the rate limits, and sent with no
 * transaction open.  A buffer of such ready requests refills a finished
 * transfer's place at once, so the engine stays full with no barrier on the
 * slowest request.  Writing the outcomes is queue_write.c's.
 */
#include "llmext.h"

#include "queue/queue_private.h"
#include "store/caller.h"
#include "store/shmem.h"
#include "store/spi_check.h"
#include "store/subxact.h"
#include "store/version.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

int			llm_worker_concurrency = 64;

#define CLAIM_HOLD_MIN_MS 100	/* least hold on claiming after a deferral */
#define CURSOR_LIFE_MS 1000		/* longest run of claims from a cursor */

void
llm_queue_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
llm_queue_end(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

SPIPlanPtr
llm_queue_keep_plan(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/*
 * Whether the worker may work on this database's queue: llmext is installed
 * at the library's version.  Requests left running by a predecessor are run
 * again first (they end exactly once); when the installed version was older
 * at the worker's start, that waits for ALTER EXTENSION llmext UPDATE.
 */
static bool recovered = false;

static bool
queue_installed(void)
{
	if (!llm_schema_is_current())
		return false;
	if (!recovered)
	{
		llm_spi_connect();
		llm_spi_check(SPI_execute("SELECT llm._recover()", false, 0), "llm._recover");
		/* evaluation answers a predecessor wrote and did not score */
		llm_spi_check(SPI_execute("SELECT llm._eval_recover()", false, 0), "llm._eval_recover");
		SPI_finish();
		recovered = true;
	}
	return true;
}

LlmQueue *
llm_queue_create(void)
{
	MemoryContext context = AllocSetContextCreate(TopMemoryContext, "llmext queue",
												  ALLOCSET_DEFAULT_SIZES);
	LlmQueue   *queue = MemoryContextAllocZero(context, sizeof(LlmQueue));

	queue->context = context;
	queue->engine = llm_engine_create(context);
	dlist_init(&queue->in_flight);
	dlist_init(&queue->ready);
	dlist_init(&queue->done);
	return queue;
}

void
llm_queue_recover(void)
{
	MemoryContext caller = CurrentMemoryContext;

	llm_queue_begin("llmext: recovering requests left running");
	(void) queue_installed();
	llm_queue_end();
	MemoryContextSwitchTo(caller);
}

static long
ms_until(TimestampTz when, TimestampTz now)
{
	return when <= now ? 0 : TimestampDifferenceMilliseconds(now, when) + 1;
}

long
llm_queue_idle_wait_ms(LlmQueue *queue, long longest_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	long		wait_ms = longest_ms;

	if (queue->held)
		wait_ms = Min(wait_ms, ms_until(queue->claim_after, now));
	if (queue->next_due != 0)
		wait_ms = Min(wait_ms, ms_until(queue->next_due, now));
	wait_ms = llm_queue_eval_wait_ms(queue, now, wait_ms);
	return Max(wait_ms, 1);
}

void
llm_queue_expect_due(LlmQueue *queue, double delay_ms)
{
	TimestampTz due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (long) delay_ms + 1);

	if (queue->next_due == 0 || due < queue->next_due)
		queue->next_due = due;
}

bool
llm_queue_busy(LlmQueue *queue)
{
	return queue->running > 0 || queue->nready > 0 || !dlist_is_empty(&queue->done);
}

static cJSON *
json_column(HeapTuple tuple, TupleDesc desc, const char *name)
{
	char	   *text = SPI_getvalue(tuple, desc, SPI_fnumber(desc, name));

	return text ? cJSON_Parse(text) : NULL;
}

static char *
text_column(HeapTuple tuple, TupleDesc desc, const char *name)
{
	return SPI_getvalue(tuple, desc, SPI_fnumber(desc, name));
}

/*
 * A request from a row of LLM_QUEUE_ROW_COLUMNS, in a memory context of its
 * own under the queue's.
 */
QueuedCall *
llm_queue_call_of_row(LlmQueue *queue, HeapTuple tuple, TupleDesc desc)
{
	MemoryContext context = AllocSetContextCreate(queue->context, "llmext request",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(context);
	QueuedCall *qc = palloc0(sizeof(QueuedCall));
	bool		isnull;
	char	   *version;
	Datum		callback;

	qc->context = context;
	qc->id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
	qc->tag = text_column(tuple, desc, "tag");
	qc->priority = DatumGetInt32(SPI_getbinval(tuple, desc, 11, &isnull));
	qc->submitter = get_role_oid(text_column(tuple, desc, "submitted_by"), true);
	qc->login = get_role_oid(text_column(tuple, desc, "login_role"), true);
	qc->attempts = DatumGetInt32(SPI_getbinval(tuple, desc, 3, &isnull));
	qc->req.model_name = text_column(tuple, desc, "model");
	qc->req.messages = json_column(tuple, desc, "messages");
	qc->req.options = json_column(tuple, desc, "options");
	qc->req.prompt_name = text_column(tuple, desc, "prompt_name");
	version = text_column(tuple, desc, "prompt_version");
	qc->req.prompt_version = version ? atoi(version) : 0;
	qc->req.vars = json_column(tuple, desc, "vars");
	qc->req.source = "queue";
	/* an evaluation's inputs are its set's cases already */
	qc->req.keep_no_io = qc->tag != NULL && strncmp(qc->tag, "eval-", 5) == 0;
	callback = SPI_getbinval(tuple, desc, 9, &isnull);
	qc->callback = isnull ? InvalidOid : DatumGetObjectId(callback);
	MemoryContextSwitchTo(old);
	return qc;
}

/* Prepares a claimed request as its submitter; errors become the row's error. */
void
llm_queue_prepare(QueuedCall *qc)
{
	MemoryContext old = MemoryContextSwitchTo(qc->context);
	ResourceOwner owner = CurrentResourceOwner;
	LlmActing	acting = {0};
	volatile bool acting_set = false;

	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		if (!OidIsValid(qc->submitter))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("the role that submitted the request no longer exists")));
		llm_act_for(&acting, qc->submitter, qc->login, 0);
		acting_set = true;
		MemoryContextSwitchTo(qc->context);
		qc->call = llm_call_prepare(&qc->req, &qc->result);
		llm_act_done(&acting);
		acting_set = false;
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata = llm_subxact_error(qc->context, owner);

		if (acting_set)
			llm_act_done(&acting);
		qc->call = NULL;
		qc->error = edata->detail ? psprintf("%s: %s", edata->message, edata->detail)
			: pstrdup(edata->message);
	}
	PG_END_TRY();
	CurrentResourceOwner = owner;
	MemoryContextSwitchTo(old);
}

/*
 * After a claim: the next one starts where this one stopped, while claims
 * come back full, and for at most a second; then one claims from the start,
 * to find rows put back behind the cursor or of a higher priority.
 */
static void
move_cursor(LlmQueue *queue, bool from_cursor, int asked)
{
	if (SPI_processed < (uint64) asked)
	{
		queue->cursor_valid = false;
		return;
	}
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													 SPI_tuptable->tupdesc, 1, &isnull));
		int32		priority = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 11, &isnull));

		/* the last in claim order: lowest priority, then highest id */
		if (i == 0 || priority < queue->cursor_priority ||
			(priority == queue->cursor_priority && id > queue->cursor_id))
		{
			queue->cursor_priority = priority;
			queue->cursor_id = id;
		}
	}
	if (!from_cursor)
		queue->cursor_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), CURSOR_LIFE_MS);
	queue->cursor_valid = true;
}

/* Into the ready buffer, in claim order. */
static void
add_ready(LlmQueue *queue, QueuedCall *qc)
{
	dlist_iter	each;

	queue->nready++;
	dlist_reverse_foreach(each, &queue->ready)
	{
		QueuedCall *before = dlist_container(QueuedCall, node, each.cur);

		if (before->priority > qc->priority ||
			(before->priority == qc->priority && before->id < qc->id))
		{
			dlist_insert_after(&before->node, &qc->node);
			return;
		}
	}
	dlist_push_head(&queue->ready, &qc->node);
}

/* Sends ready requests while there are places. */
static void
send_ready(LlmQueue *queue)
{
	while (queue->running < llm_worker_concurrency && queue->nready > 0)
	{
		QueuedCall *qc = dlist_container(QueuedCall, node, dlist_pop_head_node(&queue->ready));
		/* the transfer and its answer live as long as the request */
		MemoryContext old = MemoryContextSwitchTo(qc->context);

		queue->nready--;
		llm_engine_add(queue->engine, &qc->call->http, &qc->call->resp, qc);
		MemoryContextSwitchTo(old);
		dlist_push_tail(&queue->in_flight, &qc->node);
		queue->running++;
	}
}

void
llm_queue_start_due(LlmQueue *queue)
{
	MemoryContext caller = CurrentMemoryContext;
	int			prefetch = Max(4, llm_worker_concurrency / 4);
	int			room = llm_worker_concurrency + prefetch - queue->running - queue->nready;
	double		held_ms = 0;
	List	   *claimed = NIL;
	ListCell   *cell;

	if (queue->next_due != 0 && GetCurrentTimestamp() >= queue->next_due)
		queue->next_due = 0;
	if (queue->held)
	{
		/* as many as our own transfers have freed since, and one to probe */
		if (queue->freed_while_held == 0 && GetCurrentTimestamp() < queue->claim_after)
			return;
		room = Min(room, queue->freed_while_held + 1);
	}
	if (room <= 0)
		return;
	llm_queue_begin("llmext: claiming queued requests");
	if (!queue_installed())
	{
		llm_queue_end();
		MemoryContextSwitchTo(caller);
		return;
	}
	llm_spi_connect();
	{
		static SPIPlanPtr plan = NULL;
		bool		from_cursor = queue->cursor_valid &&
			GetCurrentTimestamp() < queue->cursor_until;
		Datum		args[3] = {Int32GetDatum(room), Int32GetDatum(queue->cursor_priority),
		Int64GetDatum(queue->cursor_id)};
		char		nulls[3] = {' ', from_cursor ? ' ' : 'n', from_cursor ? ' ' : 'n'};

		if (plan == NULL)
			plan = llm_queue_keep_plan("SELECT " LLM_QUEUE_ROW_COLUMNS
									   "  FROM llm._claim($1, $2, $3)", 3,
									   (Oid[]) {INT4OID, INT4OID, INT8OID});
		if (SPI_execute_plan(plan, args, nulls, false, 0) < 0)
			elog(ERROR, "claiming requests failed");
		move_cursor(queue, from_cursor, room);
	}
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		QueuedCall *qc = llm_queue_call_of_row(queue, SPI_tuptable->vals[i],
											   SPI_tuptable->tupdesc);
		MemoryContext old = MemoryContextSwitchTo(caller);

		/* the list outlives SPI_finish, which frees SPI's own memory */
		claimed = lappend(claimed, qc);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();

	/* prepared in the same short transaction: look-ups, cache, budget */
	foreach(cell, claimed)
	{
		QueuedCall *qc = lfirst(cell);
		double		wait_ms;

		llm_queue_prepare(qc);
		if (qc->call != NULL && !qc->call->answered && (wait_ms = llm_call_admit(qc->call)) > 0)
		{
			/* held back by the provider's rate limits: back to the queue */
			Datum		args[2] = {Int64GetDatum(qc->id), Float8GetDatum(wait_ms + 1)};

			llm_spi_connect();
			llm_spi_check(SPI_execute_with_args("SELECT llm._defer($1, $2)", 2,
													(Oid[]) {INT8OID, FLOAT8OID}, args, NULL, false, 0),
						  "llm._defer");
			SPI_finish();
			held_ms = held_ms == 0 ? wait_ms : Min(held_ms, wait_ms);
			llm_queue_expect_due(queue, wait_ms + 1);
			MemoryContextDelete(qc->context);
			continue;
		}
		if (qc->call != NULL && !qc->call->answered)
		{
			add_ready(queue, qc);
		}
		else
			dlist_push_tail(&queue->done, &qc->node);
	}
	llm_queue_end();
	MemoryContextSwitchTo(caller);	/* a commit leaves TopMemoryContext current */
	queue->held = held_ms > 0;
	queue->freed_while_held = 0;
	if (queue->held)
		queue->claim_after = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 (long) Max(held_ms + 1, CLAIM_HOLD_MIN_MS));
	send_ready(queue);
	llm_engine_kick(queue->engine); /* sent now, not at the next wait */
}

/*
 * Claimed and not yet ended here: their batches are not finished.  A tag
 * may repeat (= ANY does not mind); runs of one batch are written once.
 */
Datum
llm_queue_busy_tags(LlmQueue *queue)
{
	dlist_iter	each;
	int			capacity = queue->running + queue->nready;
	Datum	   *elems = palloc(sizeof(Datum) * Max(capacity, 1));
	const char *last = NULL;
	int			n = 0;
	dlist_head *lists[2] = {&queue->in_flight, &queue->ready};

	for (int i = 0; i < 2; i++)
	{
		dlist_foreach(each, lists[i])
		{
			QueuedCall *qc = dlist_container(QueuedCall, node, each.cur);

			if (qc->tag == NULL || (last != NULL && strcmp(last, qc->tag) == 0))
				continue;
			Assert(n < capacity);
			elems[n++] = CStringGetTextDatum(qc->tag);
			last = qc->tag;
		}
	}
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

void
llm_queue_collect(LlmQueue *queue, long wait_ms)
{
	QueuedCall *qc;

	while (queue->running > 0 &&
		   (qc = llm_engine_next_done(queue->engine, wait_ms)) != NULL)
	{
		queue->running--;
		queue->freed_while_held++;
		llm_call_release(qc->call); /* its place may be taken before it is written */
		dlist_delete(&qc->node);	/* from in_flight */
		dlist_push_tail(&queue->done, &qc->node);
		send_ready(queue);		/* its place, refilled at once */
		wait_ms = 0;			/* take whatever else has finished */
	}
}

void
llm_queue_drop_cancelled(LlmQueue *queue)
{
	MemoryContext caller = CurrentMemoryContext;
	dlist_iter	each;
	dlist_mutable_iter iter;
	StringInfoData ids;
	List	   *dropped_tags = NIL;

	if (dlist_is_empty(&queue->in_flight) && dlist_is_empty(&queue->ready))
		return;
	initStringInfo(&ids);
	dlist_foreach(each, &queue->in_flight)
		appendStringInfo(&ids, "%s" INT64_FORMAT, ids.len ? "," : "",
						 dlist_container(QueuedCall, node, each.cur)->id);
	dlist_foreach(each, &queue->ready)
		appendStringInfo(&ids, "%s" INT64_FORMAT, ids.len ? "," : "",
						 dlist_container(QueuedCall, node, each.cur)->id);

	llm_queue_begin("llmext: looking for cancelled requests");
	llm_spi_connect();
	if (SPI_execute(psprintf("SELECT id FROM llm.requests WHERE state = 'cancelled'"
							 "   AND id = ANY ('{%s}'::pg_catalog.int8[])", ids.data),
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "looking for cancelled requests failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
													 1, &isnull));

		dlist_foreach_modify(iter, &queue->in_flight)
		{
			QueuedCall *qc = dlist_container(QueuedCall, node, iter.cur);

			if (qc->id != id || !llm_engine_cancel(queue->engine, qc))
				continue;
			dlist_delete(&qc->node);
			queue->running--;
			/* it may still be billed: on the ledger, as the submitter */
			{
				LlmActing	acting;

				llm_act_for(&acting, qc->submitter, qc->login, 0);
				llm_call_abandon(qc->call);
				llm_act_done(&acting);
			}
			if (qc->tag != NULL)
				dropped_tags = lappend(dropped_tags, pstrdup(qc->tag));
			MemoryContextDelete(qc->context);
			break;
		}
		/* not sent yet: nothing to record */
		dlist_foreach_modify(iter, &queue->ready)
		{
			QueuedCall *qc = dlist_container(QueuedCall, node, iter.cur);

			if (qc->id != id)
				continue;
			dlist_delete(&qc->node);
			queue->nready--;
			llm_call_release(qc->call);
			if (qc->tag != NULL)
				dropped_tags = lappend(dropped_tags, pstrdup(qc->tag));
			MemoryContextDelete(qc->context);
			break;
		}
	}
	/* their batches may have been kept from announcing themselves finished */
	if (dropped_tags != NIL)
	{
		Datum		args[2];
		Datum	   *elems = palloc(sizeof(Datum) * list_length(dropped_tags));
		int			n = 0;
		ListCell   *cell;

		foreach(cell, dropped_tags)
			elems[n++] = CStringGetTextDatum(lfirst(cell));
		args[0] = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
		args[1] = llm_queue_busy_tags(queue);
		llm_spi_check(SPI_execute_with_args("SELECT llm._announce_finished($1, $2)", 2,
											(Oid[]) {TEXTARRAYOID, TEXTARRAYOID}, args, NULL,
											false, 0),
					  "llm._announce_finished");
	}
	SPI_finish();
	llm_queue_end();
	MemoryContextSwitchTo(caller);
}

/*
 * At a stop: the ready requests, never sent, go back to the queue with
 * their attempt not counted.  Those in flight are recovered at the next start.
 */
void
llm_queue_shutdown(LlmQueue *queue)
{
	MemoryContext caller = CurrentMemoryContext;
	dlist_iter	each;

	if (queue->nready == 0)
		return;
	llm_queue_begin("llmext: putting back requests not sent");
	llm_spi_connect();
	dlist_foreach(each, &queue->ready)
	{
		QueuedCall *qc = dlist_container(QueuedCall, node, each.cur);
		Datum		args[2] = {Int64GetDatum(qc->id), Float8GetDatum(0)};

		llm_spi_check(SPI_execute_with_args("SELECT llm._defer($1, $2)", 2,
												(Oid[]) {INT8OID, FLOAT8OID}, args, NULL, false, 0),
					  "llm._defer");
	}
	SPI_finish();
	llm_queue_end();
	MemoryContextSwitchTo(caller);
}

/* Backend side: wake the worker when the transaction that queued work commits. */
static bool wake_pending = false;
static bool wake_callback_registered = false;

static void
wake_on_commit(XactEvent event, void *arg)
{
	if (!wake_pending)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		Latch	   *worker = llm_worker_latch(MyDatabaseId);

		if (worker != NULL)
			SetLatch(worker);
		wake_pending = false;
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		wake_pending = false;
}

/*
 * Wakes the worker of this database when the current transaction commits
 * (it has queued work); warns once per session when no worker serves it.
 */
void
llm_queue_wake_at_commit(void)
{
	static bool warned = false;

	if (!wake_callback_registered)
	{
		RegisterXactCallback(wake_on_commit, NULL);
		wake_callback_registered = true;
	}
	if (!warned && llm_worker_latch(MyDatabaseId) == NULL)
	{
		warned = true;
		ereport(WARNING,
				(errmsg("no llmext background worker serves this database"),
				 errdetail("Queued requests wait until one does."),
				 errhint("Add llmext to shared_preload_libraries and this database to llmext.databases.")));
	}
	wake_pending = true;
}
