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
 */
#include "llmext.h"

#include <stdlib.h>

#include "access/xact.h"
#include "call.h"
#include "failure.h"
#include "prompt.h"
#include "subxact.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "retry.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#define DEFAULT_CONCURRENCY 8
#define MAX_CONCURRENCY 1024

PG_FUNCTION_INFO_V1(llm_complete_batch);
PG_FUNCTION_INFO_V1(llm_complete_prompt_batch);

typedef struct BatchItem
{
	char	   *prompt;			/* NULL: the row is NULL, nothing is called */
	LlmCallRequest req;
	LlmCallResult result;
	LlmPreparedCall *call;		/* made when its turn comes */
	bool		finished;		/* its transfer came back */
	int			attempts;
	TimestampTz retry_at;		/* 0: not waiting to be retried */
	char	   *error;			/* the row's error text */
} BatchItem;

/* "error" given explicitly: the first failure aborts the statement. */
static bool
abort_on_failure(const cJSON *options)
{
	const cJSON *on_error = cJSON_GetObjectItemCaseSensitive(options, "on_error");

	return cJSON_IsString(on_error) && strcmp(on_error->valuestring, "error") == 0;
}

/* Options for the elements: failures come back as values, not raised. */
static cJSON *
element_options(const cJSON *options)
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

	if (failure == NULL)
		return;
	if (abort_on_fail || failure->sqlstate == ERRCODE_LLM_BUDGET_EXCEEDED)
		llm_failure_raise(ERROR, failure);
	item->error = llm_failure_text(failure);
}

/*
 * Sends item's request, now or again: true, or false when the provider's
 * rate limits make it wait (then retry_at says until when).
 */
static bool
start(LlmEngine *engine, BatchItem *item)
{
	double		wait_ms = llm_call_admit(item->call);

	if (wait_ms > 0)
	{
		item->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) wait_ms + 1);
		return false;
	}
	item->attempts++;
	item->retry_at = 0;
	llm_engine_add(engine, &item->call->http, &item->call->resp, item);
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

/* Keeps up to concurrency transfers running until every item is done. */
static void
run_loop(LlmEngine *engine, BatchItem *items, int n, int concurrency, int max_attempts,
		 bool abort_on_fail, volatile int *next)
{
	int			running = 0;
	int			waiting = 0;	/* items scheduled for a retry */

	for (;;)
	{
		BatchItem  *done;
		TimestampTz now = GetCurrentTimestamp();
		long		wait_ms = 1000;

		/* retries that are due go first: they have waited already */
		for (int i = 0; i < *next && waiting > 0 && running < concurrency; i++)
		{
			if (items[i].retry_at != 0 && items[i].retry_at <= now &&
				start(engine, &items[i]))
			{
				waiting--;
				running++;
			}
		}
		while (running < concurrency && *next < n)
		{
			BatchItem  *item = &items[(*next)++];

			if (item->req.messages == NULL)
				continue;		/* a NULL or empty prompt */
			item->call = llm_call_prepare(&item->req, &item->result);
			if (item->call->answered)
			{
				settle(item, abort_on_fail);
				continue;
			}
			if (start(engine, item))
				running++;
			else
				waiting++;		/* held back by a rate limit */
		}
		if (running == 0 && waiting == 0)
			break;
		for (int i = 0; i < *next && waiting > 0; i++)
			if (items[i].retry_at != 0)
				wait_ms = Min(wait_ms, Max(1, TimestampDifferenceMilliseconds(now, items[i].retry_at)));
		if (running == 0)
		{
			/* only retries left: sleep until the first is due, cancel still heard */
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		done = llm_engine_next_done(engine, wait_ms);
		if (done == NULL)
			continue;
		running--;
		done->finished = true;
		if (llm_call_complete(done->call) != NULL && schedule_retry(done, max_attempts))
		{
			done->finished = false;
			waiting++;
			continue;
		}
		settle(done, abort_on_fail);
	}
}

static void
run_all(BatchItem *items, int n, int concurrency, int max_attempts, bool abort_on_fail)
{
	MemoryContext engine_context = AllocSetContextCreate(CurrentMemoryContext,
														 "llmext batch engine",
														 ALLOCSET_DEFAULT_SIZES);
	LlmEngine  *engine = llm_engine_create(engine_context);
	volatile int next = 0;		/* read after a longjmp */

	PG_TRY();
	{
		run_loop(engine, items, n, concurrency, max_attempts, abort_on_fail, &next);
	}
	PG_CATCH();
	{
		/* requests already sent may be billed: the ledger hears of them */
		for (int i = 0; i < next; i++)
		{
			LlmPreparedCall *call = items[i].call;

			if (call != NULL && !call->answered && !items[i].finished && items[i].retry_at == 0)
				llm_call_abandon(call);
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextDelete(engine_context);
}

/* The set-returning function's result store, in materialize mode. */
static Tuplestorestate *
begin_rows(FunctionCallInfo fcinfo, TupleDesc *desc)
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

static int
checked_concurrency(FunctionCallInfo fcinfo, int argno)
{
	int			concurrency = PG_ARGISNULL(argno) ? DEFAULT_CONCURRENCY : PG_GETARG_INT32(argno);

	if (concurrency < 1 || concurrency > MAX_CONCURRENCY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("concurrency must be between 1 and %d", MAX_CONCURRENCY)));
	return concurrency;
}

static cJSON *
checked_options(FunctionCallInfo fcinfo, int argno)
{
	cJSON	   *options = PG_ARGISNULL(argno) ? NULL : llm_jsonb_to_cjson(PG_GETARG_DATUM(argno));

	if (options != NULL && !cJSON_IsObject(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object")));
	return options;
}

static void
deconstruct_one_dimension(ArrayType *array, Oid type, int16 len, bool byval, char align,
						  const char *what, Datum **elements, bool **nulls, int *n)
{
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	deconstruct_array(array, type, len, byval, align, elements, nulls, n);
}

/*
 * Runs the items (the first one's provider sets the limits) and adds a row
 * per item, in order.
 */
static void
run_and_emit(BatchItem *items, int n, int concurrency, bool abort_on_fail,
			 Tuplestorestate *store, TupleDesc desc)
{
	const char *model = NULL;

	for (int i = 0; i < n && model == NULL; i++)
		if (items[i].req.messages != NULL)
			model = items[i].req.model_name ? items[i].req.model_name : "";
	if (model != NULL)
	{
		LlmModel   *target = llm_lookup_model(model[0] ? model : NULL);
		const cJSON *limit = cJSON_GetObjectItemCaseSensitive(target->provider_options,
															  "max_concurrency");
		const cJSON *attempts = cJSON_GetObjectItemCaseSensitive(target->provider_options,
																 "max_attempts");

		if (cJSON_IsNumber(limit) && limit->valueint >= 1)
			concurrency = Min(concurrency, limit->valueint);
		run_all(items, n, concurrency,
				cJSON_IsNumber(attempts) ? attempts->valueint : LLM_DEFAULT_MAX_ATTEMPTS,
				abort_on_fail);
	}

	for (int i = 0; i < n; i++)
	{
		BatchItem  *item = &items[i];
		Datum		values[4];
		bool		isnull[4] = {false, true, true, true};

		values[0] = Int32GetDatum(i + 1);
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
		tuplestore_putvalues(store, desc, values, isnull);
	}
}

/*
 * llm_complete_batch(prompts text[], model text, system text, options jsonb,
 *                    concurrency int)
 * RETURNS TABLE (ord int, completion text, response jsonb, error text)
 */
Datum
llm_complete_batch(PG_FUNCTION_ARGS)
{
	char	   *model = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *system = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	cJSON	   *options = checked_options(fcinfo, 3);
	int			concurrency = checked_concurrency(fcinfo, 4);
	bool		abort_on_fail = abort_on_failure(options);
	cJSON	   *item_options = element_options(options);
	TupleDesc	desc;
	Tuplestorestate *store = begin_rows(fcinfo, &desc);
	Datum	   *elements;
	bool	   *nulls;
	int			n;
	BatchItem  *items;

	if (PG_ARGISNULL(0))
		return (Datum) 0;
	deconstruct_one_dimension(PG_GETARG_ARRAYTYPE_P(0), TEXTOID, -1, false, TYPALIGN_INT,
							  "prompts", &elements, &nulls, &n);
	items = palloc0(sizeof(BatchItem) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		BatchItem  *item = &items[i];

		if (nulls[i])
			continue;
		item->prompt = TextDatumGetCString(elements[i]);
		if (item->prompt[0] == '\0')
		{
			if (abort_on_fail)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("prompt %d must not be empty", i + 1)));
			item->error = pstrdup("prompt must not be empty");
			continue;
		}
		item->req.model_name = model;
		item->req.messages = llm_messages_from_prompt(item->prompt, system);
		item->req.options = item_options;
		item->req.source = "batch";
	}
	run_and_emit(items, n, concurrency, abort_on_fail, store, desc);
	return (Datum) 0;
}

/* Renders one element's request; a rendering error becomes the row's error. */
static void
render_item(BatchItem *item, const char *name, const cJSON *vars, const char *model,
			const int *version, const char *label, const cJSON *options, bool abort_on_fail)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		LlmRenderedPrompt *prompt = llm_prompt_render(name, vars, model, version, label, NULL);
		cJSON	   *merged = cJSON_Duplicate(prompt->params, true);
		const cJSON *option;

		/* the version's parameters, then the call's options over them */
		cJSON_ArrayForEach(option, options)
		{
			cJSON_DeleteItemFromObjectCaseSensitive(merged, option->string);
			cJSON_AddItemToObject(merged, option->string, cJSON_Duplicate(option, true));
		}
		item->req.model_name = prompt->model;
		item->req.messages = prompt->messages;
		item->req.options = merged;
		item->req.prompt_name = prompt->name;
		item->req.prompt_version = prompt->version;
		item->req.source = "batch";
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata = llm_subxact_error(context);

		CurrentResourceOwner = owner;
		/* an unknown prompt, version or label is the statement's error, not a row's */
		if (abort_on_fail || edata->sqlerrcode == ERRCODE_UNDEFINED_OBJECT)
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
	char	   *name;
	char	   *model = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	int			version = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT32(3);
	char	   *label = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	cJSON	   *options = checked_options(fcinfo, 5);
	int			concurrency = checked_concurrency(fcinfo, 6);
	bool		abort_on_fail = abort_on_failure(options);
	cJSON	   *item_options = element_options(options);
	TupleDesc	desc;
	Tuplestorestate *store = begin_rows(fcinfo, &desc);
	Datum	   *elements;
	bool	   *nulls;
	int			n;
	BatchItem  *items;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("prompt name must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (PG_ARGISNULL(1))
		return (Datum) 0;
	deconstruct_one_dimension(PG_GETARG_ARRAYTYPE_P(1), JSONBOID, -1, false, TYPALIGN_INT,
							  "vars", &elements, &nulls, &n);
	items = palloc0(sizeof(BatchItem) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			continue;
		render_item(&items[i], name, llm_jsonb_to_cjson(elements[i]), model,
					PG_ARGISNULL(3) ? NULL : &version, label, item_options, abort_on_fail);
		CHECK_FOR_INTERRUPTS();
	}
	run_and_emit(items, n, concurrency, abort_on_fail, store, desc);
	return (Datum) 0;
}
