/*
 * sql_batch.c — llm_complete_batch: many calls at once from one statement,
 * on the same engine that serves single calls.
 *
 * Each prompt is prepared just before its turn (a cache hit or a budget
 * refusal is answered then, without a request, and a repeat of an earlier
 * prompt finds its answer already cached); up to `concurrency` requests are
 * in flight at a time (fewer if the provider's max_concurrency says so), a
 * new one starting as soon as one finishes.  A request that fails in a way
 * worth retrying (see retry.h) is sent again after its back-off, up to the
 * provider's max_attempts (default 3); every attempt is in the ledger.  Rows
 * come back in input order.  A failed element gives its error text in its
 * row; with options {"on_error": "error"} the first failure aborts the
 * statement instead.  Query cancel stops everything: the engine's memory
 * context takes every transfer with it.
 *
 * Memory is bounded by the concurrency, not by the number of prompts: items
 * live in a window of `concurrency` slots, each with its own memory context.
 * An item is prepared (its prompt turned into messages, or its stored
 * prompt rendered) only when it enters the window, and its row goes to the
 * tuplestore (which spills to disk past work_mem) and its context is
 * deleted as soon as it and every item before it are done.  So at most
 * `concurrency` requests and answers are held at once, even when an early
 * request is slow and later ones finish first.
 */
#include "llmext.h"

#include "sql/batch.h"

#include "call/call.h"
#include "call/failure.h"
#include "core/retry.h"
#include "store/prompt.h"
#include "store/subxact.h"

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include <stdlib.h>


PG_FUNCTION_INFO_V1(llm_complete_batch);
PG_FUNCTION_INFO_V1(llm_complete_prompt_batch);

/* "error" given explicitly: the first failure aborts the statement. */
bool
llm_batch_abort_on_failure(const cJSON *options)
{
	const cJSON *on_error = cJSON_GetObjectItemCaseSensitive(options, "on_error");

	return cJSON_IsString(on_error) && strcmp(on_error->valuestring, "error") == 0;
}

/* Options for the elements: failures come back as values, not raised. */
cJSON *
llm_batch_element_options(const cJSON *options)
{
	cJSON	   *copy = options ? cJSON_Duplicate(options, true) : cJSON_CreateObject();

	cJSON_DeleteItemFromObjectCaseSensitive(copy, "on_error");
	cJSON_AddStringToObject(copy, "on_error", "null");
	return copy;
}

static void
settle(BatchItem *item, bool abort_on_fail)
{
	LlmFailure *failure = item->call->failure;

	item->done = true;
	if (failure == NULL)
		return;
	if (abort_on_fail || failure->sqlstate == ERRCODE_LLM_BUDGET_EXCEEDED)
		llm_failure_raise(ERROR, failure);
	item->error = llm_failure_text(failure);
}

/*
 * Sends item's request, now or again: true, or false when the provider's
 * rate limits make it wait (then retry_at says until when).  The answer is
 * read into the item's context.
 */
static bool
start(LlmEngine *engine, BatchItem *item)
{
	double		wait_ms = llm_call_admit(item->call);
	MemoryContext old;

	if (wait_ms > 0)
	{
		item->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) wait_ms + 1);
		return false;
	}
	item->attempts++;
	item->retry_at = 0;
	old = MemoryContextSwitchTo(item->context);
	llm_engine_add(engine, &item->call->http, &item->call->resp, item);
	MemoryContextSwitchTo(old);
	item->in_flight = true;
	return true;
}

/* After a failed attempt: schedules another if the policy and attempts allow. */
static bool
schedule_retry(BatchItem *item, int max_attempts)
{
	LlmPreparedCall *call = item->call;
	double		delay_ms;

	if (item->attempts >= max_attempts ||
		!llm_retryable(llm_call_failure_kind(call), call->resp.status, call->resp.retry_after_ms))
		return false;
	delay_ms = llm_retry_delay_ms(item->attempts - 1, call->resp.retry_after_ms,
								  (double) random() / ((double) RAND_MAX + 1));
	item->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) delay_ms);
	llm_call_rearm(call);
	return true;
}

/* The provider of the first item that calls a model sets the batch's limits. */
static void
learn_limits(Batch *batch, const BatchItem *item)
{
	LlmModel   *target = llm_lookup_model(item->req.model_name);
	const cJSON *limit = cJSON_GetObjectItemCaseSensitive(target->provider_options,
														  "max_concurrency");
	const cJSON *attempts = cJSON_GetObjectItemCaseSensitive(target->provider_options,
															 "max_attempts");

	if (cJSON_IsNumber(limit) && limit->valueint >= 1)
		batch->concurrency = Min(batch->concurrency, limit->valueint);
	batch->max_attempts = cJSON_IsNumber(attempts) ? attempts->valueint : LLM_DEFAULT_MAX_ATTEMPTS;
	batch->limits_known = true;
}

/*
 * Brings the next input element into the window, in its own context: its
 * request is built and sent (or answered at once).  True if a transfer
 * started, with *waiting counting one held back by a rate limit.
 */
static bool
admit_next(Batch *batch, int *waiting)
{
	int			ord = batch->next++;
	BatchItem  *item = &batch->slots[ord % batch->window];
	MemoryContext old;
	bool		started = false;

	memset(item, 0, sizeof(*item));
	item->ord = ord;
	item->context = AllocSetContextCreate(batch->items_context, "llmext batch item",
										  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(item->context);
	if (!batch->nulls[ord])
		batch->fill(batch, item, batch->elements[ord]);
	if (item->req.messages == NULL && item->req.inputs == NULL)
		item->done = true;		/* a NULL row, or its error already */
	else
	{
		if (!batch->limits_known)
			learn_limits(batch, item);
		item->call = llm_call_prepare(&item->req, &item->result);
		if (item->call->answered)
			settle(item, batch->abort_on_fail);
		else if (start(batch->engine, item))
			started = true;
		else
			(*waiting)++;		/* held back by a rate limit */
	}
	MemoryContextSwitchTo(old);
	return started;
}

/*
 * With on_error 'error', an input that fails before any request (an empty
 * prompt, vars the template rejects) must abort the statement before the
 * first request is paid for, as it did when every item was prepared ahead.
 * Items are filled once here and dropped, one at a time, so memory stays
 * bounded by one item; their requests are built again when their turn comes.
 */
static void
check_every_item(Batch *batch)
{
	MemoryContext scratch = AllocSetContextCreate(CurrentMemoryContext,
												  "llmext batch check",
												  ALLOCSET_DEFAULT_SIZES);

	for (int ord = 0; ord < batch->n; ord++)
	{
		BatchItem	item = {0};
		MemoryContext old;

		if (batch->nulls[ord])
			continue;
		CHECK_FOR_INTERRUPTS();
		item.ord = ord;
		old = MemoryContextSwitchTo(scratch);
		batch->fill(batch, &item, batch->elements[ord]);
		MemoryContextSwitchTo(old);
		MemoryContextReset(scratch);
	}
	MemoryContextDelete(scratch);
}

/* Writes item's row (or rows: batch->emit) and frees everything it held. */
static void
emit_row(Batch *batch, BatchItem *item)
{
	Datum		values[4];
	bool		isnull[4] = {false, true, true, true};
	MemoryContext old = MemoryContextSwitchTo(item->context);

	if (batch->emit != NULL)
	{
		batch->emit(batch, item);
		MemoryContextSwitchTo(old);
		MemoryContextDelete(item->context);
		item->context = NULL;
		return;
	}

	values[0] = Int32GetDatum(item->ord + 1);
	if (item->call != NULL && item->error == NULL)
	{
		if (item->result.chat.content != NULL)
		{
			values[1] = CStringGetTextDatum(item->result.chat.content);
			isnull[1] = false;
		}
		values[2] = llm_cjson_to_jsonb(llm_call_result_json(&item->result));
		isnull[2] = false;
	}
	if (item->error != NULL)
	{
		values[3] = CStringGetTextDatum(item->error);
		isnull[3] = false;
	}
	tuplestore_putvalues(batch->store, batch->desc, values, isnull);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(item->context);
	item->context = NULL;
}

#define WINDOW_ITEM(batch, i) (&(batch)->slots[(i) % (batch)->window])

/* Keeps up to concurrency transfers running until every row is written. */
static void
run_loop(Batch *batch)
{
	int			running = 0;
	int			waiting = 0;	/* items scheduled for a retry */

	for (;;)
	{
		BatchItem  *done;
		TimestampTz now = GetCurrentTimestamp();
		long		wait_ms = 1000;

		/* retries that are due go first: they have waited already */
		for (int i = batch->emitted; i < batch->next && waiting > 0 && running < batch->concurrency; i++)
		{
			BatchItem  *item = WINDOW_ITEM(batch, i);

			if (item->retry_at != 0 && item->retry_at <= now && start(batch->engine, item))
			{
				waiting--;
				running++;
			}
		}
		while (running < batch->concurrency && batch->next < batch->n &&
			   batch->next < batch->emitted + batch->window)
		{
			if (admit_next(batch, &waiting))
				running++;
			CHECK_FOR_INTERRUPTS();
		}
		/* rows in input order, each as soon as those before it are out */
		while (batch->emitted < batch->next && WINDOW_ITEM(batch, batch->emitted)->done)
			emit_row(batch, WINDOW_ITEM(batch, batch->emitted++));
		if (batch->emitted == batch->n)
			break;
		if (running == 0 && waiting == 0)
			continue;			/* the window has room again */
		for (int i = batch->emitted; i < batch->next && waiting > 0; i++)
		{
			BatchItem  *item = WINDOW_ITEM(batch, i);

			if (item->retry_at != 0)
				wait_ms = Min(wait_ms, Max(1, TimestampDifferenceMilliseconds(now, item->retry_at)));
		}
		if (running == 0)
		{
			/* only retries left: sleep until the first is due, cancel still heard */
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		done = llm_engine_next_done(batch->engine, wait_ms);
		if (done == NULL)
			continue;
		running--;
		done->in_flight = false;
		{
			MemoryContext old = MemoryContextSwitchTo(done->context);
			bool		retry = llm_call_complete(done->call) != NULL &&
				schedule_retry(done, batch->max_attempts);

			if (retry)
				waiting++;
			else
				settle(done, batch->abort_on_fail);
			MemoryContextSwitchTo(old);
		}
	}
}

void
llm_batch_run(Batch *batch, int concurrency)
{
	MemoryContext batch_context = AllocSetContextCreate(CurrentMemoryContext,
														"llmext batch",
														ALLOCSET_DEFAULT_SIZES);
	MemoryContext engine_context = AllocSetContextCreate(batch_context,
														 "llmext batch engine",
														 ALLOCSET_DEFAULT_SIZES);

	batch->window = Max(1, Min(concurrency, batch->n));
	batch->concurrency = batch->window;
	batch->max_attempts = LLM_DEFAULT_MAX_ATTEMPTS;
	batch->slots = MemoryContextAllocZero(batch_context, sizeof(BatchItem) * batch->window);
	batch->items_context = batch_context;
	batch->engine = llm_engine_create(engine_context);

	if (batch->abort_on_fail)
		check_every_item(batch);
	PG_TRY();
	{
		run_loop(batch);
	}
	PG_CATCH();
	{
		/* requests already sent may be billed: the ledger hears of them */
		for (int i = batch->emitted; i < batch->next; i++)
		{
			BatchItem  *item = WINDOW_ITEM(batch, i);

			if (item->context != NULL && item->call != NULL && item->in_flight)
				llm_call_abandon(item->call);
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextDelete(batch_context);
}

/* The set-returning function's result store, in materialize mode. */
Tuplestorestate *
llm_batch_begin_rows(FunctionCallInfo fcinfo, TupleDesc *desc)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Tuplestorestate *store;
	TupleDesc	result_desc;
	MemoryContext old;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	store = tuplestore_begin_heap(true, false, work_mem);
	*desc = CreateTupleDescCopy(result_desc);
	MemoryContextSwitchTo(old);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = store;
	rsinfo->setDesc = *desc;
	return store;
}

int
llm_batch_concurrency(FunctionCallInfo fcinfo, int argno)
{
	int			concurrency = PG_ARGISNULL(argno) ? DEFAULT_CONCURRENCY : PG_GETARG_INT32(argno);

	if (concurrency < 1 || concurrency > MAX_CONCURRENCY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("concurrency must be between 1 and %d", MAX_CONCURRENCY)));
	/* each slot may hold a request and an answer: a superuser sets how many */
	if (concurrency > llm_max_batch_concurrency)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("concurrency %d is above llmext.max_batch_concurrency (%d)",
						concurrency, llm_max_batch_concurrency),
				 errhint("Ask for less, or ask a superuser to raise llmext.max_batch_concurrency.")));
	return Min(concurrency, llm_max_batch_concurrency);
}

cJSON *
llm_batch_options(FunctionCallInfo fcinfo, int argno)
{
	cJSON	   *options = PG_ARGISNULL(argno) ? NULL : llm_jsonb_to_cjson(PG_GETARG_DATUM(argno));

	if (options != NULL && !cJSON_IsObject(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object")));
	return options;
}

void
llm_batch_deconstruct(ArrayType *array, Oid type, int16 len, bool byval, char align,
						  const char *what, Datum **elements, bool **nulls, int *n)
{
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	deconstruct_array(array, type, len, byval, align, elements, nulls, n);
}

/* llm_complete_batch: one prompt text, with the batch's model and system. */
static void
fill_from_prompt(Batch *batch, BatchItem *item, Datum element)
{
	char	   *prompt;

	llm_check_text_size(element, "a prompt");
	prompt = TextDatumGetCString(element);
	if (prompt[0] == '\0')
	{
		if (batch->abort_on_fail)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("prompt %d must not be empty", item->ord + 1)));
		item->error = pstrdup("prompt must not be empty");
		return;
	}
	item->req.model_name = batch->model;
	item->req.messages = llm_messages_from_prompt(prompt, batch->system);
	item->req.options = batch->item_options;
	item->req.source = "batch";
}

/*
 * llm_complete_batch(prompts text[], model text, system text, options jsonb,
 *                    concurrency int)
 * RETURNS TABLE (ord int, completion text, response jsonb, error text)
 */
Datum
llm_complete_batch(PG_FUNCTION_ARGS)
{
	Batch		batch = {0};
	int			concurrency;

	batch.model = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!PG_ARGISNULL(2))
		llm_check_text_size(PG_GETARG_DATUM(2), "a system message");
	batch.system = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	batch.item_options = llm_batch_options(fcinfo, 3);
	concurrency = llm_batch_concurrency(fcinfo, 4);
	batch.abort_on_fail = llm_batch_abort_on_failure(batch.item_options);
	batch.item_options = llm_batch_element_options(batch.item_options);
	batch.store = llm_batch_begin_rows(fcinfo, &batch.desc);
	batch.fill = fill_from_prompt;

	if (PG_ARGISNULL(0))
		return (Datum) 0;
	llm_batch_deconstruct(PG_GETARG_ARRAYTYPE_P(0), TEXTOID, -1, false, TYPALIGN_INT,
							  "prompts", &batch.elements, &batch.nulls, &batch.n);
	if (batch.n > 0)
		llm_batch_run(&batch, concurrency);
	return (Datum) 0;
}

/*
 * llm_complete_prompt_batch: one element's vars rendered with the stored
 * prompt; a rendering error becomes the row's error.
 */
static void
fill_from_vars(Batch *batch, BatchItem *item, Datum element)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	cJSON	   *vars = llm_jsonb_to_cjson(element);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		LlmRenderedPrompt *prompt = llm_prompt_render(batch->name, vars, batch->model,
													  batch->version, batch->label, NULL);
		cJSON	   *merged = cJSON_Duplicate(prompt->params, true);
		const cJSON *option;

		/* the version's parameters, then the call's options over them */
		cJSON_ArrayForEach(option, batch->item_options)
		{
			cJSON_DeleteItemFromObjectCaseSensitive(merged, option->string);
			cJSON_AddItemToObject(merged, option->string, cJSON_Duplicate(option, true));
		}
		item->req.model_name = prompt->model;
		item->req.messages = prompt->messages;
		item->req.options = merged;
		item->req.prompt_name = prompt->name;
		item->req.prompt_version = prompt->version;
		item->req.vars = prompt->vars;
		item->req.source = "batch";
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata = llm_subxact_error(context, owner);

		/*
		 * An unknown prompt, version or label is the statement's error, not a
		 * row's; so is a ceiling reached.
		 */
		if (batch->abort_on_fail || edata->sqlerrcode == ERRCODE_UNDEFINED_OBJECT ||
			edata->sqlerrcode == ERRCODE_PROGRAM_LIMIT_EXCEEDED)
			ReThrowError(edata);
		item->req.messages = NULL;
		item->error = pstrdup(edata->message);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(context);
	CurrentResourceOwner = owner;
}

/*
 * llm_complete_prompt_batch(name text, vars jsonb[], model text, version int,
 *                           label text, options jsonb, concurrency int)
 * RETURNS TABLE (ord int, completion text, response jsonb, error text)
 */
Datum
llm_complete_prompt_batch(PG_FUNCTION_ARGS)
{
	Batch		batch = {0};
	int			version = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT32(3);
	int			concurrency;

	batch.model = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	batch.version = PG_ARGISNULL(3) ? NULL : &version;
	batch.label = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	batch.item_options = llm_batch_options(fcinfo, 5);
	concurrency = llm_batch_concurrency(fcinfo, 6);
	batch.abort_on_fail = llm_batch_abort_on_failure(batch.item_options);
	batch.item_options = llm_batch_element_options(batch.item_options);
	batch.store = llm_batch_begin_rows(fcinfo, &batch.desc);
	batch.fill = fill_from_vars;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("prompt name must not be NULL")));
	batch.name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (PG_ARGISNULL(1))
		return (Datum) 0;
	llm_batch_deconstruct(PG_GETARG_ARRAYTYPE_P(1), JSONBOID, -1, false, TYPALIGN_INT,
							  "vars", &batch.elements, &batch.nulls, &batch.n);
	if (batch.n > 0)
		llm_batch_run(&batch, concurrency);
	return (Datum) 0;
}
