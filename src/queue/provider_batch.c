/*
 * provider_batch.c — the worker sends queued requests that asked for a
 * provider's Batch API as provider batches (llm.provider_batches): the
 * turn, each batch's states, and the batch at the provider.
 *
 * Requests are collected per model once the oldest has waited
 * llmext.batch_api_wait, or llmext.batch_api_max_requests are waiting; they
 * are running from then on, in their batch.  Each turn handles a few due
 * batches, one state at a time:
 *
 *	uploading	every request is prepared as its submitter (model, options,
 *				cache, budget: a cached answer or a refusal ends it at
 *				once), its request body written as a line of a temporary
 *				file in chunks, and the file uploaded (provider_batch_files.c)
 *	creating	committed BEFORE the create is sent: a batch found in this
 *				state at the start of a turn is first looked up at the
 *				provider by its metadata, and created only if not found, so
 *				that a batch is never paid twice
 *	submitted	polled every llmext.batch_api_poll_interval; once none of
 *				its requests is still wanted (all cancelled), the provider
 *				is asked to cancel it (cancelling)
 *	finishing	the output and error files are downloaded to disk and their
 *				lines joined on custom_id: each answer is completed as its
 *				submitter (ledger at the model's batch_price_ratio, cache)
 *				and written by the queue's usual path, to rows still
 *				running only, so each request ends exactly once, whatever
 *				restarts in between; a failed line is retried like any
 *				other request, through a later batch.  Requests the files
 *				did not answer are queued again (attempts permitting), or
 *				end in error when the provider failed the batch
 *
 * Every state change is a conditional UPDATE in a short transaction, and
 * every request to the provider is sent with no transaction open.
 */
#include "llmext.h"

#include "queue/provider_batch.h"

#include "call/call.h"
#include "core/redact.h"
#include "core/request.h"
#include "core/retry.h"
#include "providers/provider.h"
#include "queue/provider_batch_private.h"
#include "queue/queue_private.h"
#include "store/caller.h"
#include "store/version.h"

#include "access/xact.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include <signal.h>

int			llm_batch_api_wait_ms = 60000;
int			llm_batch_api_max_requests = 50000;
int			llm_batch_api_poll_ms = 60000;
int			llm_batch_api_max_bytes = 200 * 1024 * 1024;
bool		llm_batch_api_crash_after_create = false;

#define CHECK_MS 1000			/* longest time between two looks for due work */
#define MAX_PAGES 10			/* of the provider's batches, when looking one up */

static TimestampTz next_check = 0;

/* ---------- state changes ---------- */

static bool
ended_status(const char *status)
{
	return status != NULL &&
		(strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
		 strcmp(status, "expired") == 0 || strcmp(status, "cancelled") == 0);
}

/* The most attempts a request of the batch's model has. */
static int
max_attempts(PbBatch *batch)
{
	const cJSON *attempts = batch->model
		? cJSON_GetObjectItemCaseSensitive(batch->model->provider_options, "max_attempts") : NULL;

	return cJSON_IsNumber(attempts) ? attempts->valueint : LLM_DEFAULT_MAX_ATTEMPTS;
}

/*
 * Ends the batch in state (done, failed or cancelled): its requests still
 * running are queued again while attempts remain (requeue), else end in
 * error with reason.
 */
static void
end_batch(PbBatch *batch, const char *state, bool requeue, const char *reason)
{
	Datum		args[4] = {Int64GetDatum(batch->id), BoolGetDatum(requeue),
	Int32GetDatum(max_attempts(batch)), llm_tx_text(reason)};
	Datum		end_args[3] = {Int64GetDatum(batch->id), llm_tx_text(state), llm_tx_text(reason)};
	bool		nulls[4] = {false, false, false, reason == NULL};
	bool		end_nulls[3] = {false, false, reason == NULL};
	int64		left;

	llm_tx_begin("llmext: ending a provider batch");
	llm_tx_exec("SELECT llm._batch_api_leftovers($1, $2, $3, $4)", "ibnt", args, nulls);
	left = strtoll(llm_tx_column(0, "_batch_api_leftovers"), NULL, 10);
	/* a batch that answered everything has no error, whatever an attempt said before */
	if (left == 0 && strcmp(state, "failed") != 0)
		end_nulls[2] = true;
	llm_tx_exec("UPDATE llm.provider_batches"
				"   SET state = $2, error = CASE WHEN $3 IS NULL THEN NULL ELSE coalesce(error, $3) END,"
				"       finished_at = now(), updated_at = now()"
				" WHERE id = $1 AND state NOT IN ('done', 'failed', 'cancelled')",
				"itt", end_args, end_nulls);
	llm_tx_end();
	ereport(LOG,
			(errmsg("llmext provider batch %lld %s%s%s", (long long) batch->id, state,
					left > 0 ? psprintf(": %lld requests %s", (long long) left,
										requeue ? "queued again (attempts permitting)" : "in error") : "",
					reason && left > 0 ? psprintf(" (%s)", reason) : "")));
}

/*
 * A failed request to the provider: tried again after a delay.  While the
 * input is being uploaded, the batch fails after LLM_BATCH_MAX_ATTEMPTS (or
 * at once when trying again cannot help) and its requests end in error;
 * while it is being created, only a refusal fails it (a create that timed
 * out may have gone through: it is looked up, not given up).  Once the
 * provider has it, it is never given up: it is being paid for.
 */
void
pb_attempt_failed(PbBatch *batch, const LlmRemoteError *error)
{
	bool		uploading = strcmp(batch->state, "uploading") == 0;
	bool		creating = strcmp(batch->state, "creating") == 0 && batch->provider_batch_id == NULL;
	double		delay_ms;
	Datum		args[3];

	if ((uploading && (!error->retry || batch->attempts + 1 >= LLM_BATCH_MAX_ATTEMPTS)) ||
		(creating && !error->retry))
	{
		end_batch(batch, "failed", false,
				  psprintf("the provider batch failed: %s%s", error->message,
						   error->retry ? psprintf(" (after %d attempts)", batch->attempts + 1) : ""));
		return;
	}
	delay_ms = Max(llm_retry_delay_ms(Min(batch->attempts, 10), error->retry_after_ms,
									  pg_prng_double(&pg_global_prng_state)),
				   (double) Min(llm_batch_api_poll_ms, 1000 * (1 << Min(batch->attempts, 12))));
	args[0] = Int64GetDatum(batch->id);
	args[1] = Float8GetDatum(delay_ms);
	args[2] = llm_tx_text(error->message);
	llm_tx_begin("llmext: deferring a provider batch");
	llm_tx_exec("UPDATE llm.provider_batches SET attempts = attempts + 1, error = $3, updated_at = now(),"
				"       next_poll_at = now() + $2 * interval '1 millisecond'"
				" WHERE id = $1", "ift", args, NULL);
	llm_tx_end();
	ereport(LOG,
			(errmsg("llmext provider batch %lld: %s; trying again in %.0f ms",
					(long long) batch->id, error->message, delay_ms)));
}

/* ---------- the provider ---------- */

/*
 * Looks up the batch's model and loads its provider's key (target and key
 * checks included), and builds the header lines.  The requests in it were
 * each prepared as their submitter; the batch itself is the worker's.
 */
static bool
connect_model(PbBatch *batch)
{
	MemoryContext caller = CurrentMemoryContext;

	llm_queue_begin("llmext: looking up a provider batch's model");
	MemoryContextSwitchTo(caller);
	batch->model = llm_find_model(batch->model_name, true);
	if (batch->model == NULL || batch->model->routine == NULL ||
		batch->model->routine->batches_path == NULL)
	{
		llm_queue_end();
		MemoryContextSwitchTo(caller);
		end_batch(batch, "failed", false,
				  batch->model == NULL
				  ? psprintf("model \"%s\" no longer exists", batch->model_name)
				  : psprintf("provider \"%s\" of kind \"%s\" has no batch mode",
							 batch->model->provider, batch->model->provider_kind));
		return false;
	}
	llm_remote_auth(batch->model, &batch->auth);
	llm_queue_end();
	MemoryContextSwitchTo(caller);
	return true;
}

/* A GET (body NULL) or a JSON POST to path below base_url; false when stopped. */
static bool
request(PbBatch *batch, const char *path, const char *body, LlmHttpResponse *resp)
{
	return llm_remote_request(batch->model, &batch->auth, path, body, batch->stop, resp);
}

/*
 * A request about the batch at the provider that must answer with a batch
 * object; false when it did not (the attempt is recorded).
 */
static bool
batch_request(PbBatch *batch, const char *path, const char *body, const char *what,
			  LlmProviderBatch *remote)
{
	LlmHttpResponse resp;
	LlmRemoteError error;
	char		err[256];
	char	   *text;

	if (!request(batch, path, body, &resp))
		return false;
	if (!llm_remote_ok(batch->model, &resp, batch->auth.secret, what, &error))
	{
		pb_attempt_failed(batch, &error);
		return false;
	}
	text = llm_remote_body(&resp);
	if (!batch->model->routine->parse_batch(text, strlen(text), remote, err, sizeof(err)) ||
		!llm_is_plain_id(remote->id))
	{
		error.message = psprintf("%s: %s", what, remote->id ? "the batch id is not a plain id" : err);
		error.retry = true;
		error.retry_after_ms = -1;
		pb_attempt_failed(batch, &error);
		return false;
	}
	return true;
}

static char *
batch_path(PbBatch *batch, const char *suffix)
{
	return psprintf("%s/%s%s", batch->model->routine->batches_path, batch->provider_batch_id,
					suffix ? suffix : "");
}

/* Records what the provider says of the batch; an ended batch is finishing. */
static void
record_remote(PbBatch *batch, const LlmProviderBatch *remote)
{
	Datum		args[9];
	bool		nulls[9] = {false};
	bool		ended = ended_status(remote->status);

	args[0] = Int64GetDatum(batch->id);
	args[1] = llm_tx_text(remote->id);
	args[2] = llm_tx_text(remote->status);
	nulls[2] = remote->status == NULL;
	args[3] = Int64GetDatum(remote->completed);
	nulls[3] = remote->completed < 0;
	args[4] = Int64GetDatum(remote->failed);
	nulls[4] = remote->failed < 0;
	args[5] = llm_tx_text(remote->output_file_id);
	nulls[5] = remote->output_file_id == NULL || !llm_is_plain_id(remote->output_file_id);
	args[6] = llm_tx_text(remote->error_file_id);
	nulls[6] = remote->error_file_id == NULL || !llm_is_plain_id(remote->error_file_id);
	args[7] = BoolGetDatum(ended);
	args[8] = Float8GetDatum((double) llm_batch_api_poll_ms);
	llm_tx_begin("llmext: recording a provider batch");
	llm_tx_exec("UPDATE llm.provider_batches"
				"   SET provider_batch_id = $2, provider_status = $3, completed = $4, failed = $5,"
				"       output_file_id = $6, error_file_id = $7, attempts = 0, error = NULL,"
				"       updated_at = now(),"
				"       submitted_at = coalesce(submitted_at, now()),"
				"       state = CASE WHEN $8 THEN 'finishing'"
				"                    WHEN state = 'creating' THEN 'submitted' ELSE state END,"
				"       next_poll_at = CASE WHEN $8 THEN now()"
				"                           ELSE now() + $9 * interval '1 millisecond' END"
				" WHERE id = $1 AND state IN ('creating', 'submitted', 'cancelling')",
				"ittiittbf", args, nulls);
	if (remote->error_message != NULL)
	{
		Datum		error_args[2] = {Int64GetDatum(batch->id),
		llm_tx_text(llm_redact(remote->error_message, batch->auth.secret))};

		llm_tx_exec("UPDATE llm.provider_batches SET error = $2 WHERE id = $1", "it", error_args, NULL);
	}
	llm_tx_end();
	batch->provider_batch_id = pstrdup(remote->id);
	batch->provider_status = remote->status ? pstrdup(remote->status) : NULL;
	batch->output_file_id = nulls[5] ? NULL : pstrdup(remote->output_file_id);
	batch->error_file_id = nulls[6] ? NULL : pstrdup(remote->error_file_id);
	batch->batch_error = remote->error_message ? llm_redact(remote->error_message, batch->auth.secret) : NULL;
	if (ended)
		batch->state = "finishing";
	else if (strcmp(batch->state, "creating") == 0)
		batch->state = "submitted";
	batch->attempts = 0;
}

/*
 * Looks for a batch created for this one (its metadata name this batch and
 * this database); true with *found filled when found.  *failed when the
 * look-up itself failed (the attempt is recorded).
 */
static bool
find_created(PbBatch *batch, LlmProviderBatch *found, bool *failed)
{
	const LlmProviderRoutine *routine = batch->model->routine;
	char	   *after = NULL;
	char	   *mine = llm_remote_database_tag();
	char	   *tag = psprintf(INT64_FORMAT, batch->id);

	*failed = false;
	for (int page = 0; page < MAX_PAGES; page++)
	{
		LlmHttpResponse resp;
		LlmRemoteError error;
		LlmProviderBatchList list;
		char		err[256];
		char	   *body;

		if (!request(batch, psprintf("%s%s", routine->batches_path, routine->batch_list_query(after)),
					 NULL, &resp))
		{
			*failed = true;		/* the worker is stopping */
			return false;
		}
		if (!llm_remote_ok(batch->model, &resp, batch->auth.secret, "looking up a provider batch", &error))
		{
			pb_attempt_failed(batch, &error);
			*failed = true;
			return false;
		}
		body = llm_remote_body(&resp);
		if (!routine->parse_batch_list(body, strlen(body), &list, err, sizeof(err)))
		{
			error.message = psprintf("looking up a provider batch: %s", err);
			error.retry = true;
			error.retry_after_ms = -1;
			pb_attempt_failed(batch, &error);
			*failed = true;
			return false;
		}
		for (int i = 0; i < list.n; i++)
			if (list.batches[i].batch_tag && strcmp(list.batches[i].batch_tag, tag) == 0 &&
				list.batches[i].database_tag && strcmp(list.batches[i].database_tag, mine) == 0 &&
				llm_is_plain_id(list.batches[i].id))
			{
				*found = list.batches[i];
				return true;
			}
		if (!list.has_more || list.last_id == NULL)
			return false;
		after = pstrdup(list.last_id);
	}
	return false;
}

/* Creates the batch at the provider (after looking for one, unless fresh). */
static void
create_batch(PbBatch *batch, bool fresh)
{
	const LlmProviderRoutine *routine = batch->model->routine;
	LlmProviderBatch remote = {0};
	bool		failed;

	if (!fresh)
	{
		if (find_created(batch, &remote, &failed))
		{
			ereport(LOG, (errmsg("llmext provider batch %lld: found %s at the provider",
								 (long long) batch->id, remote.id)));
			record_remote(batch, &remote);
			return;
		}
		if (failed)
			return;
	}
	if (!batch_request(batch, routine->batches_path,
					   routine->batch_request(batch->input_file_id, routine->batch_chat_url,
											  psprintf(INT64_FORMAT, batch->id),
											  llm_remote_database_tag()),
					   "creating a provider batch", &remote))
		return;
	if (llm_batch_api_crash_after_create)
	{
		ereport(LOG,
				(errmsg("llmext.batch_api_crash_after_create: the worker kills itself after the provider accepted batch %s",
						remote.id)));
		kill(MyProcPid, SIGKILL);
		pg_usleep(10 * 1000 * 1000L);	/* not reached */
	}
	record_remote(batch, &remote);
	ereport(LOG, (errmsg("llmext provider batch %lld: created %s (%s)",
						 (long long) batch->id, remote.id, remote.status ? remote.status : "?")));
}

/* How many of the batch's requests are still wanted (running). */
static int64
running_requests(PbBatch *batch)
{
	Datum		args[1] = {Int64GetDatum(batch->id)};
	int64		n;

	llm_tx_begin("llmext: counting a provider batch's requests");
	llm_tx_exec("SELECT count(*) FROM llm.requests WHERE provider_batch = $1 AND state = 'running'",
				"i", args, NULL);
	n = strtoll(llm_tx_column(0, "count"), NULL, 10);
	llm_tx_end();
	return n;
}

/* Asks the provider to cancel the batch; the answer is recorded. */
static void
cancel_batch(PbBatch *batch)
{
	LlmProviderBatch remote = {0};

	if (batch_request(batch, batch_path(batch, "/cancel"), "{}", "cancelling a provider batch",
					  &remote))
		record_remote(batch, &remote);
}

/*
 * Has the provider not heard of the cancel yet?  (A cancel whose answer was
 * lost is sent again: cancelling twice is harmless.)
 */
static bool
cancel_unsent(PbBatch *batch)
{
	const char *status = batch->provider_status;

	return status == NULL || strcmp(status, "validating") == 0 ||
		strcmp(status, "in_progress") == 0 || strcmp(status, "finalizing") == 0;
}

/* Polls the batch; asks the provider to cancel it once nobody wants it. */
static void
poll_batch(PbBatch *batch)
{
	LlmProviderBatch remote = {0};

	if (strcmp(batch->state, "submitted") == 0 && running_requests(batch) == 0)
	{
		Datum		args[1] = {Int64GetDatum(batch->id)};

		llm_tx_begin("llmext: cancelling a provider batch");
		llm_tx_exec("UPDATE llm.provider_batches SET state = 'cancelling', updated_at = now()"
					" WHERE id = $1 AND state = 'submitted'", "i", args, NULL);
		llm_tx_end();
		batch->state = "cancelling";
		ereport(LOG, (errmsg("llmext provider batch %lld: every request was cancelled; cancelling %s",
							 (long long) batch->id, batch->provider_batch_id)));
	}
	if (strcmp(batch->state, "cancelling") == 0 && cancel_unsent(batch))
	{
		cancel_batch(batch);
		return;
	}
	if (batch_request(batch, batch_path(batch, NULL), NULL, "polling a provider batch", &remote))
		record_remote(batch, &remote);
}

/* Reads the answers, then ends the batch and what it left unanswered. */
static void
finish_batch(PbBatch *batch)
{
	const char *status = batch->provider_status ? batch->provider_status : "";
	Datum		args[1] = {Int64GetDatum(batch->id)};

	/* counted again from the start: a reading cut short (a restart) is done again whole */
	llm_tx_begin("llmext: reading a provider batch's answers");
	llm_tx_exec("UPDATE llm.provider_batches SET answered = 0 WHERE id = $1", "i", args, NULL);
	llm_tx_end();
	if (batch->output_file_id != NULL && !pb_read_answers(batch, batch->output_file_id))
		return;
	if (batch->error_file_id != NULL && !pb_read_answers(batch, batch->error_file_id))
		return;
	if (strcmp(status, "failed") == 0)
		end_batch(batch, "failed", false,
				  psprintf("the provider failed the batch: %s",
						   batch->batch_error ? batch->batch_error : "no reason given"));
	else if (strcmp(status, "cancelled") == 0)
		end_batch(batch, "cancelled", true, "the provider batch was cancelled before answering it");
	else if (strcmp(status, "expired") == 0)
		end_batch(batch, "done", true, "the provider batch expired before answering it");
	else
		end_batch(batch, "done", true, "the provider batch's output had no answer for it");
}

/* ---------- the turn ---------- */

static void
run_batch(PbBatch *batch)
{
	bool		fresh = false;

	if (!connect_model(batch))
		return;
	if (strcmp(batch->state, "uploading") == 0)
	{
		int			lines;

		if (!pb_upload_input(batch, &lines))
			return;
		if (lines == 0)
		{
			end_batch(batch, "done", true, NULL);
			return;
		}
		batch->state = "creating";
		fresh = true;
	}
	if (strcmp(batch->state, "creating") == 0)
		create_batch(batch, fresh);
	if (strcmp(batch->state, "submitted") == 0 || strcmp(batch->state, "cancelling") == 0)
		poll_batch(batch);
	if (strcmp(batch->state, "finishing") == 0)
		finish_batch(batch);
}

/* Puts the requests that are due in new provider batches. */
static void
collect_due(void)
{
	Datum		args[2] = {Float8GetDatum((double) llm_batch_api_wait_ms),
	Int32GetDatum(llm_batch_api_max_requests)};
	MemoryContext caller = CurrentMemoryContext;
	List	   *models = NIL;
	ListCell   *cell;

	llm_tx_begin("llmext: looking for requests for provider batches");
	llm_tx_exec("SELECT model FROM llm._batch_api_due($1, $2) AS model", "fn", args, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		/* SPI's memory is gone at llm_tx_end: the list lives in the caller's */
		MemoryContext old = MemoryContextSwitchTo(caller);

		models = lappend(models, pstrdup(llm_tx_column(i, "model")));
		MemoryContextSwitchTo(old);
	}
	llm_tx_end();
	foreach(cell, models)
	{
		Datum		collect_args[2] = {llm_tx_text(lfirst(cell)),
		Int32GetDatum(llm_batch_api_max_requests)};
		char	   *id;

		llm_tx_begin("llmext: collecting requests for a provider batch");
		llm_tx_exec("SELECT llm._batch_api_collect($1, $2) AS id", "tn", collect_args, NULL);
		id = llm_tx_keep(llm_tx_column(0, "id"));
		llm_tx_end();
		if (id != NULL)
			ereport(LOG, (errmsg("llmext provider batch %s: collecting requests for model \"%s\"",
								 id, (char *) lfirst(cell))));
	}
}

static List *
due_batches(void)
{
	MemoryContext caller = CurrentMemoryContext;
	List	   *batches = NIL;

	llm_tx_begin("llmext: looking for due provider batches");
	llm_tx_exec("SELECT id, state, model, input_file_id, provider_batch_id, provider_status,"
				"       output_file_id, error_file_id, error, attempts"
				"  FROM llm.provider_batches"
				" WHERE state NOT IN ('done', 'failed', 'cancelled') AND next_poll_at <= now()"
				" ORDER BY next_poll_at, id LIMIT " CppAsString2(LLM_BATCH_PER_TURN),
				"", NULL, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		PbBatch    *batch = MemoryContextAllocZero(caller, sizeof(PbBatch));
		MemoryContext old;

		batch->id = strtoll(llm_tx_column(i, "id"), NULL, 10);
		batch->state = llm_tx_keep(llm_tx_column(i, "state"));
		batch->model_name = llm_tx_keep(llm_tx_column(i, "model"));
		batch->input_file_id = llm_tx_keep(llm_tx_column(i, "input_file_id"));
		batch->provider_batch_id = llm_tx_keep(llm_tx_column(i, "provider_batch_id"));
		batch->provider_status = llm_tx_keep(llm_tx_column(i, "provider_status"));
		batch->output_file_id = llm_tx_keep(llm_tx_column(i, "output_file_id"));
		batch->error_file_id = llm_tx_keep(llm_tx_column(i, "error_file_id"));
		batch->batch_error = llm_tx_keep(llm_tx_column(i, "error"));
		batch->attempts = atoi(llm_tx_column(i, "attempts"));
		old = MemoryContextSwitchTo(caller);
		batches = lappend(batches, batch);
		MemoryContextSwitchTo(old);
	}
	llm_tx_end();
	return batches;
}

void
llm_provider_batches_run(LlmQueue *queue, bool (*stop) (void))
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext context;
	List	   *volatile batches = NIL;
	ListCell   *cell;

	if (GetCurrentTimestamp() < next_check)
		return;
	next_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											 Min(CHECK_MS, llm_batch_api_poll_ms));
	context = AllocSetContextCreate(caller, "llmext provider batches", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		bool		current;

		llm_queue_begin("llmext: looking for provider batches");
		current = llm_schema_is_current();
		llm_queue_end();
		MemoryContextSwitchTo(context);
		if (current)
		{
			collect_due();
			batches = due_batches();
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextDelete(context);
		return;
	}
	PG_END_TRY();

	foreach(cell, batches)
	{
		PbBatch    *batch = lfirst(cell);
		MemoryContext batch_context = AllocSetContextCreate(context, "llmext provider batch",
															ALLOCSET_DEFAULT_SIZES);

		if (stop())
			break;
		batch->queue = queue;
		batch->stop = stop;
		MemoryContextSwitchTo(batch_context);
		PG_TRY();
		{
			run_batch(batch);
		}
		PG_CATCH();
		{
			ErrorData  *edata;
			LlmRemoteError error = {0};

			MemoryContextSwitchTo(batch_context);
			edata = CopyErrorData();
			FlushErrorState();
			pb_close_open_file();
			AbortCurrentTransaction();	/* nothing to do when none is open */
			MemoryContextSwitchTo(batch_context);
			llm_act_reset();
			pgstat_report_activity(STATE_IDLE, NULL);
			/* an ERROR of ours (a missing key, a host not allowed, ...) is an attempt */
			error.message = edata->detail ? psprintf("%s: %s", edata->message, edata->detail)
				: edata->message;
			error.retry = true;
			error.retry_after_ms = -1;
			PG_TRY();
			{
				pb_attempt_failed(batch, &error);
			}
			PG_CATCH();
			{
				EmitErrorReport();
				FlushErrorState();
				AbortCurrentTransaction();
			}
			PG_END_TRY();
		}
		PG_END_TRY();
		pb_close_open_file();
		llm_remote_forget(&batch->auth);
		MemoryContextSwitchTo(context);
		MemoryContextDelete(batch_context);
	}
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(context);
}

long
llm_provider_batches_wait_ms(long longest_ms)
{
	TimestampTz now = GetCurrentTimestamp();

	if (next_check <= now)
		return 1;
	return Min(longest_ms, TimestampDifferenceMilliseconds(now, next_check) + 1);
}
