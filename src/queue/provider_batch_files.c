/*
 * provider_batch_files.c — a provider batch's files: the input file of
 * lines, one per request, written in chunks to a temporary file and
 * uploaded from disk; and the output and error files, downloaded to disk
 * and read back in chunks of lines, each joined to its request on
 * custom_id.  Memory stays at a chunk whatever the batch's size, and the
 * file being written or read is closed, and so deleted, on every path.
 */
#include "llmext.h"

#include "call/call.h"
#include "providers/provider.h"
#include "queue/provider_batch.h"
#include "queue/provider_batch_private.h"
#include "queue/queue_private.h"
#include "queue/worker.h"
#include "store/caller.h"
#include "store/spi_check.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#define CHUNK_ROWS 1000			/* requests written, or answers read, at once */
#define READ_BYTES (1024 * 1024)	/* bytes of an output file read at once */

static File open_file = -1;		/* the temporary file being written or read */

void
pb_close_open_file(void)
{
	if (open_file >= 0)
	{
		FileClose(open_file);	/* a temporary file is deleted when closed */
		open_file = -1;
	}
}

/* Opens a temporary file that outlives transactions; its path. */
static char *
open_temporary(void)
{
	Assert(open_file < 0);
	open_file = OpenTemporaryFile(true);
	return pstrdup(FilePathName(open_file));
}

static void
write_chunk(StringInfo chunk, off_t *offset)
{
	if (chunk->len == 0)
		return;
	if (FileWrite(open_file, chunk->data, chunk->len, *offset, PG_WAIT_EXTENSION) != chunk->len)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not write temporary file \"%s\": %m",
							   FilePathName(open_file))));
	*offset += chunk->len;
	resetStringInfo(chunk);
}

/*
 * Between two chunks of a large batch: the queue's own requests go on (the
 * finished ones written, free places refilled), so that a batch of 50,000
 * does not hold up everything else the worker serves.
 */
static void
keep_queue_moving(PbBatch *batch)
{
	llm_queue_write(batch->queue);
	/* a chunk's ledger entries: the entry queue holds 4,096, the rest would wait in our memory */
	llm_worker_flush_ledger();
	llm_queue_collect(batch->queue, 0);
	llm_queue_start_due(batch->queue);
	llm_queue_write(batch->queue);
}

/* The batch's running requests after last_id, by id, as QueuedCalls. */
static List *
running_after(PbBatch *batch, int64 last_id, MemoryContext list_context)
{
	Datum		args[2] = {Int64GetDatum(batch->id), Int64GetDatum(last_id)};
	List	   *calls = NIL;

	llm_spi_connect();
	llm_spi_check(SPI_execute_with_args("SELECT " LLM_QUEUE_ROW_COLUMNS
										"  FROM llm.requests"
										" WHERE provider_batch = $1 AND state = 'running' AND id > $2"
										" ORDER BY id LIMIT " CppAsString2(CHUNK_ROWS),
										2, (Oid[]) {INT8OID, INT8OID}, args, NULL, false, 0),
				  "reading a provider batch's requests");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		QueuedCall *qc = llm_queue_call_of_row(batch->queue, SPI_tuptable->vals[i],
											   SPI_tuptable->tupdesc);
		MemoryContext old = MemoryContextSwitchTo(list_context);

		calls = lappend(calls, qc);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return calls;
}

/* Requests from first_id on go back to the queue: the file is full. */
static void
put_back_from(PbBatch *batch, int64 first_id)
{
	Datum		args[2] = {Int64GetDatum(batch->id), Int64GetDatum(first_id)};

	llm_spi_connect();
	llm_spi_check(SPI_execute_with_args("UPDATE llm.requests"
										"   SET state = 'queued', attempts = attempts - 1"
										" WHERE provider_batch = $1 AND state = 'running' AND id >= $2",
										2, (Oid[]) {INT8OID, INT8OID}, args, NULL, false, 0),
				  "putting back a provider batch's requests");
	ereport(LOG, (errmsg("llmext provider batch %lld: the input file is full; %llu requests go to the next batch",
						 (long long) batch->id, (unsigned long long) SPI_processed)));
	SPI_finish();
}

/*
 * Writes a line for each running request of the batch, prepared as its
 * submitter: a request answered by the cache, refused by a budget or that
 * cannot be prepared ends at once through the queue's writing instead.
 */
static bool
write_input(PbBatch *batch, const char *path, int *lines, off_t *offset)
{
	const LlmProviderRoutine *routine = batch->model->routine;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext chunk_context = AllocSetContextCreate(caller, "llmext provider batch lines",
														ALLOCSET_DEFAULT_SIZES);
	StringInfoData chunk;
	int64		last_id = 0;
	bool		full = false;

	initStringInfo(&chunk);
	while (!full)
	{
		List	   *calls;
		int			next = 0;

		llm_queue_begin("llmext: writing a provider batch's requests");
		MemoryContextSwitchTo(chunk_context);
		calls = running_after(batch, last_id, chunk_context);
		if (calls == NIL)
		{
			llm_queue_end();
			MemoryContextSwitchTo(caller);
			break;
		}
		while (next < list_length(calls))
		{
			QueuedCall *qc = list_nth(calls, next++);
			char	   *line;
			size_t		len;

			last_id = qc->id;
			qc->req.batch_api = true;
			qc->req.source = "batch_api";
			llm_queue_prepare(qc);
			MemoryContextSwitchTo(chunk_context);
			if (qc->call == NULL || qc->call->answered)
			{
				dlist_push_tail(&batch->queue->done, &qc->node);
				continue;
			}
			line = routine->batch_line(psprintf("%s" INT64_FORMAT, PB_CUSTOM_ID_PREFIX, qc->id),
									   routine->batch_chat_url, qc->call->http.body);
			len = strlen(line);
			if (*offset + chunk.len + len + 1 > (size_t) llm_batch_api_max_bytes && *lines == 0)
			{
				/* alone in a file it does not fit: it never will */
				qc->call = NULL;
				qc->error = MemoryContextStrdup(qc->context,
												psprintf("the request's line of %zu bytes is larger than llmext.batch_api_max_bytes (%d)",
														 len + 1, llm_batch_api_max_bytes));
				dlist_push_tail(&batch->queue->done, &qc->node);
				continue;
			}
			MemoryContextDelete(qc->context);
			if (*offset + chunk.len + len + 1 > (size_t) llm_batch_api_max_bytes)
			{
				put_back_from(batch, last_id);
				full = true;
				break;
			}
			appendBinaryStringInfo(&chunk, line, len);
			appendStringInfoChar(&chunk, '\n');
			(*lines)++;
		}
		/* those after the line that did not fit were never prepared */
		while (full && next < list_length(calls))
			MemoryContextDelete(((QueuedCall *) list_nth(calls, next++))->context);
		write_chunk(&chunk, offset);
		llm_queue_end();
		MemoryContextSwitchTo(caller);
		MemoryContextReset(chunk_context);
		/* the ones that ended here: written now, not held to the end */
		keep_queue_moving(batch);
		CHECK_FOR_INTERRUPTS();
		if (batch->stop())
		{
			MemoryContextDelete(chunk_context);
			return false;
		}
	}
	pfree(chunk.data);
	MemoryContextDelete(chunk_context);
	return true;
}

bool
pb_upload_input(PbBatch *batch, int *lines)
{
	const LlmProviderRoutine *routine = batch->model->routine;
	MemoryContext caller = CurrentMemoryContext;
	LlmRemoteError error;
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz written_at;
	off_t		bytes = 0;
	char	   *path;
	char	   *id;
	Datum		args[4];

	*lines = 0;
	llm_queue_begin("llmext: opening a provider batch's input file");
	MemoryContextSwitchTo(caller);
	path = open_temporary();
	llm_queue_end();
	MemoryContextSwitchTo(caller);
	if (!write_input(batch, path, lines, &bytes))
		return false;
	if (*lines == 0)
	{
		Datum		none_args[1] = {Int64GetDatum(batch->id)};

		pb_close_open_file();
		llm_tx_begin("llmext: recording a provider batch with nothing to send");
		llm_tx_exec("UPDATE llm.provider_batches SET requests = 0 WHERE id = $1", "i", none_args, NULL);
		llm_tx_end();
		return true;
	}
	written_at = GetCurrentTimestamp();
	id = llm_files_upload(batch->model, &batch->auth, path,
						  psprintf("llmext-batch-%lld.jsonl", (long long) batch->id),
						  routine->batch_files_purpose, batch->stop, &error);
	pb_close_open_file();
	if (id == NULL)
	{
		if (error.message != NULL)
		{
			error.message = psprintf("uploading a provider batch's input: %s", error.message);
			pb_attempt_failed(batch, &error);
		}
		return false;
	}
	args[0] = Int64GetDatum(batch->id);
	args[1] = llm_tx_text(id);
	args[2] = Int32GetDatum(*lines);
	args[3] = Int64GetDatum((int64) bytes);
	llm_tx_begin("llmext: recording a provider batch's input file");
	llm_tx_exec("UPDATE llm.provider_batches"
				"   SET input_file_id = $2, requests = $3, input_bytes = $4, state = 'creating',"
				"       attempts = 0, error = NULL, updated_at = now()"
				" WHERE id = $1 AND state = 'uploading'", "itni", args, NULL);
	llm_tx_end();
	batch->input_file_id = pstrdup(id);
	/* once per batch, and what an operator asks about a large one: how long */
	ereport(LOG, (errmsg("llmext provider batch %lld: wrote %d requests (%lld bytes) in %.3f s, uploaded them as %s in %.3f s",
						 (long long) batch->id, *lines, (long long) bytes,
						 TimestampDifferenceMilliseconds(start, written_at) / 1000.0, id,
						 TimestampDifferenceMilliseconds(written_at, GetCurrentTimestamp()) / 1000.0)));
	return true;
}

/* ---------- answers ---------- */

/* One parsed line of an output or error file, by request id. */
typedef struct PbAnswer
{
	int64		id;
	LlmBatchLine line;
} PbAnswer;

static int
answer_cmp(const void *a, const void *b)
{
	int64		x = ((const PbAnswer *) a)->id;
	int64		y = ((const PbAnswer *) b)->id;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* The provider's answer, as if the request had been sent alone. */
static void
fill_response(QueuedCall *qc, const LlmBatchLine *line)
{
	LlmHttpResponse *resp = &qc->call->resp;
	MemoryContext old = MemoryContextSwitchTo(qc->context);

	memset(resp, 0, sizeof(*resp));
	resp->retry_after_ms = -1;
	resp->connected = true;
	resp->request_id = line->request_id ? pstrdup(line->request_id) : NULL;
	resp->body = pstrdup(line->body ? line->body : "");
	resp->body_len = strlen(resp->body);
	if (line->status_code > 0)
	{
		resp->outcome = LLM_HTTP_RESPONSE;
		resp->status = line->status_code;
	}
	else
	{
		/* no HTTP answer (say, the batch expired first): tried again like a lost connection */
		resp->outcome = LLM_HTTP_FAILED;
		strlcpy(resp->error, line->error ? line->error : "the batch gave no response",
				sizeof(resp->error));
	}
	MemoryContextSwitchTo(old);
}

/*
 * An answer to a request cancelled while its batch ran: the provider
 * charges for it, so the ledger hears of it, and the row keeps the cost
 * (which also marks it as charged, should the file be read again).
 */
static void
charge_cancelled(QueuedCall *qc)
{
	LlmActing	acting;
	Datum		args[2];

	if (qc->call == NULL)
		return;
	llm_act_for(&acting, qc->submitter, qc->login, 0);
	PG_TRY();
	{
		(void) llm_call_complete(qc->call);
	}
	PG_FINALLY();
	{
		llm_act_done(&acting);
	}
	PG_END_TRY();
	args[0] = Int64GetDatum(qc->id);
	args[1] = CStringGetTextDatum(psprintf("%.12f", qc->result.cost_usd));
	llm_spi_connect();
	llm_spi_check(SPI_execute_with_args("UPDATE llm.requests SET cost_usd = $2::pg_catalog.numeric"
										" WHERE id = $1 AND state = 'cancelled' AND cost_usd IS NULL",
										2, (Oid[]) {INT8OID, TEXTOID}, args, NULL, false, 0),
				  "charging a cancelled request");
	SPI_finish();
}

/*
 * Answers the requests of n parsed lines (sorted by id): those still
 * running through the queue's writing, exactly once; those cancelled
 * meanwhile are only charged.
 */
static void
answer_chunk(PbBatch *batch, PbAnswer *answers, int n)
{
	MemoryContext caller = CurrentMemoryContext;
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum		args[2];
	List	   *calls = NIL;
	List	   *cancelled = NIL;
	ListCell   *cell;

	for (int i = 0; i < n; i++)
		ids[i] = Int64GetDatum(answers[i].id);
	args[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = Int64GetDatum(batch->id);

	llm_queue_begin("llmext: reading a provider batch's answers");
	MemoryContextSwitchTo(caller);
	llm_spi_connect();
	llm_spi_check(SPI_execute_with_args("SELECT " LLM_QUEUE_ROW_COLUMNS ", state"
										"  FROM llm.requests"
										" WHERE id = ANY ($1) AND provider_batch = $2"
										"   AND (state = 'running' OR (state = 'cancelled' AND cost_usd IS NULL))",
										2, (Oid[]) {INT8ARRAYOID, INT8OID}, args, NULL, false, 0),
				  "reading a provider batch's requests");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		QueuedCall *qc = llm_queue_call_of_row(batch->queue, SPI_tuptable->vals[i],
											   SPI_tuptable->tupdesc);
		char	   *state = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
										 SPI_fnumber(SPI_tuptable->tupdesc, "state"));
		MemoryContext old = MemoryContextSwitchTo(caller);

		if (strcmp(state, "running") == 0)
			calls = lappend(calls, qc);
		else
			cancelled = lappend(cancelled, qc);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	foreach(cell, list_concat(list_copy(calls), cancelled))
	{
		QueuedCall *qc = lfirst(cell);
		PbAnswer	key = {.id = qc->id};
		PbAnswer   *answer = bsearch(&key, answers, n, sizeof(PbAnswer), answer_cmp);

		qc->req.batch_api = true;
		qc->req.batch_answer = true;
		qc->req.source = "batch_api";
		llm_queue_prepare(qc);
		MemoryContextSwitchTo(caller);
		if (qc->call == NULL)
			continue;
		fill_response(qc, &answer->line);
		/* a provider that echoes the key must not hand it to the request's row */
		if (batch->auth.secret != NULL)
			qc->call->secret = MemoryContextStrdup(qc->context, batch->auth.secret);
	}
	foreach(cell, cancelled)
	{
		QueuedCall *qc = lfirst(cell);

		charge_cancelled(qc);
		MemoryContextDelete(qc->context);
	}
	{
		Datum		count_args[2] = {Int64GetDatum(batch->id), Int32GetDatum(n)};

		llm_spi_connect();
		llm_spi_check(SPI_execute_with_args("UPDATE llm.provider_batches SET answered = answered + $2,"
											"       updated_at = now() WHERE id = $1",
											2, (Oid[]) {INT8OID, INT4OID}, count_args, NULL, false, 0),
					  "counting a provider batch's answers");
		SPI_finish();
	}
	llm_queue_end();
	MemoryContextSwitchTo(caller);
	foreach(cell, calls)
	{
		QueuedCall *qc = lfirst(cell);

		dlist_push_tail(&batch->queue->done, &qc->node);
	}
	/* completed as their submitters, written only to rows still running */
	keep_queue_moving(batch);
}

/* Parses the lines of a chunk into answers; lines that are not ours are logged. */
static int
parse_chunk(PbBatch *batch, List *lines, PbAnswer *answers)
{
	const LlmProviderRoutine *routine = batch->model->routine;
	size_t		prefix = strlen(PB_CUSTOM_ID_PREFIX);
	int			n = 0;
	int			bad = 0;
	ListCell   *cell;
	char		err[256];

	foreach(cell, lines)
	{
		char	   *line = lfirst(cell);
		PbAnswer   *answer = &answers[n];
		char	   *end;

		memset(answer, 0, sizeof(*answer));
		if (!routine->parse_batch_line(line, strlen(line), &answer->line, err, sizeof(err)) ||
			strncmp(answer->line.custom_id, PB_CUSTOM_ID_PREFIX, prefix) != 0)
		{
			bad++;
			continue;
		}
		errno = 0;
		answer->id = strtoll(answer->line.custom_id + prefix, &end, 10);
		if (errno != 0 || *end != '\0' || answer->id <= 0)
		{
			bad++;
			continue;
		}
		n++;
	}
	if (bad > 0)
		ereport(LOG, (errmsg("llmext provider batch %lld: %d lines of an output file were not answers to its requests",
							 (long long) batch->id, bad)));
	qsort(answers, n, sizeof(PbAnswer), answer_cmp);
	return n;
}

/*
 * Reads the downloaded file line by line; every CHUNK_ROWS lines are
 * answered together.  A line longer than any answer may be is skipped.
 */
static void
read_lines(PbBatch *batch)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext chunk_context = AllocSetContextCreate(caller, "llmext provider batch answers",
														ALLOCSET_DEFAULT_SIZES);
	size_t		max_line = (size_t) llm_effective_max_response_bytes() + 65536;
	char	   *buf = palloc(READ_BYTES);
	StringInfoData pending;
	List	   *lines = NIL;
	off_t		offset = 0;
	bool		skipping = false;
	int			nread;
	PbAnswer   *answers = palloc(sizeof(PbAnswer) * CHUNK_ROWS);

	initStringInfo(&pending);
	for (;;)
	{
		char	   *p;
		char	   *end;

		nread = FileRead(open_file, buf, READ_BYTES, offset, PG_WAIT_EXTENSION);
		if (nread < 0)
			ereport(ERROR, (errcode_for_file_access(),
							errmsg("could not read temporary file \"%s\": %m", FilePathName(open_file))));
		offset += nread;
		p = buf;
		end = buf + nread;
		while (p < end || (nread == 0 && pending.len > 0))
		{
			char	   *newline = nread > 0 ? memchr(p, '\n', end - p) : NULL;
			size_t		len = newline ? (size_t) (newline - p) : (size_t) (end - p);

			if (!skipping)
				appendBinaryStringInfo(&pending, p, len);
			if (pending.len > (int) max_line)
			{
				if (!skipping)
					ereport(LOG, (errmsg("llmext provider batch %lld: skipped an output line of more than %zu bytes",
										 (long long) batch->id, max_line)));
				skipping = true;
				resetStringInfo(&pending);
			}
			if (newline == NULL && nread > 0)
				break;			/* the rest of the line is in the next read */
			if (!skipping && pending.len > 0)
			{
				MemoryContext old = MemoryContextSwitchTo(chunk_context);

				lines = lappend(lines, pnstrdup(pending.data, pending.len));
				MemoryContextSwitchTo(old);
			}
			skipping = false;
			resetStringInfo(&pending);
			p = newline ? newline + 1 : end;
			if (list_length(lines) == CHUNK_ROWS)
			{
				MemoryContextSwitchTo(chunk_context);
				answer_chunk(batch, answers, parse_chunk(batch, lines, answers));
				MemoryContextSwitchTo(caller);
				MemoryContextReset(chunk_context);
				lines = NIL;
				CHECK_FOR_INTERRUPTS();
			}
		}
		if (nread == 0)
			break;
	}
	if (lines != NIL)
	{
		MemoryContextSwitchTo(chunk_context);
		answer_chunk(batch, answers, parse_chunk(batch, lines, answers));
		MemoryContextSwitchTo(caller);
	}
	MemoryContextDelete(chunk_context);
	pfree(buf);
	pfree(answers);
	pfree(pending.data);
}

bool
pb_read_answers(PbBatch *batch, const char *file_id)
{
	MemoryContext caller = CurrentMemoryContext;
	LlmRemoteError error;
	char	   *path;
	int64		bytes;

	llm_queue_begin("llmext: opening a provider batch's output file");
	MemoryContextSwitchTo(caller);
	path = open_temporary();
	llm_queue_end();
	MemoryContextSwitchTo(caller);
	bytes = llm_files_download(batch->model, &batch->auth, file_id, path,
							   LLM_BATCH_MAX_OUTPUT_BYTES, batch->stop, &error);
	if (bytes < 0)
	{
		pb_close_open_file();
		if (error.message != NULL)
		{
			error.message = psprintf("downloading a provider batch's answers: %s", error.message);
			pb_attempt_failed(batch, &error);
		}
		return false;
	}
	read_lines(batch);
	pb_close_open_file();
	return true;
}
