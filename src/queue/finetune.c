/*
 * finetune.c — the worker runs fine-tuning jobs (llm.finetune_jobs): each
 * job's states, the due jobs of a turn, and what the other two files share.
 *
 * Each turn of the worker's loop handles a few due jobs (next_poll_at has
 * passed), one state at a time:
 *
 *	queued, uploading	the training (and validation) file is written from
 *						llm.training_examples to a temporary file, through an
 *						SPI cursor in batches, checked against the set's size
 *						and SHA-256, and uploaded from disk (multipart, streamed
 *						by libcurl); each file id is recorded as it comes
 *	creating			committed BEFORE the create is sent: a job found in
 *						this state is first looked up at the provider by its
 *						metadata, and created only if not found, so a paid job
 *						is never created twice, whatever died when
 *	running				polled with back-off: the job, its events and its
 *						checkpoints are stored, unknown statuses kept as text
 *	cancelling			the provider is asked to cancel; then cancelled
 *	succeeded			llm._finetune_register names the model, and the ledger
 *						row (source 'finetune') is written in the same
 *						transaction
 *
 * Every state change is a conditional UPDATE in a short transaction, so a
 * user's cancel in between is never overwritten.  Requests go to the base
 * model's provider with its key and target checks, as the job's submitter.
 * The files are written and uploaded in finetune_files.c; the job at the
 * provider (create, poll, cancel, finish) is finetune_remote.c.
 */
#include "llmext.h"

#include "queue/finetune.h"

#include "call/call.h"
#include "call/failure.h"
#include "core/retry.h"
#include "queue/finetune_private.h"
#include "queue/queue_private.h"
#include "queue/remote.h"
#include "store/caller.h"
#include "store/catalog.h"
#include "store/spi_check.h"
#include "store/version.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include <math.h>

int			llm_finetune_poll_interval_ms = 30000;
int			llm_finetune_poll_max_ms = 600000;
bool		llm_finetune_crash_after_create = false;

#define CHECK_MS 1000			/* longest time between two looks for due jobs */

static TimestampTz next_check = 0;
static bool (*stop_requested) (void) = NULL;

/* ---------- state changes ---------- */

/* Sets the job failed with error (unless it ended meanwhile). */
void
ft_fail_job(FtJob *job, const char *error)
{
	Datum		args[2] = {Int64GetDatum(job->id), llm_tx_text(error)};

	llm_tx_begin("llmext: failing a fine-tuning job");
	llm_tx_exec("UPDATE llm.finetune_jobs SET state = 'failed', error = $2, finished_at = now(),"
			"       updated_at = now()"
			" WHERE id = $1 AND state NOT IN ('succeeded', 'failed', 'cancelled')",
			"it", args, NULL);
	llm_tx_end();
	ft_forget_interval(job->id);
	ereport(LOG,
			(errmsg("llmext fine-tuning job %lld failed: %s", (long long) job->id, error)));
}

/*
 * A failed attempt: tried again later with back-off while attempts remain
 * and retry allows it, else the job fails.
 */
void
ft_attempt_failed(FtJob *job, bool retry, double retry_after_ms, const char *error)
{
	double		delay_ms;
	Datum		args[2];

	if (!retry || job->attempts + 1 >= LLM_FINETUNE_MAX_ATTEMPTS)
	{
		ft_fail_job(job, retry ? psprintf("%s (after %d attempts)", error, job->attempts + 1) : error);
		return;
	}
	delay_ms = Max(llm_retry_delay_ms(job->attempts, retry_after_ms, pg_prng_double(&pg_global_prng_state)),
				   Min((double) llm_finetune_poll_interval_ms * pow(2, job->attempts),
					   (double) Max(llm_finetune_poll_max_ms, llm_finetune_poll_interval_ms)));
	args[0] = Int64GetDatum(job->id);
	args[1] = Float8GetDatum(delay_ms);
	llm_tx_begin("llmext: deferring a fine-tuning job");
	llm_tx_exec("UPDATE llm.finetune_jobs SET attempts = attempts + 1, updated_at = now(),"
			"       next_poll_at = now() + $2 * interval '1 millisecond'"
			" WHERE id = $1", "if", args, NULL);
	llm_tx_end();
	ereport(LOG,
			(errmsg("llmext fine-tuning job %lld: %s; trying again in %.0f ms",
					(long long) job->id, error, delay_ms)));
}

/* ---------- the provider ---------- */

/*
 * Looks up the base model and loads its provider's key as the submitter
 * (target and key checks included), and builds the header lines.
 */
static void
connect_model(FtJob *job)
{
	LlmActing	acting;
	MemoryContext caller = CurrentMemoryContext;

	llm_queue_begin("llmext: looking up a fine-tuning job's model");
	/* the model, the key and the headers outlive the transaction */
	MemoryContextSwitchTo(caller);
	llm_act_for(&acting, job->submitter, job->login, 0);
	job->model = llm_lookup_model(job->base_model);
	if (job->model->routine->files_path == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("provider \"%s\" of kind \"%s\" does not support fine-tuning",
						job->model->provider, job->model->provider_kind)));
	llm_remote_auth(job->model, &job->auth);
	llm_act_done(&acting);
	llm_queue_end();
	MemoryContextSwitchTo(caller);
}

/* Did the request succeed?  If not, the attempt failed (or the job did). */
bool
ft_check_response(FtJob *job, const LlmHttpResponse *resp, const char *what)
{
	LlmRemoteError error;

	if (llm_remote_ok(job->model, resp, job->auth.secret, what, &error))
		return true;
	ft_attempt_failed(job, error.retry, error.retry_after_ms, error.message);
	return false;
}

/* The body of a successful response, in the server's encoding. */
char *
ft_body_of(const LlmHttpResponse *resp)
{
	return llm_remote_body(resp);
}

bool
ft_stop_requested(void)
{
	return stop_requested();
}

/* ---------- the turn ---------- */

static void
run_job(FtJob *job)
{
	Datum		args[1] = {Int64GetDatum(job->id)};
	int64		n;

	if (!OidIsValid(job->submitter))
	{
		ft_fail_job(job, "the role that submitted the job no longer exists");
		return;
	}
	connect_model(job);
	if (strcmp(job->state, "cancelling") == 0)
	{
		ft_cancel_job(job);
		return;
	}
	if (strcmp(job->state, "queued") == 0 || strcmp(job->state, "uploading") == 0)
	{
		llm_tx_begin("llmext: starting a fine-tuning job");
		n = llm_tx_exec("UPDATE llm.finetune_jobs SET state = 'uploading', updated_at = now(),"
					"       started_at = coalesce(started_at, now())"
					" WHERE id = $1 AND state IN ('queued', 'uploading')", "i", args, NULL);
		llm_tx_end();
		if (n == 0)
			return;				/* cancelled meanwhile: the next turn sees it */
		if (job->training_file_id == NULL &&
			!ft_upload_set(job, job->training_set, job->training_version, false, true,
						   "training_file_id", &job->training_file_id))
			return;
		if (job->validation_set != NULL && job->validation_file_id == NULL)
		{
			/* the training set itself: its held-out rows validate */
			bool		same = strcmp(job->validation_set, job->training_set) == 0 &&
				job->validation_version == job->training_version;

			if (!ft_upload_set(job, job->validation_set, job->validation_version, same, !same,
							   "validation_file_id", &job->validation_file_id))
				return;
		}
		/* committed before the create is sent: see ft_create_job */
		llm_tx_begin("llmext: creating a fine-tuning job");
		n = llm_tx_exec("UPDATE llm.finetune_jobs SET state = 'creating', updated_at = now()"
					" WHERE id = $1 AND state = 'uploading'", "i", args, NULL);
		llm_tx_end();
		if (n == 0)
			return;
		ft_create_job(job);
		return;
	}
	if (strcmp(job->state, "creating") == 0)
	{
		if (job->provider_job_id != NULL)
			ft_record_created(job, job->provider_job_id);
		else
			ft_create_job(job);
		return;
	}
	if (strcmp(job->state, "running") == 0)
		ft_poll_job(job);
}

/* The due jobs, at most LLM_FINETUNE_JOBS_PER_TURN, in the caller's context. */
static List *
due_jobs(void)
{
	MemoryContext caller = CurrentMemoryContext;
	List	   *jobs = NIL;

	llm_queue_begin("llmext: looking for due fine-tuning jobs");
	if (!llm_schema_is_current())
	{
		llm_queue_end();
		MemoryContextSwitchTo(caller);
		return NIL;
	}
	llm_spi_connect();
	llm_spi_check(SPI_execute(psprintf(
									   "SELECT id, state, submitted_by, login_role, base_model, training_set,"
									   "       training_version, validation_set, validation_version, method,"
									   "       hyperparameters::text AS hyperparameters, suffix, seed,"
									   "       training_file_id, validation_file_id, provider_job_id,"
									   "       provider_status, attempts"
									   "  FROM llm.finetune_jobs"
									   " WHERE state IN ('queued', 'uploading', 'creating', 'running', 'cancelling')"
									   "   AND next_poll_at <= now()"
									   " ORDER BY next_poll_at LIMIT %d", LLM_FINETUNE_JOBS_PER_TURN),
							  true, 0), "finding due fine-tuning jobs");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);
		FtJob	   *job = palloc0(sizeof(FtJob));
		char	   *value;

		job->id = strtoll(llm_tx_column(i, "id"), NULL, 10);
		job->tag = psprintf(INT64_FORMAT, job->id);
		job->state = pstrdup(llm_tx_column(i, "state"));
		job->submitter = get_role_oid(llm_tx_column(i, "submitted_by"), true);
		job->login = get_role_oid(llm_tx_column(i, "login_role"), true);
		job->base_model = pstrdup(llm_tx_column(i, "base_model"));
		job->training_set = pstrdup(llm_tx_column(i, "training_set"));
		job->training_version = atoi(llm_tx_column(i, "training_version"));
		if ((value = llm_tx_column(i, "validation_set")) != NULL)
		{
			job->validation_set = pstrdup(value);
			job->validation_version = atoi(llm_tx_column(i, "validation_version"));
		}
		job->method = pstrdup(llm_tx_column(i, "method"));
		job->hyperparameters = cJSON_Parse(llm_tx_column(i, "hyperparameters"));
		if ((value = llm_tx_column(i, "suffix")) != NULL)
			job->suffix = pstrdup(value);
		if ((value = llm_tx_column(i, "seed")) != NULL)
		{
			job->has_seed = true;
			job->seed = atoi(value);
		}
#define OPTIONAL(field) \
		if ((value = llm_tx_column(i, #field)) != NULL) \
			job->field = pstrdup(value)
		OPTIONAL(training_file_id);
		OPTIONAL(validation_file_id);
		OPTIONAL(provider_job_id);
		OPTIONAL(provider_status);
#undef OPTIONAL
		job->attempts = atoi(llm_tx_column(i, "attempts"));
		jobs = lappend(jobs, job);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	llm_queue_end();
	MemoryContextSwitchTo(caller);
	return jobs;
}

void
llm_finetune_run(bool (*stop) (void))
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext context;
	List	   *jobs;
	ListCell   *cell;

	stop_requested = stop;
	if (GetCurrentTimestamp() < next_check)
		return;
	next_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											 Min(CHECK_MS, llm_finetune_poll_interval_ms));
	context = AllocSetContextCreate(caller, "llmext fine-tuning", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		jobs = due_jobs();
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

	foreach(cell, jobs)
	{
		FtJob	   *job = lfirst(cell);
		MemoryContext job_context = AllocSetContextCreate(context, "llmext fine-tuning job",
														  ALLOCSET_DEFAULT_SIZES);

		if (stop_requested())
			break;
		MemoryContextSwitchTo(job_context);
		PG_TRY();
		{
			run_job(job);
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(job_context);
			edata = CopyErrorData();
			FlushErrorState();
			ft_close_open_file();
			AbortCurrentTransaction();	/* nothing to do when none is open */
			MemoryContextSwitchTo(job_context);
			llm_act_reset();
			pgstat_report_activity(STATE_IDLE, NULL);
			/* an ERROR of ours (a missing key, a host not allowed, ...) is an attempt */
			PG_TRY();
			{
				/* ... unless the snapshot itself is wrong: that will not mend */
				ft_attempt_failed(job, edata->sqlerrcode != ERRCODE_DATA_CORRUPTED, -1,
								  edata->detail ? psprintf("%s: %s", edata->message, edata->detail)
								  : edata->message);
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
		ft_close_open_file();
		llm_remote_forget(&job->auth);
		MemoryContextSwitchTo(context);
		MemoryContextDelete(job_context);
	}
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(context);
}

long
llm_finetune_wait_ms(long longest_ms)
{
	TimestampTz now = GetCurrentTimestamp();

	if (next_check <= now)
		return 1;
	return Min(longest_ms, TimestampDifferenceMilliseconds(now, next_check) + 1);
}
