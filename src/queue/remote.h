/*
 * remote.h — the worker's requests to a provider's resources other than
 * chat: files (upload, download), fine-tuning jobs and Batch API batches.
 * One request at a time, with no transaction open, stopped when the worker
 * is asked to stop.  Shared by fine-tuning (finetune*.c) and provider
 * batches (provider_batch*.c).
 */
#ifndef LLMEXT_REMOTE_H
#define LLMEXT_REMOTE_H

#include "postgres.h"

#include "net/engine.h"
#include "store/catalog.h"

/*
 * A short transaction of the worker's with SPI connected.  What is palloc'd
 * in it is SPI's, gone at llm_tx_end(), unless copied with llm_tx_keep();
 * llm_tx_end() returns to the memory context current at llm_tx_begin() (a
 * commit would leave TopMemoryContext).  Not nested.
 */
extern void llm_tx_begin(const char *activity);
extern void llm_tx_end(void);
extern char *llm_tx_keep(const char *s);
/* Runs sql with args (types by the letter: i int8, t text, n int4, f float8, b bool); rows processed. */
extern int64 llm_tx_exec(const char *sql, const char *types, Datum *values, const bool *isnull);
extern Datum llm_tx_text(const char *s);
extern char *llm_tx_column(int row, const char *name);

/* What a failed request tells its caller. */
typedef struct LlmRemoteError
{
	char	   *message;		/* "what: the provider's reason", key redacted */
	bool		retry;			/* trying again later may help */
	double		retry_after_ms; /* the provider's wish; -1: none */
} LlmRemoteError;

/*
 * "<system identifier>/<database oid>": which database a fine-tuning job or
 * a provider batch belongs to, in its metadata, so that recovery never
 * adopts another database's with the same id at a shared provider account.
 */
extern char *llm_remote_database_tag(void);

/*
 * What requests to a provider carry: header lines with the key (for JSON
 * bodies and for the others), and the key itself, kept only to redact it
 * from whatever the provider says.
 */
typedef struct LlmRemoteAuth
{
	const char **headers;
	int			nheaders;
	const char **json_headers;
	int			njson_headers;
	char	   *secret;
} LlmRemoteAuth;

/*
 * Loads model's key (its target and key checks included) and builds the
 * header lines, in the current memory context; call in a transaction.
 */
extern void llm_remote_auth(LlmModel *model, LlmRemoteAuth *auth);
/* Overwrites the key wherever auth holds it; harmless when never filled. */
extern void llm_remote_forget(LlmRemoteAuth *auth);

/*
 * A GET (body NULL) or a JSON POST of body to path below model's base_url,
 * as llm_remote_perform sends it.
 */
extern bool llm_remote_request(const LlmModel *model, const LlmRemoteAuth *auth, const char *path,
							   const char *body, bool (*stop) (void), LlmHttpResponse *resp);

/*
 * Sends one request and waits for it; false when stop() said the worker is
 * stopping (the transfer is cancelled then).
 */
extern bool llm_remote_perform(LlmHttpRequest *req, LlmHttpResponse *resp, bool (*stop) (void));

/*
 * Did a finished request succeed (a 2xx whose body is UTF-8)?  If not,
 * fills error (what, if not NULL, prefixes its message) and returns false.
 */
extern bool llm_remote_ok(const LlmModel *model, const LlmHttpResponse *resp, const char *secret,
						  const char *what, LlmRemoteError *error);

/* The body of a successful response, in the server's encoding. */
extern char *llm_remote_body(const LlmHttpResponse *resp);

/*
 * Uploads the file at path as filename with purpose (multipart, streamed
 * from disk); its id, or NULL with error filled.  False from stop as for
 * llm_remote_perform leaves error->message NULL.
 */
extern char *llm_files_upload(const LlmModel *model, const LlmRemoteAuth *auth, const char *path,
							  const char *filename, const char *purpose, bool (*stop) (void),
							  LlmRemoteError *error);

/*
 * Downloads the bytes of file_id into the existing file at path, as they
 * come (never whole in memory), up to max_bytes; the bytes written, or -1
 * with error filled (message NULL when stopped).
 */
extern int64 llm_files_download(const LlmModel *model, const LlmRemoteAuth *auth,
								const char *file_id, const char *path, int64 max_bytes,
								bool (*stop) (void), LlmRemoteError *error);

#endif							/* LLMEXT_REMOTE_H */
