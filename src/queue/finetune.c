/*
 * finetune.c — the worker runs fine-tuning jobs (llm.finetune_jobs).
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
 */
#include "llmext.h"

#include "queue/finetune.h"

#include "call/call.h"
#include "call/failure.h"
#include "core/json_checks.h"
#include "core/redact.h"
#include "core/retry.h"
#include "queue/queue_private.h"
#include "store/caller.h"
#include "store/catalog.h"
#include "store/ledger.h"
#include "store/spi_check.h"
#include "store/version.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type_d.h"
#include "common/cryptohash.h"
#include "common/pg_prng.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include <math.h>
#include <signal.h>

int			llm_finetune_poll_interval_ms = 30000;
int			llm_finetune_poll_max_ms = 600000;
bool		llm_finetune_crash_after_create = false;

#define CHECK_MS 1000			/* longest time between two looks for due jobs */
#define WRITE_CHUNK (1024 * 1024)	/* bytes of lines written at once */
#define FETCH_ROWS 1000			/* lines fetched from the cursor at once */
#define MAX_PAGES 10			/* pages of events (or jobs) read per poll */
#define MAX_ERROR_BYTES 2000

typedef struct FtJob
{
	int64		id;
	char	   *state;
	Oid			submitter;
	Oid			login;
	char	   *base_model;
	char	   *training_set;
	int			training_version;
	char	   *validation_set;	/* NULL: none */
	int			validation_version;
	char	   *method;
	cJSON	   *hyperparameters;
	char	   *suffix;
	bool		has_seed;
	int			seed;
	char	   *training_file_id;
	char	   *validation_file_id;
	char	   *provider_job_id;
	char	   *provider_status;
	int			attempts;
	char	   *tag;			/* LLM_FINETUNE_META_JOB: the id as text */
	/* set by connect_model */
	LlmModel   *model;
	const char **headers;
	int			nheaders;
	const char **json_headers;
	int			njson_headers;
	char	   *secret;
} FtJob;

typedef struct PollInterval
{
	int64		id;
	int			ms;
} PollInterval;

static TimestampTz next_check = 0;
static HTAB *intervals = NULL;
static File open_file = -1;		/* the temporary file being written or sent */
static bool (*stop_requested) (void) = NULL;

/* ---------- transactions and small helpers ---------- */

/*
 * A short transaction with SPI connected.  What is palloc'd in it is SPI's,
 * gone at end(), unless copied with keep(); end() returns to the memory
 * context current at begin() (a commit would leave TopMemoryContext).
 */
static MemoryContext outer = NULL;

static void
begin(const char *activity)
{
	outer = CurrentMemoryContext;
	llm_queue_begin(activity);
	MemoryContextSwitchTo(outer);
	llm_spi_connect();
}

static void
end(void)
{
	SPI_finish();
	llm_queue_end();
	MemoryContextSwitchTo(outer);
}

static char *
keep(const char *s)
{
	return s ? MemoryContextStrdup(outer, s) : NULL;
}

/*
 * Runs sql with args (types by the letter: i int8, t text, n int4, f float8,
 * b bool); the rows it processed.
 */
static int64
exec(const char *sql, const char *types, Datum *values, const bool *isnull)
{
	int			n = strlen(types);
	Oid			oids[16];
	char		nulls[16];

	for (int i = 0; i < n; i++)
	{
		oids[i] = types[i] == 'i' ? INT8OID : types[i] == 't' ? TEXTOID :
			types[i] == 'n' ? INT4OID : types[i] == 'f' ? FLOAT8OID : BOOLOID;
		nulls[i] = isnull && isnull[i] ? 'n' : ' ';
	}
	llm_spi_check(SPI_execute_with_args(sql, n, oids, values, nulls, false, 0), sql);
	return (int64) SPI_processed;
}

static Datum
text_datum(const char *s)
{
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

static char *
column(int row, const char *name)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
						SPI_fnumber(SPI_tuptable->tupdesc, name));
}

/* "<system identifier>/<database oid>": which database a job belongs to */
static char *
database_tag(void)
{
	return psprintf(UINT64_FORMAT "/%u", GetSystemIdentifier(), MyDatabaseId);
}

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

static void
forget_interval(int64 id)
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
	return llm_redact_cut(text, strlen(text), job->secret, MAX_ERROR_BYTES, false);
}

/* ---------- state changes ---------- */

/* Sets the job failed with error (unless it ended meanwhile). */
static void
fail_job(FtJob *job, const char *error)
{
	Datum		args[2] = {Int64GetDatum(job->id), text_datum(error)};

	begin("llmext: failing a fine-tuning job");
	exec("UPDATE llm.finetune_jobs SET state = 'failed', error = $2, finished_at = now(),"
		 "       updated_at = now()"
		 " WHERE id = $1 AND state NOT IN ('succeeded', 'failed', 'cancelled')",
		 "it", args, NULL);
	end();
	forget_interval(job->id);
	ereport(LOG,
			(errmsg("llmext fine-tuning job %lld failed: %s", (long long) job->id, error)));
}

/*
 * A failed attempt: tried again later with back-off while attempts remain
 * and retry allows it, else the job fails.
 */
static void
attempt_failed(FtJob *job, bool retry, double retry_after_ms, const char *error)
{
	double		delay_ms;
	Datum		args[2];

	if (!retry || job->attempts + 1 >= LLM_FINETUNE_MAX_ATTEMPTS)
	{
		fail_job(job, retry ? psprintf("%s (after %d attempts)", error, job->attempts + 1) : error);
		return;
	}
	delay_ms = Max(llm_retry_delay_ms(job->attempts, retry_after_ms, pg_prng_double(&pg_global_prng_state)),
				   Min((double) llm_finetune_poll_interval_ms * pow(2, job->attempts),
					   (double) Max(llm_finetune_poll_max_ms, llm_finetune_poll_interval_ms)));
	args[0] = Int64GetDatum(job->id);
	args[1] = Float8GetDatum(delay_ms);
	begin("llmext: deferring a fine-tuning job");
	exec("UPDATE llm.finetune_jobs SET attempts = attempts + 1, updated_at = now(),"
		 "       next_poll_at = now() + $2 * interval '1 millisecond'"
		 " WHERE id = $1", "if", args, NULL);
	end();
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
	llm_load_key(job->model);
	job->secret = job->model->api_key ? pstrdup(job->model->api_key) : NULL;
	job->headers = llm_provider_headers(job->model, false, &job->nheaders);
	job->json_headers = llm_provider_headers(job->model, true, &job->njson_headers);
	llm_forget_key(job->model);
	llm_act_done(&acting);
	llm_queue_end();
	MemoryContextSwitchTo(caller);
}

static void
disconnect_model(FtJob *job)
{
	if (job->headers != NULL)
		llm_forget_headers(job->headers, job->nheaders, job->secret);
	if (job->json_headers != NULL)
		llm_forget_headers(job->json_headers, job->njson_headers, job->secret);
	if (job->secret != NULL)
		explicit_bzero(job->secret, strlen(job->secret));
	job->headers = job->json_headers = NULL;
	job->secret = NULL;
}

/*
 * Sends one request and waits for it, with no transaction open.  The
 * transfer stops when the worker is asked to stop (false then).
 */
static bool
perform(LlmHttpRequest *req, LlmHttpResponse *resp)
{
	MemoryContext context = AllocSetContextCreate(CurrentMemoryContext,
												  "llmext fine-tuning transfer",
												  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(context);
	LlmEngine  *engine = llm_engine_create(context);
	bool		done = true;

	MemoryContextSwitchTo(old);
	llm_engine_add(engine, req, resp, resp);
	while (llm_engine_next_done(engine, 200) == NULL)
	{
		if (stop_requested())
		{
			llm_engine_cancel(engine, resp);
			done = false;
			break;
		}
	}
	/* the body was allocated in the caller's context: it survives this */
	MemoryContextDelete(context);
	return done;
}

/* A request to path below base_url: GET, or POST of body (JSON). */
static bool
request(FtJob *job, const char *path, const char *body, LlmHttpResponse *resp)
{
	LlmHttpRequest req = {0};

	req.url = llm_provider_url(job->model, path);
	req.get = body == NULL;
	req.body = body ? pg_server_to_any(body, strlen(body), PG_UTF8) : NULL;
	req.headers = body ? job->json_headers : job->headers;
	req.nheaders = body ? job->njson_headers : job->nheaders;
	req.connect_timeout_ms = llm_connect_timeout_ms;
	req.timeout_ms = llm_request_timeout_ms;
	req.max_response_bytes = (size_t) llm_effective_max_response_bytes();
	return perform(&req, resp);
}

/* Did the request succeed?  If not, the attempt failed (or the job did). */
static bool
check_response(FtJob *job, const LlmHttpResponse *resp, const char *what)
{
	LlmFailure *failure;
	LlmFailureKind kind;

	if (resp->outcome == LLM_HTTP_RESPONSE && resp->status >= 200 && resp->status < 300)
	{
		if (pg_verify_mbstr(PG_UTF8, resp->body, resp->body_len, true))
			return true;
		failure = llm_failure_of_response(job->model, "the body is not valid UTF-8",
										  resp, job->secret);
		attempt_failed(job, false, -1, psprintf("%s: %s", what, llm_failure_text(failure)));
		return false;
	}
	failure = llm_failure_of_transfer(job->model, resp, llm_request_timeout_ms, job->secret);
	kind = resp->outcome == LLM_HTTP_RESPONSE ? LLM_FAILED_HTTP :
		resp->outcome == LLM_HTTP_TIMEOUT ? LLM_FAILED_TIMEOUT :
		resp->outcome == LLM_HTTP_CONNECT_FAILED || resp->outcome == LLM_HTTP_FAILED
		? LLM_FAILED_CONNECTION : LLM_FAILED_OTHER;
	attempt_failed(job, llm_retryable(kind, resp->status, resp->retry_after_ms),
				   resp->retry_after_ms,
				   psprintf("%s: %s", what, llm_failure_text(failure)));
	return false;
}

/* The body of a successful response, in the server's encoding. */
static char *
body_of(const LlmHttpResponse *resp)
{
	return pg_any_to_server(resp->body, resp->body_len, PG_UTF8);
}

/* ---------- files ---------- */

static void
close_open_file(void)
{
	if (open_file >= 0)
	{
		FileClose(open_file);	/* a temporary file is deleted when closed */
		open_file = -1;
	}
}

/*
 * Writes the lines of a set to a temporary file (held_out picks the rows),
 * in ord order, each followed by "\n", converted to UTF-8.  With verify,
 * the bytes and SHA-256 must be the set's recorded ones.  Memory stays at
 * a chunk and a batch of rows whatever the set's size.  Returns the path;
 * the file is open_file.
 */
static char *
write_set_file(FtJob *job, const char *set, int version, bool held_out, bool verify,
			   int64 *written)
{
	Datum		args[3] = {text_datum(set), Int32GetDatum(version), BoolGetDatum(held_out)};
	Oid			types[3] = {TEXTOID, INT4OID, BOOLOID};
	Portal		portal;
	StringInfoData chunk;
	pg_cryptohash_ctx *sha;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char		hex[PG_SHA256_DIGEST_LENGTH * 2 + 1];
	off_t		offset = 0;
	char	   *path;
	MemoryContext rows_context;

	begin("llmext: writing a fine-tuning file");
	/* in the transaction: its resource owner frees the digest after an ERROR */
	sha = pg_cryptohash_create(PG_SHA256);
	if (sha == NULL || pg_cryptohash_init(sha) < 0)
		elog(ERROR, "could not start a SHA-256 digest");
	open_file = OpenTemporaryFile(true);	/* lives across transactions, until closed */
	path = keep(FilePathName(open_file));
	initStringInfo(&chunk);
	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT line FROM llm.training_examples"
									   " WHERE set_name = $1 AND set_version = $2 AND held_out = $3"
									   " ORDER BY ord",
									   3, types, args, NULL, true, 0);
	/*
	 * A line stored compressed or out of line is detoasted into a copy, and
	 * the conversion to UTF-8 may make another: they go with each batch,
	 * or a large set would be held in memory whole by the end.
	 */
	rows_context = AllocSetContextCreate(CurrentMemoryContext, "llmext fine-tuning file rows",
										 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		MemoryContext outer;

		SPI_cursor_fetch(portal, true, FETCH_ROWS);
		if (SPI_processed == 0)
			break;
		outer = MemoryContextSwitchTo(rows_context);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			text	   *line = DatumGetTextPP(SPI_getbinval(SPI_tuptable->vals[i],
															SPI_tuptable->tupdesc, 1, &isnull));
			char	   *utf8 = pg_server_to_any(VARDATA_ANY(line), VARSIZE_ANY_EXHDR(line), PG_UTF8);
			/* unconverted, it is the text's own bytes, with no NUL after them */
			int			len = utf8 == VARDATA_ANY(line) ? VARSIZE_ANY_EXHDR(line) : strlen(utf8);

			appendBinaryStringInfo(&chunk, utf8, len);
			appendStringInfoChar(&chunk, '\n');
			if (utf8 != VARDATA_ANY(line))
				pfree(utf8);
			if (chunk.len >= WRITE_CHUNK)
			{
				if (FileWrite(open_file, chunk.data, chunk.len, offset, PG_WAIT_EXTENSION) != chunk.len)
					ereport(ERROR, (errcode_for_file_access(),
									errmsg("could not write temporary file \"%s\": %m", path)));
				pg_cryptohash_update(sha, (uint8 *) chunk.data, chunk.len);
				offset += chunk.len;
				resetStringInfo(&chunk);
			}
		}
		MemoryContextSwitchTo(outer);
		MemoryContextReset(rows_context);
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextDelete(rows_context);
	SPI_cursor_close(portal);
	if (chunk.len > 0)
	{
		if (FileWrite(open_file, chunk.data, chunk.len, offset, PG_WAIT_EXTENSION) != chunk.len)
			ereport(ERROR, (errcode_for_file_access(),
							errmsg("could not write temporary file \"%s\": %m", path)));
		pg_cryptohash_update(sha, (uint8 *) chunk.data, chunk.len);
		offset += chunk.len;
	}
	pfree(chunk.data);
	if (pg_cryptohash_final(sha, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not finish a SHA-256 digest");
	pg_cryptohash_free(sha);
	hex_encode((char *) digest, sizeof(digest), hex);
	hex[sizeof(hex) - 1] = '\0';
	if (verify)
	{
		Datum		set_args[2] = {text_datum(set), Int32GetDatum(version)};

		exec("SELECT bytes, sha256 FROM llm.training_sets WHERE name = $1 AND version = $2",
			 "tn", set_args, NULL);
		if (SPI_processed != 1)
			ereport(ERROR,
					(errmsg("training set \"%s\" version %d does not exist", set, version)));
		if (strtoll(column(0, "bytes"), NULL, 10) != (long long) offset ||
			pg_strcasecmp(column(0, "sha256"), hex) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("the examples of training set \"%s\" version %d are not the snapshot recorded",
							set, version),
					 errdetail("The file has %lld bytes and SHA-256 %s; the set records %s bytes and %s.",
							   (long long) offset, hex, column(0, "bytes"), column(0, "sha256"))));
	}
	if (offset == 0)
		ereport(ERROR,
				(errmsg("training set \"%s\" version %d has no examples for this file", set, version)));
	end();
	*written = offset;
	return path;
}

/* Uploads the file at path; its id, or NULL when the attempt failed. */
static char *
upload(FtJob *job, const char *path, const char *filename)
{
	LlmHttpRequest req = {0};
	LlmHttpResponse resp;
	const char *fields[2] = {"purpose", job->model->routine->files_purpose};
	char		err[256];
	char	   *id;
	char	   *body;

	req.url = llm_provider_url(job->model, job->model->routine->files_path);
	req.headers = job->headers;
	req.nheaders = job->nheaders;
	req.connect_timeout_ms = llm_connect_timeout_ms;
	req.timeout_ms = 0;			/* a large file takes its time ... */
	req.stall_timeout_s = Max(llm_request_timeout_ms / 1000, 1);	/* ... but never stalls */
	req.max_response_bytes = (size_t) llm_effective_max_response_bytes();
	req.upload_path = path;
	req.upload_field = "file";
	req.upload_filename = filename;
	req.form_fields = fields;
	req.nform_fields = 1;
	if (!perform(&req, &resp))
		return NULL;
	if (!check_response(job, &resp, "uploading a fine-tuning file"))
		return NULL;
	body = body_of(&resp);
	id = job->model->routine->parse_file(body, strlen(body), err, sizeof(err));
	if (id == NULL)
		attempt_failed(job, false, -1, psprintf("uploading a fine-tuning file: %s", err));
	return id;
}

/* Writes and uploads one file; records its id in column.  False: not done. */
static bool
upload_set(FtJob *job, const char *set, int version, bool held_out, bool verify,
		   const char *column_name, char **file_id)
{
	int64		bytes;
	char	   *path;
	char	   *id;
	Datum		args[2];

	TimestampTz start = GetCurrentTimestamp();
	TimestampTz written_at;

	path = write_set_file(job, set, version, held_out, verify, &bytes);
	written_at = GetCurrentTimestamp();
	id = upload(job, path, psprintf("llmext-%lld-%s.jsonl", (long long) job->id,
									strcmp(column_name, "training_file_id") == 0 ? "train" : "valid"));
	close_open_file();
	if (id == NULL)
		return false;
	args[0] = Int64GetDatum(job->id);
	args[1] = text_datum(id);
	begin("llmext: recording a fine-tuning file");
	exec(psprintf("UPDATE llm.finetune_jobs SET %s = $2, attempts = 0, updated_at = now()"
				  " WHERE id = $1 AND state = 'uploading'", column_name),
		 "it", args, NULL);
	end();
	*file_id = pstrdup(id);
	/* once per file, and what an operator asks about a large one: how long */
	ereport(LOG, (errmsg("llmext fine-tuning job %lld: wrote %lld bytes in %.3f s, uploaded them as %s in %.3f s",
						 (long long) job->id, (long long) bytes,
						 TimestampDifferenceMilliseconds(start, written_at) / 1000.0, id,
						 TimestampDifferenceMilliseconds(written_at, GetCurrentTimestamp()) / 1000.0)));
	return true;
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
	char	   *mine = database_tag();

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
		if (!check_response(job, &resp, "looking up a fine-tuning job"))
			return false;
		body = body_of(&resp);
		if (!job->model->routine->parse_finetune_list(body, strlen(body), LLM_FT_LIST_JOBS,
													  &list, err, sizeof(err)))
		{
			attempt_failed(job, true, -1, psprintf("looking up a fine-tuning job: %s", err));
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
static void
record_created(FtJob *job, const char *provider_id)
{
	Datum		args[3] = {Int64GetDatum(job->id), text_datum(provider_id),
	Float8GetDatum((double) llm_finetune_poll_interval_ms)};

	begin("llmext: recording a fine-tuning job");
	exec("UPDATE llm.finetune_jobs"
		 "   SET provider_job_id = $2, attempts = 0, updated_at = now(),"
		 "       state = CASE WHEN state = 'creating' THEN 'running' ELSE state END,"
		 "       next_poll_at = now() + $3 * interval '1 millisecond'"
		 " WHERE id = $1 AND state IN ('creating', 'cancelling')"
		 "   AND (provider_job_id IS NULL OR provider_job_id = $2)",
		 "itf", args, NULL);
	end();
	job->provider_job_id = pstrdup(provider_id);
	current_interval(job->id);
}

static void
create_job(FtJob *job)
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
		record_created(job, found);
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
	spec.database_tag = database_tag();
	body = job->model->routine->finetune_request(&spec);
	if (!request(job, job->model->routine->jobs_path, body, &resp))
		return;
	if (!check_response(job, &resp, "creating a fine-tuning job"))
		return;
	body = body_of(&resp);
	if (!job->model->routine->parse_finetune_job(body, strlen(body), &created, err, sizeof(err)))
	{
		/* it may exist all the same: the next attempt looks it up first */
		attempt_failed(job, true, -1, psprintf("creating a fine-tuning job: %s", err));
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
	record_created(job, created.id);
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
		Datum		args[7] = {Int64GetDatum(job->id), text_datum(e->id), Float8GetDatum(e->created_at),
			text_datum(e->level), text_datum(e->type), text_datum(provider_text(job, e->message)),
		text_datum(data)};
		bool		nulls[7] = {false, false, isnan(e->created_at), !e->level, !e->type, !e->message,
		data == NULL || strlen(data) >= MAX_ERROR_BYTES};

		added += (int) exec("INSERT INTO llm.finetune_events (job, event_id, created_at, level, type, message, data)"
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
		Datum		args[10] = {Int64GetDatum(job->id), text_datum(c->id), Float8GetDatum(c->created_at),
			Int32GetDatum((int32) Min(c->step, PG_INT32_MAX)), text_datum(c->model_checkpoint),
			Float8GetDatum(c->train_loss), Float8GetDatum(c->valid_loss),
			Float8GetDatum(c->train_accuracy), Float8GetDatum(c->valid_accuracy),
		text_datum(c->metrics)};
		bool		nulls[10] = {false, false, isnan(c->created_at), c->step < 0, !c->model_checkpoint,
			isnan(c->train_loss), isnan(c->valid_loss), isnan(c->train_accuracy),
		isnan(c->valid_accuracy), !c->metrics || llm_json_has_nul_escape(c->metrics, strlen(c->metrics))};

		added += (int) exec("INSERT INTO llm.finetune_checkpoints AS c (job, checkpoint_id, created_at, step,"
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
				!check_response(job, &resp, "reading a fine-tuning job's progress"))
				return -1;
			body = body_of(&resp);
			if (!job->model->routine->parse_finetune_list(body, strlen(body), kind, &list,
														  err, sizeof(err)))
			{
				attempt_failed(job, true, -1,
							   psprintf("reading a fine-tuning job's progress: %s", err));
				return -1;
			}
			begin("llmext: storing a fine-tuning job's progress");
			added = kind == LLM_FT_LIST_EVENTS ? store_events(job, &list)
				: store_checkpoints(job, &list);
			end();
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
		fail_job(job, "the provider reported success without a fine-tuned model");
		return;
	}
	args[0] = Int64GetDatum(job->id);
	args[1] = text_datum(remote->status);
	args[2] = Int64GetDatum(tokens);
	nulls[2] = tokens < 0;
	args[3] = text_datum(remote->fine_tuned_model);
	nulls[3] = remote->fine_tuned_model == NULL;

	begin("llmext: finishing a fine-tuning job");
	exec("UPDATE llm.finetune_jobs SET provider_status = $2, trained_tokens = $3,"
		 "       fine_tuned_model = $4, attempts = 0, updated_at = now()"
		 " WHERE id = $1", "itit", args, nulls);
	if (strcmp(remote->status, "succeeded") == 0)
	{
		char	   *model;
		char	   *cost;

		exec("SELECT llm._finetune_register($1, $2, $3) AS model", "iti",
			 (Datum[]) {args[0], args[3], args[2]}, (bool[]) {false, false, tokens < 0});
		model = column(0, "model");
		exec("SELECT cost_usd FROM llm.finetune_jobs WHERE id = $1", "i", args, NULL);
		cost = column(0, "cost_usd");
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
		args[1] = text_datum(cancelled ? "cancelled" : "failed");
		args[4] = text_datum(error);
		nulls[4] = error == NULL;
		ended = exec("UPDATE llm.finetune_jobs SET state = $2, error = coalesce($5, error),"
					 "       finished_at = now(), updated_at = now()"
					 " WHERE id = $1 AND state NOT IN ('succeeded', 'failed', 'cancelled')",
					 "itit" "t", args, nulls);
		/* tokens trained before a cancel or failure are billed by some providers */
		if (tokens > 0 && ended > 0)
		{
			int64		priced = exec("SELECT coalesce(training_price, 0) * $2 / 1000000.0 AS cost"
									  "  FROM llm.models WHERE name = $1", "ti",
									  (Datum[]) {text_datum(job->base_model), Int64GetDatum(tokens)}, NULL);

			record_training_cost(job, job->base_model, tokens,
								 priced ? strtod(column(0, "cost"), NULL) : 0,
								 cancelled ? "cancelled" : error);
		}
	}
	end();
	forget_interval(job->id);
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
		!check_response(job, &resp, "polling a fine-tuning job"))
		return false;
	body = body_of(&resp);
	if (!job->model->routine->parse_finetune_job(body, strlen(body), remote, err, sizeof(err)))
	{
		attempt_failed(job, true, -1, psprintf("polling a fine-tuning job: %s", err));
		return false;
	}
	return true;
}

static void
poll_job(FtJob *job)
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
	args[1] = text_datum(remote.status);
	nulls[1] = remote.status == NULL;
	args[2] = Float8GetDatum((double) next_interval(job->id, changed || news > 0));
	begin("llmext: recording a fine-tuning job's status");
	/* an unknown status is kept as it is, and the job polled on */
	exec("UPDATE llm.finetune_jobs SET provider_status = $2, attempts = 0, updated_at = now(),"
		 "       next_poll_at = now() + $3 * interval '1 millisecond'"
		 " WHERE id = $1 AND state = 'running'", "itf", args, nulls);
	end();
}

static void
cancel_job(FtJob *job)
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

			begin("llmext: cancelling a fine-tuning job");
			exec("UPDATE llm.finetune_jobs SET state = 'cancelled', finished_at = now(),"
				 "       updated_at = now() WHERE id = $1 AND state = 'cancelling'",
				 "i", args, NULL);
			end();
			forget_interval(job->id);
			return;
		}
		record_created(job, found);
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
		!check_response(job, &resp, "cancelling a fine-tuning job"))
		return;
	body = body_of(&resp);
	if (!job->model->routine->parse_finetune_job(body, strlen(body), &remote, err, sizeof(err)))
	{
		attempt_failed(job, true, -1, psprintf("cancelling a fine-tuning job: %s", err));
		return;
	}
	(void) fetch_progress(job);
	/* the provider may take a moment: the job is cancelled here all the same */
	if (!is_final_status(remote.status))
		remote.status = "cancelled";
	finish(job, &remote);
}

/* ---------- the turn ---------- */

static void
run_job(FtJob *job)
{
	Datum		args[1] = {Int64GetDatum(job->id)};
	int64		n;

	if (!OidIsValid(job->submitter))
	{
		fail_job(job, "the role that submitted the job no longer exists");
		return;
	}
	connect_model(job);
	if (strcmp(job->state, "cancelling") == 0)
	{
		cancel_job(job);
		return;
	}
	if (strcmp(job->state, "queued") == 0 || strcmp(job->state, "uploading") == 0)
	{
		begin("llmext: starting a fine-tuning job");
		n = exec("UPDATE llm.finetune_jobs SET state = 'uploading', updated_at = now(),"
				 "       started_at = coalesce(started_at, now())"
				 " WHERE id = $1 AND state IN ('queued', 'uploading')", "i", args, NULL);
		end();
		if (n == 0)
			return;				/* cancelled meanwhile: the next turn sees it */
		if (job->training_file_id == NULL &&
			!upload_set(job, job->training_set, job->training_version, false, true,
						"training_file_id", &job->training_file_id))
			return;
		if (job->validation_set != NULL && job->validation_file_id == NULL)
		{
			/* the training set itself: its held-out rows validate */
			bool		same = strcmp(job->validation_set, job->training_set) == 0 &&
				job->validation_version == job->training_version;

			if (!upload_set(job, job->validation_set, job->validation_version, same, !same,
							"validation_file_id", &job->validation_file_id))
				return;
		}
		/* committed before the create is sent: see create_job */
		begin("llmext: creating a fine-tuning job");
		n = exec("UPDATE llm.finetune_jobs SET state = 'creating', updated_at = now()"
				 " WHERE id = $1 AND state = 'uploading'", "i", args, NULL);
		end();
		if (n == 0)
			return;
		create_job(job);
		return;
	}
	if (strcmp(job->state, "creating") == 0)
	{
		if (job->provider_job_id != NULL)
			record_created(job, job->provider_job_id);
		else
			create_job(job);
		return;
	}
	if (strcmp(job->state, "running") == 0)
		poll_job(job);
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

		job->id = strtoll(column(i, "id"), NULL, 10);
		job->tag = psprintf(INT64_FORMAT, job->id);
		job->state = pstrdup(column(i, "state"));
		job->submitter = get_role_oid(column(i, "submitted_by"), true);
		job->login = get_role_oid(column(i, "login_role"), true);
		job->base_model = pstrdup(column(i, "base_model"));
		job->training_set = pstrdup(column(i, "training_set"));
		job->training_version = atoi(column(i, "training_version"));
		if ((value = column(i, "validation_set")) != NULL)
		{
			job->validation_set = pstrdup(value);
			job->validation_version = atoi(column(i, "validation_version"));
		}
		job->method = pstrdup(column(i, "method"));
		job->hyperparameters = cJSON_Parse(column(i, "hyperparameters"));
		if ((value = column(i, "suffix")) != NULL)
			job->suffix = pstrdup(value);
		if ((value = column(i, "seed")) != NULL)
		{
			job->has_seed = true;
			job->seed = atoi(value);
		}
#define OPTIONAL(field) \
		if ((value = column(i, #field)) != NULL) \
			job->field = pstrdup(value)
		OPTIONAL(training_file_id);
		OPTIONAL(validation_file_id);
		OPTIONAL(provider_job_id);
		OPTIONAL(provider_status);
#undef OPTIONAL
		job->attempts = atoi(column(i, "attempts"));
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
			close_open_file();
			AbortCurrentTransaction();	/* nothing to do when none is open */
			MemoryContextSwitchTo(job_context);
			llm_act_reset();
			pgstat_report_activity(STATE_IDLE, NULL);
			/* an ERROR of ours (a missing key, a host not allowed, ...) is an attempt */
			PG_TRY();
			{
				/* ... unless the snapshot itself is wrong: that will not mend */
				attempt_failed(job, edata->sqlerrcode != ERRCODE_DATA_CORRUPTED, -1,
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
		close_open_file();
		disconnect_model(job);
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
