/*
 * finetune_remote.c — a fine-tuning job at the provider: created (after a
 * look-up by its metadata, so a paid job is never created twice), polled
 * with back-off (its events and checkpoints stored), cancelled, and
 * finished here (the model registered and the ledger row written).
 */
#include "llmext.h"

#include "queue/finetune.h"

#include "call/call.h"
#include "core/json_checks.h"
#include "core/redact.h"
#include "queue/finetune_private.h"
#include "queue/remote.h"
#include "store/caller.h"
#include "store/ledger.h"

#include "access/xlog.h"
#include "miscadmin.h"
#include "utils/hsearch.h"

#include <math.h>
#include <signal.h>

#define MAX_PAGES 10			/* pages of events (or jobs) read per poll */
#define MAX_ERROR_BYTES 2000

typedef struct PollInterval
{
	int64		id;
	int			ms;
} PollInterval;

static HTAB *intervals = NULL;

/* ---------- poll intervals and small helpers ---------- */

static int
current_interval(int64 id)
{
	PollInterval *entry;
	bool		found;

	if (intervals == NULL)
	{
		HASHCTL		ctl = {.keysize = sizeof(int64),.entrysize = sizeof(PollInterval)};

		intervals = hash_create("llmext fine-tuning poll intervals", 64, &ctl,
								HASH_ELEM | HASH_BLOBS);
	}
	entry = hash_search(intervals, &id, HASH_ENTER, &found);
	if (!found)
		entry->ms = llm_finetune_poll_interval_ms;
	return entry->ms;
}

/* The wait before the next poll: the same base after news, doubled after none. */
static int
next_interval(int64 id, bool news)
{
	PollInterval *entry;
	int			ms = current_interval(id);

	entry = hash_search(intervals, &id, HASH_FIND, NULL);
	if (news)
		entry->ms = llm_finetune_poll_interval_ms;
	else
		entry->ms = (int) Min((double) ms * 2, (double) Max(llm_finetune_poll_max_ms,
															 llm_finetune_poll_interval_ms));
	return news ? llm_finetune_poll_interval_ms : ms;
}

/* The job ended (or failed): its wait is forgotten. */
void
ft_forget_interval(int64 id)
{
	if (intervals != NULL)
		hash_search(intervals, &id, HASH_REMOVE, NULL);
}

/* A provider's text, cut and with the key masked, in the server's encoding. */
static char *
provider_text(FtJob *job, const char *text)
{
	if (text == NULL)
		return NULL;
	return llm_redact_cut(text, strlen(text), job->auth.secret, MAX_ERROR_BYTES, false);
}

/* A request to path below base_url: GET, or POST of body (JSON). */
static bool
request(FtJob *job, const char *path, const char *body, LlmHttpResponse *resp)
{
	return llm_remote_request(job->model, &job->auth, path, body, ft_stop_requested, resp);
}

/* ---------- jobs at the provider ---------- */

static char *
job_path(FtJob *job, const char *suffix)
{
	return psprintf("%s/%s%s", job->model->routine->jobs_path, job->provider_job_id,
					suffix ? suffix : "");
}

/*
 * Looks for a job created for this one (its metadata name this job and
 * this database).  *found_id is set when found; false when the attempt
 * failed.
 */
static bool
find_created(FtJob *job, char **found_id)
{
	char	   *after = NULL;
	char	   *mine = llm_remote_database_tag();

	*found_id = NULL;
	for (int page = 0; page < MAX_PAGES; page++)
	{
		LlmHttpResponse resp;
		LlmFinetuneList list;
		char		err[256];
		char	   *path = psprintf("%s%s", job->model->routine->jobs_path,
									job->model->routine->finetune_list_query(job->tag, after));
		char	   *body;

		if (!request(job, path, NULL, &resp))
			return false;
		if (!ft_check_response(job, &resp, "looking up a fine-tuning job"))
			return false;
		body = ft_body_of(&resp);
		if (!job->model->routine->parse_finetune_list(body, strlen(body), LLM_FT_LIST_JOBS,
													  &list, err, sizeof(err)))
		{
			ft_attempt_failed(job, true, -1, psprintf("looking up a fine-tuning job: %s", err));
			return false;
		}
		/* the server may ignore the filter: the metadata are checked here */
		for (int i = 0; i < list.n; i++)
			if (list.jobs[i].job_tag && strcmp(list.jobs[i].job_tag, job->tag) == 0 &&
				list.jobs[i].database_tag && strcmp(list.jobs[i].database_tag, mine) == 0)
			{
				*found_id = pstrdup(list.jobs[i].id);
				return true;
			}
		if (!list.has_more || list.last_id == NULL)
			return true;
		after = pstrdup(list.last_id);
	}
	return true;
}

/* Records the provider's job id; the job runs (or is being cancelled). */
void
ft_record_created(FtJob *job, const char *provider_id)
{
	Datum		args[3] = {Int64GetDatum(job->id), llm_tx_text(provider_id),
	Float8GetDatum((double) llm_finetune_poll_interval_ms)};

	llm_tx_begin("llmext: recording a fine-tuning job");
	llm_tx_exec("UPDATE llm.finetune_jobs"
			"   SET provider_job_id = $2, attempts = 0, updated_at = now(),"
			"       state = CASE WHEN state = 'creating' THEN 'running' ELSE state END,"
			"       next_poll_at = now() + $3 * interval '1 millisecond'"
			" WHERE id = $1 AND state IN ('creating', 'cancelling')"
			"   AND (provider_job_id IS NULL OR provider_job_id = $2)",
			"itf", args, NULL);
	llm_tx_end();
	job->provider_job_id = pstrdup(provider_id);
	current_interval(job->id);
}

void
ft_create_job(FtJob *job)
{
	LlmFinetuneSpec spec = {0};
	LlmHttpResponse resp;
	LlmFinetuneJob created;
	char		err[256];
	char	   *found;
	char	   *body;

	/* the create may have reached the provider before: look first */
	if (!find_created(job, &found))
		return;
	if (found != NULL)
	{
		ereport(LOG,
				(errmsg("llmext fine-tuning job %lld: found %s at the provider, created before; not creating another",
						(long long) job->id, found)));
		ft_record_created(job, found);
		return;
	}
	spec.remote_model = job->model->remote_model;
	spec.training_file = job->training_file_id;
	spec.validation_file = job->validation_file_id;
	spec.method = job->method;
	spec.hyperparameters = job->hyperparameters;
	spec.suffix = job->suffix;
	spec.has_seed = job->has_seed;
	spec.seed = job->seed;
	spec.job_tag = job->tag;
	spec.database_tag = llm_remote_database_tag();
	body = job->model->routine->finetune_request(&spec);
	if (!request(job, job->model->routine->jobs_path, body, &resp))
		return;
	if (!ft_check_response(job, &resp, "creating a fine-tuning job"))
		return;
	body = ft_body_of(&resp);
	if (!job->model->routine->parse_finetune_job(body, strlen(body), &created, err, sizeof(err)))
	{
		/* it may exist all the same: the next attempt looks it up first */
		ft_attempt_failed(job, true, -1, psprintf("creating a fine-tuning job: %s", err));
		return;
	}
	if (llm_finetune_crash_after_create)
	{
		ereport(LOG,
				(errmsg("llmext.finetune_crash_after_create: the worker kills itself after the provider accepted job %s",
						created.id)));
		kill(MyProcPid, SIGKILL);
		pg_usleep(10 * 1000 * 1000L);	/* not reached */
	}
	ft_record_created(job, created.id);
}

/* Stores a page of events; how many were new. */
static int
store_events(FtJob *job, const LlmFinetuneList *list)
{
	int			added = 0;

	for (int i = 0; i < list->n; i++)
	{
		const LlmFinetuneEvent *e = &list->events[i];
		char	   *data = e->data && !llm_json_has_nul_escape(e->data, strlen(e->data))
			? provider_text(job, e->data) : NULL;
		Datum		args[7] = {Int64GetDatum(job->id), llm_tx_text(e->id), Float8GetDatum(e->created_at),
			llm_tx_text(e->level), llm_tx_text(e->type), llm_tx_text(provider_text(job, e->message)),
		llm_tx_text(data)};
		bool		nulls[7] = {false, false, isnan(e->created_at), !e->level, !e->type, !e->message,
		data == NULL || strlen(data) >= MAX_ERROR_BYTES};

		added += (int) llm_tx_exec("INSERT INTO llm.finetune_events (job, event_id, created_at, level, type, message, data)"
							   " VALUES ($1, $2, coalesce(to_timestamp($3), now()), $4, $5, $6, $7::jsonb)"
							   " ON CONFLICT (job, event_id) DO NOTHING", "itfttt" "t", args, nulls);
	}
	return added;
}

static int
store_checkpoints(FtJob *job, const LlmFinetuneList *list)
{
	int			added = 0;

	for (int i = 0; i < list->n; i++)
	{
		const LlmFinetuneCheckpoint *c = &list->checkpoints[i];
		Datum		args[10] = {Int64GetDatum(job->id), llm_tx_text(c->id), Float8GetDatum(c->created_at),
			Int32GetDatum((int32) Min(c->step, PG_INT32_MAX)), llm_tx_text(c->model_checkpoint),
			Float8GetDatum(c->train_loss), Float8GetDatum(c->valid_loss),
			Float8GetDatum(c->train_accuracy), Float8GetDatum(c->valid_accuracy),
		llm_tx_text(c->metrics)};
		bool		nulls[10] = {false, false, isnan(c->created_at), c->step < 0, !c->model_checkpoint,
			isnan(c->train_loss), isnan(c->valid_loss), isnan(c->train_accuracy),
		isnan(c->valid_accuracy), !c->metrics || llm_json_has_nul_escape(c->metrics, strlen(c->metrics))};

		added += (int) llm_tx_exec("INSERT INTO llm.finetune_checkpoints AS c (job, checkpoint_id, created_at, step,"
			 "       model_checkpoint, train_loss, valid_loss, train_mean_token_accuracy,"
			 "       valid_mean_token_accuracy, metrics)"
			 " VALUES ($1, $2, coalesce(to_timestamp($3), now()), $4, $5, $6, $7, $8, $9, $10::jsonb)"
			 " ON CONFLICT (job, checkpoint_id) DO UPDATE"
			 "   SET step = excluded.step, model_checkpoint = excluded.model_checkpoint,"
			 "       train_loss = excluded.train_loss, valid_loss = excluded.valid_loss,"
			 "       train_mean_token_accuracy = excluded.train_mean_token_accuracy,"
			 "       valid_mean_token_accuracy = excluded.valid_mean_token_accuracy,"
			 "       metrics = excluded.metrics"
			 " WHERE c.metrics IS DISTINCT FROM excluded.metrics",
			 "itfntffff" "t", args, nulls);
	}
	return added;
}

/*
 * Reads the job's events (newest first, page after page until a page holds
 * one already stored) and checkpoints, and stores them.  How many rows
 * were new or changed; -1 when the attempt failed.
 */
static int
fetch_progress(FtJob *job)
{
	int			news = 0;
	char	   *after = NULL;

	for (int kind = LLM_FT_LIST_EVENTS; kind <= LLM_FT_LIST_CHECKPOINTS; kind++)
	{
		after = NULL;
		for (int page = 0; page < MAX_PAGES; page++)
		{
			LlmHttpResponse resp;
			LlmFinetuneList list;
			char		err[256];
			char	   *path = job_path(job, psprintf("%s?limit=100%s%s",
													  kind == LLM_FT_LIST_EVENTS ? "/events" : "/checkpoints",
													  after ? "&after=" : "", after ? after : ""));
			char	   *body;
			int			added;

			if (!request(job, path, NULL, &resp) ||
				!ft_check_response(job, &resp, "reading a fine-tuning job's progress"))
				return -1;
			body = ft_body_of(&resp);
			if (!job->model->routine->parse_finetune_list(body, strlen(body), kind, &list,
														  err, sizeof(err)))
			{
				ft_attempt_failed(job, true, -1,
								  psprintf("reading a fine-tuning job's progress: %s", err));
				return -1;
			}
			llm_tx_begin("llmext: storing a fine-tuning job's progress");
			added = kind == LLM_FT_LIST_EVENTS ? store_events(job, &list)
				: store_checkpoints(job, &list);
			llm_tx_end();
			news += added;
			if (!list.has_more || list.last_id == NULL || added < list.n)
				break;
			after = pstrdup(list.last_id);
		}
	}
	return news;
}

/* Writes a training ledger row as the job's submitter, in the current transaction. */
static void
record_training_cost(FtJob *job, const char *model, int64 tokens, double cost, const char *error)
{
	LlmLedgerRow row = {0};
	LlmActing	acting;
	char	   *json;

	row.source = "finetune";
	row.model = model;
	row.remote_model = job->model->remote_model;
	row.provider = job->model->provider;
	row.http_status = 200;
	row.error = error;
	row.usage.present = true;
	row.usage.input_tokens = tokens;
	row.cost_usd = cost;
	row.request_id = job->provider_job_id;
	llm_act_for(&acting, job->submitter, job->login, 0);
	json = llm_ledger_row_json(&row);
	llm_act_done(&acting);
	/* with the job's own change: recorded exactly once, or not at all */
	llm_persist(psprintf("[%s]", json));
}

/* The job ended at the provider: the final state here. */
static void
finish(FtJob *job, const LlmFinetuneJob *remote)
{
	Datum		args[6];
	bool		nulls[6] = {0};
	int64		tokens = remote->trained_tokens;
	char	   *error = NULL;

	if (strcmp(remote->status, "succeeded") == 0 && remote->fine_tuned_model == NULL)
	{
		ft_fail_job(job, "the provider reported success without a fine-tuned model");
		return;
	}
	args[0] = Int64GetDatum(job->id);
	args[1] = llm_tx_text(remote->status);
	args[2] = Int64GetDatum(tokens);
	nulls[2] = tokens < 0;
	args[3] = llm_tx_text(remote->fine_tuned_model);
	nulls[3] = remote->fine_tuned_model == NULL;

	llm_tx_begin("llmext: finishing a fine-tuning job");
	llm_tx_exec("UPDATE llm.finetune_jobs SET provider_status = $2, trained_tokens = $3,"
			"       fine_tuned_model = $4, attempts = 0, updated_at = now()"
			" WHERE id = $1", "itit", args, nulls);
	if (strcmp(remote->status, "succeeded") == 0)
	{
		char	   *model;
		char	   *cost;

		llm_tx_exec("SELECT llm._finetune_register($1, $2, $3) AS model", "iti",
				(Datum[]) {args[0], args[3], args[2]}, (bool[]) {false, false, tokens < 0});
		model = llm_tx_column(0, "model");
		llm_tx_exec("SELECT cost_usd FROM llm.finetune_jobs WHERE id = $1", "i", args, NULL);
		cost = llm_tx_column(0, "cost_usd");
		record_training_cost(job, job->base_model, Max(tokens, 0),
							 cost ? strtod(cost, NULL) : 0, NULL);
		ereport(LOG,
				(errmsg("llmext fine-tuning job %lld succeeded: model \"%s\" registered",
						(long long) job->id, model ? model : "?")));
	}
	else
	{
		bool		cancelled = strcmp(remote->status, "cancelled") == 0;
		int64		ended;

		if (!cancelled)
		{
			const char *message = remote->error_message ? remote->error_message : "no reason given";

			error = remote->error_code
				? psprintf("%s (code %s)", provider_text(job, message), provider_text(job, remote->error_code))
				: provider_text(job, message);
		}
		args[1] = llm_tx_text(cancelled ? "cancelled" : "failed");
		args[4] = llm_tx_text(error);
		nulls[4] = error == NULL;
		ended = llm_tx_exec("UPDATE llm.finetune_jobs SET state = $2, error = coalesce($5, error),"
						"       finished_at = now(), updated_at = now()"
						" WHERE id = $1 AND state NOT IN ('succeeded', 'failed', 'cancelled')",
						"itit" "t", args, nulls);
		/* tokens trained before a cancel or failure are billed by some providers */
		if (tokens > 0 && ended > 0)
		{
			int64		priced = llm_tx_exec("SELECT coalesce(training_price, 0) * $2 / 1000000.0 AS cost"
										 "  FROM llm.models WHERE name = $1", "ti",
										 (Datum[]) {llm_tx_text(job->base_model), Int64GetDatum(tokens)}, NULL);

			record_training_cost(job, job->base_model, tokens,
								 priced ? strtod(llm_tx_column(0, "cost"), NULL) : 0,
								 cancelled ? "cancelled" : error);
		}
	}
	llm_tx_end();
	ft_forget_interval(job->id);
}

static bool
is_final_status(const char *status)
{
	return status != NULL && (strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 ||
							  strcmp(status, "cancelled") == 0);
}

/* GETs the job; false when the attempt failed. */
static bool
get_remote(FtJob *job, LlmFinetuneJob *remote)
{
	LlmHttpResponse resp;
	char		err[256];
	char	   *body;

	if (!request(job, job_path(job, NULL), NULL, &resp) ||
		!ft_check_response(job, &resp, "polling a fine-tuning job"))
		return false;
	body = ft_body_of(&resp);
	if (!job->model->routine->parse_finetune_job(body, strlen(body), remote, err, sizeof(err)))
	{
		ft_attempt_failed(job, true, -1, psprintf("polling a fine-tuning job: %s", err));
		return false;
	}
	return true;
}

void
ft_poll_job(FtJob *job)
{
	LlmFinetuneJob remote;
	int			news;
	bool		changed;
	Datum		args[3];
	bool		nulls[3] = {0};

	if (!get_remote(job, &remote))
		return;
	if ((news = fetch_progress(job)) < 0)
		return;
	if (is_final_status(remote.status))
	{
		finish(job, &remote);
		return;
	}
	changed = remote.status == NULL || job->provider_status == NULL ||
		strcmp(remote.status, job->provider_status) != 0;
	args[0] = Int64GetDatum(job->id);
	args[1] = llm_tx_text(remote.status);
	nulls[1] = remote.status == NULL;
	args[2] = Float8GetDatum((double) next_interval(job->id, changed || news > 0));
	llm_tx_begin("llmext: recording a fine-tuning job's status");
	/* an unknown status is kept as it is, and the job polled on */
	llm_tx_exec("UPDATE llm.finetune_jobs SET provider_status = $2, attempts = 0, updated_at = now(),"
			"       next_poll_at = now() + $3 * interval '1 millisecond'"
			" WHERE id = $1 AND state = 'running'", "itf", args, nulls);
	llm_tx_end();
}

void
ft_cancel_job(FtJob *job)
{
	LlmFinetuneJob remote;
	LlmHttpResponse resp;
	char		err[256];
	char	   *body;

	if (job->provider_job_id == NULL)
	{
		char	   *found;

		/* a create may have reached the provider: cancel that job too */
		if (!find_created(job, &found))
			return;
		if (found == NULL)
		{
			Datum		args[1] = {Int64GetDatum(job->id)};

			llm_tx_begin("llmext: cancelling a fine-tuning job");
			llm_tx_exec("UPDATE llm.finetune_jobs SET state = 'cancelled', finished_at = now(),"
					"       updated_at = now() WHERE id = $1 AND state = 'cancelling'",
					"i", args, NULL);
			llm_tx_end();
			ft_forget_interval(job->id);
			return;
		}
		ft_record_created(job, found);
	}
	/* it may have ended meanwhile: then that is its end, a success included */
	if (!get_remote(job, &remote))
		return;
	if (is_final_status(remote.status))
	{
		(void) fetch_progress(job);
		finish(job, &remote);
		return;
	}
	if (!request(job, job_path(job, "/cancel"), "{}", &resp) ||
		!ft_check_response(job, &resp, "cancelling a fine-tuning job"))
		return;
	body = ft_body_of(&resp);
	if (!job->model->routine->parse_finetune_job(body, strlen(body), &remote, err, sizeof(err)))
	{
		ft_attempt_failed(job, true, -1, psprintf("cancelling a fine-tuning job: %s", err));
		return;
	}
	(void) fetch_progress(job);
	/* the provider may take a moment: the job is cancelled here all the same */
	if (!is_final_status(remote.status))
		remote.status = "cancelled";
	finish(job, &remote);
}
