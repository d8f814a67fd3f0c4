/*
 * queue.c — the worker's side of the asynchronous queue.
 *
 * Rows of llm.requests are claimed in a short transaction (FOR UPDATE SKIP
 * LOCKED), prepared as their submitter (so budgets, the ledger and the
 * cache see the submitter), sent with no transaction open, and finished in
 * short transactions: the result is written only if the row is still
 * running, so a cancel wins and nothing is written twice.  Failures worth
 * retrying go back to the queue with a run_after; callbacks run afterwards,
 * each in its own transaction, with the submitter's rights.
 *
 * The engine stays fed: a freed slot is refilled on the next turn of the
 * worker's loop, with no barrier on the slowest request.
 */
#include "llmext.h"

#include "queue.h"

#include "access/xact.h"
#include "call.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "failure.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "retry.h"
#include "shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

int			llm_worker_concurrency = 64;

#define CLAIM_HOLD_MIN_MS 100	/* least hold on claiming after a deferral */

typedef struct QueuedCall
{
	dlist_node	node;
	MemoryContext context;		/* everything of this request; deleted when it ends */
	int64		id;
	char	   *tag;			/* its batch, or NULL */
	Oid			submitter;
	int			attempts;
	Oid			callback;
	LlmCallRequest req;
	LlmCallResult result;
	LlmPreparedCall *call;
	char	   *error;			/* set when it could not even be prepared */
	/* the outcome, decided before it is written */
	const char *state;			/* done or error; NULL: retry */
	char	   *outcome_error;
	double		retry_delay_ms;
} QueuedCall;

struct LlmQueue
{
	MemoryContext context;
	LlmEngine  *engine;
	int			running;
	dlist_head	in_flight;		/* sent, waiting for the provider */
	/*
	 * Claimed, prepared and admitted, waiting for a place: a finished
	 * transfer's place is refilled from here at once, with no transaction,
	 * while the next claim tops this up.
	 */
	dlist_head	ready;
	int			nready;
	dlist_head	done;			/* finished, waiting to be written */
	/*
	 * After rate limits held requests back, claiming rows only to put them
	 * back would churn the table: no claims until one of our transfers ends
	 * or claim_after passes.
	 */
	bool		held;
	TimestampTz claim_after;
	/* the earliest run_after this worker gave a row it put back; 0: none */
	TimestampTz next_due;
};

static void
begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

static bool
queue_installed(void)
{
	Oid			namespace = get_namespace_oid("llm", true);

	return OidIsValid(namespace) && OidIsValid(get_relname_relid("requests", namespace));
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

	begin("llmext: recovering requests left running");
	if (queue_installed())
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		SPI_execute("SELECT llm._recover()", false, 0);
		SPI_finish();
	}
	end();
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
	return Max(wait_ms, 1);
}

/* A row put back to run after delay_ms: the worker wakes up for it. */
static void
expect_due(LlmQueue *queue, double delay_ms)
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

/* Prepares a claimed request as its submitter; errors become the row's error. */
static void
prepare(QueuedCall *qc)
{
	MemoryContext old = MemoryContextSwitchTo(qc->context);
	Oid			saved_userid;
	int			saved_sec_context;

	GetUserIdAndSecContext(&saved_userid, &saved_sec_context);
	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		if (!OidIsValid(qc->submitter))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("the role that submitted the request no longer exists")));
		SetUserIdAndSecContext(qc->submitter, saved_sec_context | SECURITY_LOCAL_USERID_CHANGE);
		MemoryContextSwitchTo(qc->context);
		qc->call = llm_call_prepare(&qc->req, &qc->result);
		SetUserIdAndSecContext(saved_userid, saved_sec_context);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(qc->context);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		SetUserIdAndSecContext(saved_userid, saved_sec_context);
		MemoryContextSwitchTo(qc->context);
		qc->call = NULL;
		qc->error = edata->detail ? psprintf("%s: %s", edata->message, edata->detail)
			: pstrdup(edata->message);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
}

/* Sends ready requests while there are places. */
static void
send_ready(LlmQueue *queue)
{
	while (queue->running < llm_worker_concurrency && queue->nready > 0)
	{
		QueuedCall *qc = dlist_container(QueuedCall, node, dlist_pop_head_node(&queue->ready));
		/* the answer's body must outlive this transaction */
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
	if (room <= 0 || (queue->held && GetCurrentTimestamp() < queue->claim_after))
		return;
	begin("llmext: claiming queued requests");
	if (!queue_installed())
	{
		end();
		MemoryContextSwitchTo(caller);
		return;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			types[1] = {INT4OID};
		Datum		args[1] = {Int32GetDatum(room)};

		if (SPI_execute_with_args("SELECT id, submitted_by, attempts, model, messages::text,"
								  "       options::text, prompt_name, prompt_version, callback::oid, tag"
								  "  FROM llm._claim($1)", 1, types, args, NULL, false, 0) < 0)
			elog(ERROR, "claiming requests failed");
	}
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
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
		qc->submitter = get_role_oid(text_column(tuple, desc, "submitted_by"), true);
		qc->attempts = DatumGetInt32(SPI_getbinval(tuple, desc, 3, &isnull));
		qc->req.model_name = text_column(tuple, desc, "model");
		qc->req.messages = json_column(tuple, desc, "messages");
		qc->req.options = json_column(tuple, desc, "options");
		qc->req.prompt_name = text_column(tuple, desc, "prompt_name");
		version = text_column(tuple, desc, "prompt_version");
		qc->req.prompt_version = version ? atoi(version) : 0;
		qc->req.source = "queue";
		callback = SPI_getbinval(tuple, desc, 9, &isnull);
		qc->callback = isnull ? InvalidOid : DatumGetObjectId(callback);
		/* the list outlives SPI_finish, which frees SPI's own memory */
		MemoryContextSwitchTo(caller);
		claimed = lappend(claimed, qc);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();

	/* prepared in the same short transaction: look-ups, cache, budget */
	foreach(cell, claimed)
	{
		QueuedCall *qc = lfirst(cell);
		double		wait_ms;

		prepare(qc);
		if (qc->call != NULL && !qc->call->answered && (wait_ms = llm_call_admit(qc->call)) > 0)
		{
			/* held back by the provider's rate limits: back to the queue */
			Datum		args[2] = {Int64GetDatum(qc->id), Float8GetDatum(wait_ms + 1)};

			SPI_connect();
			SPI_execute_with_args("SELECT llm._defer($1, $2)", 2,
								  (Oid[]) {INT8OID, FLOAT8OID}, args, NULL, false, 0);
			SPI_finish();
			held_ms = held_ms == 0 ? wait_ms : Min(held_ms, wait_ms);
			expect_due(queue, wait_ms + 1);
			MemoryContextDelete(qc->context);
			continue;
		}
		if (qc->call != NULL && !qc->call->answered)
		{
			dlist_push_tail(&queue->ready, &qc->node);
			queue->nready++;
		}
		else
			dlist_push_tail(&queue->done, &qc->node);
	}
	end();
	MemoryContextSwitchTo(caller);	/* a commit leaves TopMemoryContext current */
	queue->held = held_ms > 0;
	if (queue->held)
		queue->claim_after = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 (long) Max(held_ms + 1, CLAIM_HOLD_MIN_MS));
	send_ready(queue);
	llm_engine_kick(queue->engine); /* sent now, not at the next wait */
}

static SPIPlanPtr
keep(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
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
			retry_plan = keep("SELECT llm._retry_later($1, $2, $3)", 3,
							  (Oid[]) {INT8OID, FLOAT8OID, TEXTOID});
		args[1] = Float8GetDatum(delay_ms);
		args[2] = CStringGetTextDatum(error);
		SPI_execute_plan(retry_plan, args, NULL, false, 0);
	}
	else
	{
		bool		ok = error == NULL;

		if (finish_plan == NULL)
			finish_plan = keep("SELECT llm._finish($1, $2, $3, $4::pg_catalog.jsonb, $5,"
							   "                   $6::pg_catalog.numeric)", 6,
							   (Oid[]) {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID});
		args[1] = CStringGetTextDatum(state);
		nulls[2] = nulls[3] = 'n';
		if (ok && qc->result.chat.content != NULL)
		{
			args[2] = CStringGetTextDatum(qc->result.chat.content);
			nulls[2] = ' ';
		}
		if (ok)
		{
			args[3] = CStringGetTextDatum(cJSON_PrintUnformatted(llm_call_result_json(&qc->result)));
			nulls[3] = ' ';
		}
		args[4] = error ? CStringGetTextDatum(error) : (Datum) 0;
		nulls[4] = error ? ' ' : 'n';
		args[5] = CStringGetTextDatum(psprintf("%.12f", qc->result.cost_usd));
		SPI_execute_plan(finish_plan, args, nulls, false, 0);
	}
	return SPI_processed == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Runs the request's callback as its submitter, as a restricted operation
 * (no SET ROLE back to the worker's superuser), with llmext.acting_role
 * naming the submitter for anything the callback asks of llmext; an error
 * is recorded on the row.
 */
static void
run_callback(QueuedCall *qc)
{
	MemoryContext context = CurrentMemoryContext;

	begin("llmext: running a callback");
	PG_TRY();
	{
		Oid			saved_userid;
		int			saved_sec_context;
		Oid			types[2] = {INT8OID, JSONBOID};
		Datum		args[2];
		char	   *name = get_func_name(qc->callback);
		char	   *schema = name ? get_namespace_name(get_func_namespace(qc->callback)) : NULL;
		char	   *role = GetUserNameFromId(qc->submitter, true);

		if (name == NULL || schema == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("the callback function no longer exists")));
		if (role == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("the role that submitted the request no longer exists")));
		(void) set_config_option("llmext.acting_role", role, PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
		GetUserIdAndSecContext(&saved_userid, &saved_sec_context);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		args[0] = Int64GetDatum(qc->id);
		args[1] = DirectFunctionCall1(jsonb_in,
									  CStringGetDatum(cJSON_PrintUnformatted(llm_call_result_json(&qc->result))));
		SetUserIdAndSecContext(qc->submitter, saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		SPI_execute_with_args(psprintf("SELECT %s($1, $2)", quote_qualified_identifier(schema, name)),
							  2, types, args, NULL, false, 0);
		SetUserIdAndSecContext(saved_userid, saved_sec_context);
		SPI_finish();
		end();
		MemoryContextSwitchTo(context);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		begin("llmext: recording a callback's error");
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		SPI_execute_with_args("UPDATE llm.requests SET callback_error = $2 WHERE id = $1", 2,
							  (Oid[]) {INT8OID, TEXTOID},
							  (Datum[]) {Int64GetDatum(qc->id), CStringGetTextDatum(edata->message)},
							  NULL, false, 0);
		SPI_finish();
		end();
		MemoryContextSwitchTo(context);
	}
	PG_END_TRY();
}

/* Completes one request (ledger, cache) and decides its outcome. */
static void
decide(QueuedCall *qc)
{
	LlmFailure *failure;
	Oid			saved_userid;
	int			saved_sec_context;
	const cJSON *attempts;
	int			max_attempts;

	if (qc->call == NULL)
	{
		qc->state = "error";
		qc->outcome_error = qc->error;
		return;
	}
	GetUserIdAndSecContext(&saved_userid, &saved_sec_context);
	SetUserIdAndSecContext(qc->submitter, saved_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	failure = qc->call->answered ? qc->call->failure : llm_call_complete(qc->call);
	SetUserIdAndSecContext(saved_userid, saved_sec_context);
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
		cJSON_AddItemToObject(json, "response", llm_call_result_json(&qc->result));
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
		ErrorData  *edata;

		MemoryContextSwitchTo(qc->context);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(qc->context);
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
 * The batches with requests still in flight here, as a text[]: they are
 * not finished, whatever else is written now.
 */
static Datum
busy_tags(LlmQueue *queue)
{
	dlist_iter	each;
	List	   *tags = NIL;
	Datum	   *elems;
	int			n = 0;
	ListCell   *cell;
	dlist_head *lists[2] = {&queue->in_flight, &queue->ready};

	for (int i = 0; i < 2; i++)
	{
		dlist_foreach(each, lists[i])
		{
			QueuedCall *qc = dlist_container(QueuedCall, node, each.cur);
			bool		seen = false;

			if (qc->tag == NULL)
				continue;
			foreach(cell, tags)
				if ((seen = strcmp(lfirst(cell), qc->tag) == 0))
					break;
			if (!seen)
				tags = lappend(tags, qc->tag);
		}
	}
	elems = palloc(sizeof(Datum) * Max(list_length(tags), 1));
	foreach(cell, tags)
		elems[n++] = CStringGetTextDatum(lfirst(cell));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
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
	args[1] = busy_tags(queue);
	*failed = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		if (plan == NULL)
			plan = keep("SELECT llm._finish_many($1::pg_catalog.jsonb, $2)", 2,
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

void
llm_queue_collect(LlmQueue *queue, long wait_ms)
{
	QueuedCall *qc;

	while (queue->running > 0 &&
		   (qc = llm_engine_next_done(queue->engine, wait_ms)) != NULL)
	{
		queue->running--;
		queue->held = false;
		llm_call_release(qc->call); /* its place may be taken before it is written */
		dlist_delete(&qc->node);	/* from in_flight */
		dlist_push_tail(&queue->done, &qc->node);
		send_ready(queue);		/* its place, refilled at once */
		wait_ms = 0;			/* take whatever else has finished */
	}
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

	begin("llmext: writing request results");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
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
				expect_due(queue, qc->retry_delay_ms);
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
				MemoryContextDelete(qc->context);
		}
	}
	SPI_finish();
	end();
	MemoryContextSwitchTo(caller);

	foreach(cell, callbacks)
	{
		qc = lfirst(cell);
		run_callback(qc);
		MemoryContextDelete(qc->context);
	}
	list_free(callbacks);
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

	begin("llmext: looking for cancelled requests");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
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
				Oid			saved_userid;
				int			saved_sec_context;

				GetUserIdAndSecContext(&saved_userid, &saved_sec_context);
				SetUserIdAndSecContext(qc->submitter, saved_sec_context | SECURITY_LOCAL_USERID_CHANGE);
				llm_call_abandon(qc->call);
				SetUserIdAndSecContext(saved_userid, saved_sec_context);
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
		args[1] = busy_tags(queue);
		SPI_execute_with_args("SELECT llm._announce_finished($1, $2)", 2,
							  (Oid[]) {TEXTARRAYOID, TEXTARRAYOID}, args, NULL, false, 0);
	}
	SPI_finish();
	end();
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
	begin("llmext: putting back requests not sent");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	dlist_foreach(each, &queue->ready)
	{
		QueuedCall *qc = dlist_container(QueuedCall, node, each.cur);
		Datum		args[2] = {Int64GetDatum(qc->id), Float8GetDatum(0)};

		SPI_execute_with_args("SELECT llm._defer($1, $2)", 2,
							  (Oid[]) {INT8OID, FLOAT8OID}, args, NULL, false, 0);
	}
	SPI_finish();
	end();
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

PG_FUNCTION_INFO_V1(llm_wake_at_commit);

/* llm._wake_at_commit() */
Datum
llm_wake_at_commit(PG_FUNCTION_ARGS)
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
	PG_RETURN_VOID();
}
