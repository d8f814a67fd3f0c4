/*
 * engine.h — HTTP transfers to providers on libcurl's multi interface.
 *
 * One engine runs any number of transfers at once; a backend uses it for a
 * single call (llm_http_perform) and the same interface serves batches and
 * the background worker.  The engine never raises an ERROR for a transfer's
 * failure: each transfer ends with an outcome the caller turns into a result
 * or an error.  Query cancel and statement_timeout are honoured while
 * waiting, and every curl handle is freed on every path, including ERROR.
 */
#ifndef LLMEXT_ENGINE_H
#define LLMEXT_ENGINE_H

#include "postgres.h"

#include "utils/palloc.h"

typedef enum LlmHttpOutcome
{
	LLM_HTTP_RESPONSE,			/* an HTTP answer arrived (any status) */
	LLM_HTTP_TIMEOUT,
	LLM_HTTP_CONNECT_FAILED,
	LLM_HTTP_TOO_LARGE,
	LLM_HTTP_FAILED				/* another transport error */
} LlmHttpOutcome;

typedef struct LlmHttpRequest
{
	const char *url;
	const char *body;			/* JSON, NUL-terminated; POSTed */
	const char *const *headers; /* "Name: value" lines */
	int			nheaders;
	long		connect_timeout_ms;
	long		timeout_ms;			/* 0: no limit on the whole transfer */
	size_t		max_response_bytes;
	/* Set only where needed; zero-filled they change nothing. */
	bool		get;			/* a GET: body is ignored */
	/*
	 * A multipart/form-data POST instead of body: the form_fields (name,
	 * value pairs: 2 * nform_fields strings), then the file at upload_path
	 * as the part upload_field named upload_filename, streamed from disk
	 * by libcurl as it sends (never read whole into memory).
	 */
	const char *upload_path;
	const char *upload_field;
	const char *upload_filename;
	const char *const *form_fields;
	int			nform_fields;
	/* > 0: fail a transfer that moves under 1 byte/s for this many seconds */
	long		stall_timeout_s;
	/*
	 * A 2xx body is written to this existing file (truncated first), as it
	 * comes, instead of memory; max_response_bytes still bounds it.  Any
	 * other status's body comes in memory, up to 1 MB.
	 */
	const char *download_path;
} LlmHttpRequest;

typedef struct LlmHttpResponse
{
	LlmHttpOutcome outcome;
	long		status;
	char	   *body;			/* palloc'd in the context current at llm_engine_add */
	size_t		body_len;
	size_t		downloaded;		/* bytes written to download_path */
	char	   *request_id;		/* x-request-id (or request-id) header */
	double		retry_after_ms; /* from retry-after-ms / retry-after; -1 if absent */
	double		elapsed_ms;
	bool		connected;		/* a connection was made (tells timeouts apart) */
	char		error[256];		/* transport error, for outcomes other than RESPONSE */
} LlmHttpResponse;

typedef struct LlmEngine LlmEngine;

/* The engine lives in (and is cleaned up with) the given memory context. */
extern LlmEngine *llm_engine_create(MemoryContext context);

/*
 * Starts a transfer.  req and its strings must stay valid until the
 * transfer is returned by llm_engine_next_done; resp is filled then.  tag
 * comes back with it.
 */
extern void llm_engine_add(LlmEngine *engine, const LlmHttpRequest *req,
						   LlmHttpResponse *resp, void *tag);

/* Lets transfers just added start now, without waiting. */
extern void llm_engine_kick(LlmEngine *engine);

/*
 * Waits up to timeout_ms for progress (checking for interrupts, so query
 * cancel raises its ERROR here) and returns the tag of one finished
 * transfer, or NULL if none finished in that time.
 */
extern void *llm_engine_next_done(LlmEngine *engine, long timeout_ms);

/*
 * Stops the running transfer added with tag (no effect if it has finished);
 * it will not be returned by llm_engine_next_done.  True if one was stopped.
 */
extern bool llm_engine_cancel(LlmEngine *engine, void *tag);

/* One request, start to finish. */
extern void llm_http_perform(const LlmHttpRequest *req, LlmHttpResponse *resp);

#endif							/* LLMEXT_ENGINE_H */
