/*
 * finetune_files.c — a fine-tuning job's training and validation files:
 * written from the set's snapshot in llm.training_examples to a temporary
 * file (an SPI cursor in batches, checked against the set's size and
 * SHA-256), then uploaded to the provider from disk and the file id
 * recorded.  The file being written or sent is closed, and so deleted, on
 * every path.
 */
#include "llmext.h"

#include "call/call.h"
#include "queue/finetune_private.h"
#include "queue/remote.h"

#include "catalog/pg_type_d.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#define WRITE_CHUNK (1024 * 1024)	/* bytes of lines written at once */
#define FETCH_ROWS 1000			/* lines fetched from the cursor at once */

static File open_file = -1;		/* the temporary file being written or sent */

/* Closes the file being written or sent, if any: on every path, errors included. */
void
ft_close_open_file(void)
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
	Datum		args[3] = {llm_tx_text(set), Int32GetDatum(version), BoolGetDatum(held_out)};
	Oid			types[3] = {TEXTOID, INT4OID, BOOLOID};
	Portal		portal;
	StringInfoData chunk;
	pg_cryptohash_ctx *sha;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char		hex[PG_SHA256_DIGEST_LENGTH * 2 + 1];
	off_t		offset = 0;
	char	   *path;
	MemoryContext rows_context;

	llm_tx_begin("llmext: writing a fine-tuning file");
	/* in the transaction: its resource owner frees the digest after an ERROR */
	sha = pg_cryptohash_create(PG_SHA256);
	if (sha == NULL || pg_cryptohash_init(sha) < 0)
		elog(ERROR, "could not start a SHA-256 digest");
	open_file = OpenTemporaryFile(true);	/* lives across transactions, until closed */
	path = llm_tx_keep(FilePathName(open_file));
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
		Datum		set_args[2] = {llm_tx_text(set), Int32GetDatum(version)};

		llm_tx_exec("SELECT bytes, sha256 FROM llm.training_sets WHERE name = $1 AND version = $2",
				"tn", set_args, NULL);
		if (SPI_processed != 1)
			ereport(ERROR,
					(errmsg("training set \"%s\" version %d does not exist", set, version)));
		if (strtoll(llm_tx_column(0, "bytes"), NULL, 10) != (long long) offset ||
			pg_strcasecmp(llm_tx_column(0, "sha256"), hex) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("the examples of training set \"%s\" version %d are not the snapshot recorded",
							set, version),
					 errdetail("The file has %lld bytes and SHA-256 %s; the set records %s bytes and %s.",
							   (long long) offset, hex, llm_tx_column(0, "bytes"), llm_tx_column(0, "sha256"))));
	}
	if (offset == 0)
		ereport(ERROR,
				(errmsg("training set \"%s\" version %d has no examples for this file", set, version)));
	llm_tx_end();
	*written = offset;
	return path;
}

/* Uploads the file at path; its id, or NULL when the attempt failed. */
static char *
upload(FtJob *job, const char *path, const char *filename)
{
	LlmRemoteError error;
	char	   *id = llm_files_upload(job->model, &job->auth, path, filename,
									  job->model->routine->files_purpose, ft_stop_requested, &error);

	if (id == NULL && error.message != NULL)
		ft_attempt_failed(job, error.retry, error.retry_after_ms,
						  psprintf("uploading a fine-tuning file: %s", error.message));
	return id;
}

/* Writes and uploads one file; records its id in column.  False: not done. */
bool
ft_upload_set(FtJob *job, const char *set, int version, bool held_out, bool verify,
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
	ft_close_open_file();
	if (id == NULL)
		return false;
	args[0] = Int64GetDatum(job->id);
	args[1] = llm_tx_text(id);
	llm_tx_begin("llmext: recording a fine-tuning file");
	llm_tx_exec(psprintf("UPDATE llm.finetune_jobs SET %s = $2, attempts = 0, updated_at = now()"
					 " WHERE id = $1 AND state = 'uploading'", column_name),
			"it", args, NULL);
	llm_tx_end();
	*file_id = pstrdup(id);
	/* once per file, and what an operator asks about a large one: how long */
	ereport(LOG, (errmsg("llmext fine-tuning job %lld: wrote %lld bytes in %.3f s, uploaded them as %s in %.3f s",
						 (long long) job->id, (long long) bytes,
						 TimestampDifferenceMilliseconds(start, written_at) / 1000.0, id,
						 TimestampDifferenceMilliseconds(written_at, GetCurrentTimestamp()) / 1000.0)));
	return true;
}
