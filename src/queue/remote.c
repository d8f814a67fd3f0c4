/*
 * remote.c — the worker's requests to a provider's files, jobs and
 * batches, and the short transactions around them (see remote.h).
 */
#include "llmext.h"

#include "queue/remote.h"

#include "call/call.h"
#include "call/failure.h"
#include "core/request.h"
#include "core/retry.h"
#include "queue/queue.h"
#include "store/spi_check.h"

#include "access/xlog.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

/* the memory context current at llm_tx_begin */
static MemoryContext outer = NULL;

void
llm_tx_begin(const char *activity)
{
	outer = CurrentMemoryContext;
	llm_queue_begin(activity);
	MemoryContextSwitchTo(outer);
	llm_spi_connect();
}

void
llm_tx_end(void)
{
	SPI_finish();
	llm_queue_end();
	MemoryContextSwitchTo(outer);
}

char *
llm_tx_keep(const char *s)
{
	return s ? MemoryContextStrdup(outer, s) : NULL;
}

int64
llm_tx_exec(const char *sql, const char *types, Datum *values, const bool *isnull)
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
	llm_spi_check(SPI_execute_with_args(sql, n, oids, values, n > 0 ? nulls : NULL, false, 0), sql);
	return (int64) SPI_processed;
}

Datum
llm_tx_text(const char *s)
{
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

char *
llm_tx_column(int row, const char *name)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
						SPI_fnumber(SPI_tuptable->tupdesc, name));
}

char *
llm_remote_database_tag(void)
{
	return psprintf(UINT64_FORMAT "/%u", GetSystemIdentifier(), MyDatabaseId);
}

void
llm_remote_auth(LlmModel *model, LlmRemoteAuth *auth)
{
	llm_load_key(model);
	auth->secret = model->api_key ? pstrdup(model->api_key) : NULL;
	auth->headers = llm_provider_headers(model, false, &auth->nheaders);
	auth->json_headers = llm_provider_headers(model, true, &auth->njson_headers);
	llm_forget_key(model);
}

void
llm_remote_forget(LlmRemoteAuth *auth)
{
	if (auth->headers != NULL)
		llm_forget_headers(auth->headers, auth->nheaders, auth->secret);
	if (auth->json_headers != NULL)
		llm_forget_headers(auth->json_headers, auth->njson_headers, auth->secret);
	if (auth->secret != NULL)
		explicit_bzero(auth->secret, strlen(auth->secret));
	auth->headers = auth->json_headers = NULL;
	auth->secret = NULL;
}

bool
llm_remote_request(const LlmModel *model, const LlmRemoteAuth *auth, const char *path,
				   const char *body, bool (*stop) (void), LlmHttpResponse *resp)
{
	LlmHttpRequest req = {0};

	req.url = llm_provider_url(model, path);
	req.get = body == NULL;
	req.body = body ? pg_server_to_any(body, strlen(body), PG_UTF8) : NULL;
	req.headers = body ? auth->json_headers : auth->headers;
	req.nheaders = body ? auth->njson_headers : auth->nheaders;
	req.connect_timeout_ms = llm_connect_timeout_ms;
	req.timeout_ms = llm_request_timeout_ms;
	req.max_response_bytes = (size_t) llm_effective_max_response_bytes();
	return llm_remote_perform(&req, resp, stop);
}

bool
llm_remote_perform(LlmHttpRequest *req, LlmHttpResponse *resp, bool (*stop) (void))
{
	MemoryContext context = AllocSetContextCreate(CurrentMemoryContext,
												  "llmext provider transfer",
												  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(context);
	LlmEngine  *engine = llm_engine_create(context);
	bool		done = true;

	MemoryContextSwitchTo(old);
	llm_engine_add(engine, req, resp, resp);
	while (llm_engine_next_done(engine, 200) == NULL)
	{
		if (stop != NULL && stop())
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

bool
llm_remote_ok(const LlmModel *model, const LlmHttpResponse *resp, const char *secret,
			  const char *what, LlmRemoteError *error)
{
	LlmFailure *failure;
	LlmFailureKind kind;

	error->message = NULL;
	error->retry = false;
	error->retry_after_ms = -1;
	if (resp->outcome == LLM_HTTP_RESPONSE && resp->status >= 200 && resp->status < 300)
	{
		if (pg_verify_mbstr(PG_UTF8, resp->body, resp->body_len, true))
			return true;
		failure = llm_failure_of_response(model, "the body is not valid UTF-8", resp, secret);
		error->message = what ? psprintf("%s: %s", what, llm_failure_text(failure))
			: llm_failure_text(failure);
		return false;
	}
	failure = llm_failure_of_transfer(model, resp, llm_request_timeout_ms, secret);
	kind = resp->outcome == LLM_HTTP_RESPONSE ? LLM_FAILED_HTTP :
		resp->outcome == LLM_HTTP_TIMEOUT ? LLM_FAILED_TIMEOUT :
		resp->outcome == LLM_HTTP_CONNECT_FAILED || resp->outcome == LLM_HTTP_FAILED
		? LLM_FAILED_CONNECTION : LLM_FAILED_OTHER;
	error->retry = llm_retryable(kind, resp->status, resp->retry_after_ms);
	error->retry_after_ms = resp->retry_after_ms;
	error->message = what ? psprintf("%s: %s", what, llm_failure_text(failure))
		: llm_failure_text(failure);
	return false;
}

char *
llm_remote_body(const LlmHttpResponse *resp)
{
	return pg_any_to_server(resp->body, resp->body_len, PG_UTF8);
}

char *
llm_files_upload(const LlmModel *model, const LlmRemoteAuth *auth, const char *path,
				 const char *filename, const char *purpose, bool (*stop) (void),
				 LlmRemoteError *error)
{
	LlmHttpRequest req = {0};
	LlmHttpResponse resp;
	const char *fields[2] = {"purpose", purpose};
	char		err[256];
	char	   *id;
	char	   *body;

	memset(error, 0, sizeof(*error));
	error->retry_after_ms = -1;
	req.url = llm_provider_url(model, model->routine->files_path);
	req.headers = auth->headers;
	req.nheaders = auth->nheaders;
	req.connect_timeout_ms = llm_connect_timeout_ms;
	req.timeout_ms = 0;			/* a large file takes its time ... */
	req.stall_timeout_s = Max(llm_request_timeout_ms / 1000, 1);	/* ... but never stalls */
	req.max_response_bytes = (size_t) llm_effective_max_response_bytes();
	req.upload_path = path;
	req.upload_field = "file";
	req.upload_filename = filename;
	req.form_fields = fields;
	req.nform_fields = 1;
	if (!llm_remote_perform(&req, &resp, stop))
		return NULL;
	if (!llm_remote_ok(model, &resp, auth->secret, NULL, error))
		return NULL;
	body = llm_remote_body(&resp);
	id = model->routine->parse_file(body, strlen(body), err, sizeof(err));
	if (id == NULL)
		error->message = pstrdup(err);
	else if (!llm_is_plain_id(id))
	{
		error->message = psprintf("the provider named the file \"%s\", which is not a plain id", id);
		id = NULL;
	}
	return id;
}

int64
llm_files_download(const LlmModel *model, const LlmRemoteAuth *auth, const char *file_id,
				   const char *path, int64 max_bytes, bool (*stop) (void), LlmRemoteError *error)
{
	LlmHttpRequest req = {0};
	LlmHttpResponse resp;
	memset(error, 0, sizeof(*error));
	error->retry_after_ms = -1;
	if (!llm_is_plain_id(file_id))
	{
		error->message = psprintf("file id \"%s\" is not a plain id", file_id);
		return -1;
	}
	req.url = llm_provider_url(model, psprintf("%s/%s/content", model->routine->files_path, file_id));
	req.get = true;
	req.headers = auth->headers;
	req.nheaders = auth->nheaders;
	req.connect_timeout_ms = llm_connect_timeout_ms;
	req.timeout_ms = 0;
	req.stall_timeout_s = Max(llm_request_timeout_ms / 1000, 1);
	req.max_response_bytes = (size_t) max_bytes;
	req.download_path = path;
	if (!llm_remote_perform(&req, &resp, stop))
		return -1;
	/* the bytes went to the file: only an error body is checked in memory */
	if (resp.outcome == LLM_HTTP_RESPONSE && resp.status >= 200 && resp.status < 300)
		return (int64) resp.downloaded;
	(void) llm_remote_ok(model, &resp, auth->secret, NULL, error);
	return -1;
}
