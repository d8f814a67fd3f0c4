/*
 * engine.c — HTTP transfers on libcurl's multi interface (see engine.h).
 *
 * A backend keeps one multi handle for its whole life, so connections to a
 * provider are kept alive and reused from one call to the next.  Transfers
 * live in their engine's memory context; a reset callback on that context
 * detaches and frees every curl handle still attached, which is how ERROR
 * and query cancel leave nothing behind.  libcurl allocates with malloc, and
 * so do the transfer's header list and receive buffer: nothing is handed to
 * curl that palloc could free under it.
 */
#include "net/engine.h"

#include "lib/ilist.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#define POLL_SLICE_MS 100		/* longest sleep before looking at interrupts */
#define DOWNLOAD_ERROR_BYTES (1024 * 1024)	/* the most of a download's error body kept */

typedef struct LlmTransfer
{
	LlmEngine  *engine;
	dlist_node	node;			/* in engine->running or engine->done */
	CURL	   *easy;
	struct curl_slist *headers;
	curl_mime  *mime;			/* a multipart upload's form, or NULL */
	char	   *buf;			/* malloc'd response body */
	size_t		len;
	size_t		cap;
	size_t		limit;
	bool		too_large;
	const char *download_path;
	int			download_fd;	/* -1: not opened */
	size_t		downloaded;
	char		request_id[128];
	double		retry_after_ms;
	char		errbuf[CURL_ERROR_SIZE];
	CURLcode	code;
	LlmHttpResponse *resp;
	MemoryContext result_context;
	void	   *tag;
} LlmTransfer;

struct LlmEngine
{
	MemoryContext context;
	MemoryContextCallback cleanup;
	dlist_head	running;
	dlist_head	done;
	int			pending;
};

static CURLM *backend_multi = NULL;

static CURLM *
get_backend_multi(void)
{
	if (backend_multi == NULL)
	{
		if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not initialise libcurl")));
		backend_multi = curl_multi_init();
		if (backend_multi == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl multi handle")));
	}
	return backend_multi;
}

/* Frees what curl and malloc own; the struct itself is palloc'd. */
static void
transfer_release(LlmTransfer *t)
{
	if (t->easy != NULL)
	{
		curl_multi_remove_handle(backend_multi, t->easy);
		curl_easy_cleanup(t->easy);
		t->easy = NULL;
	}
	if (t->headers != NULL)
	{
		/* curl_slist_append copied the headers, the key's among them */
		for (struct curl_slist *h = t->headers; h != NULL; h = h->next)
			explicit_bzero(h->data, strlen(h->data));
		curl_slist_free_all(t->headers);
		t->headers = NULL;
	}
	if (t->mime != NULL)
	{
		/* after the easy handle, which may still point at it */
		curl_mime_free(t->mime);
		t->mime = NULL;
	}
	free(t->buf);
	t->buf = NULL;
	if (t->download_fd >= 0)
	{
		close(t->download_fd);
		t->download_fd = -1;
	}
}

static void
engine_cleanup(void *arg)
{
	LlmEngine  *engine = (LlmEngine *) arg;
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &engine->running)
		transfer_release(dlist_container(LlmTransfer, node, iter.cur));
	dlist_foreach_modify(iter, &engine->done)
		transfer_release(dlist_container(LlmTransfer, node, iter.cur));
	dlist_init(&engine->running);
	dlist_init(&engine->done);
	engine->pending = 0;
}

LlmEngine *
llm_engine_create(MemoryContext context)
{
	LlmEngine  *engine = MemoryContextAllocZero(context, sizeof(LlmEngine));

	get_backend_multi();
	engine->context = context;
	dlist_init(&engine->running);
	dlist_init(&engine->done);
	engine->cleanup.func = engine_cleanup;
	engine->cleanup.arg = engine;
	MemoryContextRegisterResetCallback(context, &engine->cleanup);
	return engine;
}

/*
 * A chunk of a download: written to the file when the status is 2xx (true),
 * else left for memory (false).  A failed write or open leaves download_fd
 * at -1 (or too_large set), and the transfer stops.
 */
static bool
download_chunk(LlmTransfer *t, const char *data, size_t n)
{
	long		status = 0;

	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status >= 300)
		return false;
	if (t->downloaded + n > t->limit)
	{
		t->too_large = true;
		return true;
	}
	if (t->downloaded == 0 && t->download_fd < 0)
	{
		t->download_fd = open(t->download_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
		if (t->download_fd < 0)
		{
			snprintf(t->errbuf, sizeof(t->errbuf), "could not open the download file: %s",
					 strerror(errno));
			return true;
		}
	}
	else if (t->download_fd < 0)
		return true;
	while (n > 0)
	{
		ssize_t		w = write(t->download_fd, data, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
		{
			snprintf(t->errbuf, sizeof(t->errbuf), "could not write the download file: %s",
					 strerror(errno));
			close(t->download_fd);
			t->download_fd = -1;
			return true;
		}
		data += w;
		n -= w;
		t->downloaded += w;
	}
	return true;
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	LlmTransfer *t = (LlmTransfer *) arg;
	size_t		n = size * nmemb;

	if (t->download_path != NULL && download_chunk(t, data, n))
		return t->too_large || t->download_fd < 0 ? 0 : n;
	/* a download's limit is for the file: an error body in memory stays small */
	if (t->len + n > (t->download_path != NULL ? Min(t->limit, DOWNLOAD_ERROR_BYTES) : t->limit))
	{
		t->too_large = true;
		return 0;				/* makes curl stop with CURLE_WRITE_ERROR */
	}
	if (t->len + n + 1 > t->cap)
	{
		size_t		cap = Max(t->cap * 2, t->len + n + 1);
		char	   *buf;

		cap = Max(cap, 8192);
		buf = realloc(t->buf, cap);
		if (buf == NULL)
			return 0;
		t->buf = buf;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, data, n);
	t->len += n;
	t->buf[t->len] = '\0';
	return n;
}

/* Copies a header's value, trimmed, into out if name matches. */
static bool
header_value(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
	size_t		name_len = strlen(name);
	size_t		start;
	size_t		end;

	if (len <= name_len || pg_strncasecmp(line, name, name_len) != 0 || line[name_len] != ':')
		return false;
	start = name_len + 1;
	end = len;
	while (start < end && (line[start] == ' ' || line[start] == '\t'))
		start++;
	while (end > start && (line[end - 1] == '\r' || line[end - 1] == '\n' || line[end - 1] == ' '))
		end--;
	if (end - start >= outlen)
		end = start + outlen - 1;
	memcpy(out, line + start, end - start);
	out[end - start] = '\0';
	return true;
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	LlmTransfer *t = (LlmTransfer *) arg;
	size_t		n = size * nmemb;
	char		value[64];

	/* a new status line (after a 100 Continue, say) starts a new header set */
	if (n > 5 && strncmp(data, "HTTP/", 5) == 0)
	{
		t->request_id[0] = '\0';
		t->retry_after_ms = -1;
	}
	else if (header_value(data, n, "x-request-id", t->request_id, sizeof(t->request_id)) ||
			 header_value(data, n, "request-id", t->request_id, sizeof(t->request_id)))
		 /* done */ ;
	else if (header_value(data, n, "retry-after-ms", value, sizeof(value)))
	{
		char	   *end;
		double		ms = strtod(value, &end);

		if (end != value && ms >= 0)
			t->retry_after_ms = ms;
	}
	else if (header_value(data, n, "retry-after", value, sizeof(value)) &&
			 t->retry_after_ms < 0)
	{
		/* seconds; the HTTP-date form is not used by LLM providers */
		char	   *end;
		double		seconds = strtod(value, &end);

		if (end != value && seconds >= 0)
			t->retry_after_ms = seconds * 1000.0;
	}
	return n;
}

#define SETOPT(easy, option, value) \
	do { \
		if (curl_easy_setopt((easy), (option), (value)) != CURLE_OK) \
			elog(ERROR, "could not set libcurl option %s", #option); \
	} while (0)

/*
 * The form of a multipart upload: text fields, then the file, which libcurl
 * opens and reads in pieces as it sends (curl_mime_filedata), so memory
 * stays the same whatever the file's size.  The form belongs to the
 * transfer from its creation: transfer_release frees it on every path.
 */
static void
set_form(LlmTransfer *t, const LlmHttpRequest *req)
{
	curl_mimepart *part;

	t->mime = curl_mime_init(t->easy);
	if (t->mime == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a multipart form")));
	for (int i = 0; i < req->nform_fields; i++)
	{
		part = curl_mime_addpart(t->mime);
		if (part == NULL ||
			curl_mime_name(part, req->form_fields[2 * i]) != CURLE_OK ||
			curl_mime_data(part, req->form_fields[2 * i + 1], CURL_ZERO_TERMINATED) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not build a multipart form")));
	}
	part = curl_mime_addpart(t->mime);
	if (part == NULL ||
		curl_mime_name(part, req->upload_field) != CURLE_OK ||
		curl_mime_filedata(part, req->upload_path) != CURLE_OK ||
		curl_mime_filename(part, req->upload_filename) != CURLE_OK ||
		curl_mime_type(part, "application/octet-stream") != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not attach file \"%s\" to a multipart form", req->upload_path)));
	SETOPT(t->easy, CURLOPT_MIMEPOST, t->mime);
	/* larger reads of the file, fewer trips through the multi loop (64 kB by default) */
	SETOPT(t->easy, CURLOPT_UPLOAD_BUFFERSIZE, 1024L * 1024L);
}

void
llm_engine_add(LlmEngine *engine, const LlmHttpRequest *req,
			   LlmHttpResponse *resp, void *tag)
{
	LlmTransfer *t = MemoryContextAllocZero(engine->context, sizeof(LlmTransfer));
	CURLMcode	mcode;

	t->engine = engine;
	t->resp = resp;
	t->tag = tag;
	t->result_context = CurrentMemoryContext;
	t->limit = req->max_response_bytes;
	t->download_path = req->download_path;
	t->download_fd = -1;
	t->retry_after_ms = -1;
	memset(resp, 0, sizeof(*resp));

	/* tracked before anything is allocated, so the cleanup sees it all */
	dlist_push_tail(&engine->running, &t->node);
	engine->pending++;

	t->easy = curl_easy_init();
	if (t->easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	for (int i = 0; i < req->nheaders; i++)
	{
		struct curl_slist *headers = curl_slist_append(t->headers, req->headers[i]);

		if (headers == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not build request headers")));
		t->headers = headers;
	}

	SETOPT(t->easy, CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SETOPT(t->easy, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SETOPT(t->easy, CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(t->easy, CURLOPT_NOSIGNAL, 1L);	/* PostgreSQL owns SIGALRM */
	SETOPT(t->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(t->easy, CURLOPT_ACCEPT_ENCODING, "");
	SETOPT(t->easy, CURLOPT_USERAGENT, "llmext/" EXTVERSION);
	SETOPT(t->easy, CURLOPT_HTTPHEADER, t->headers);
	if (req->upload_path != NULL)
		set_form(t, req);
	else if (req->get)
		SETOPT(t->easy, CURLOPT_HTTPGET, 1L);
	else
	{
		SETOPT(t->easy, CURLOPT_POST, 1L);
		SETOPT(t->easy, CURLOPT_POSTFIELDS, req->body);
		SETOPT(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(req->body));
	}
	if (req->stall_timeout_s > 0)
	{
		SETOPT(t->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
		SETOPT(t->easy, CURLOPT_LOW_SPEED_TIME, req->stall_timeout_s);
	}
	SETOPT(t->easy, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
	SETOPT(t->easy, CURLOPT_TIMEOUT_MS, req->timeout_ms);
	SETOPT(t->easy, CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(t->easy, CURLOPT_WRITEDATA, t);
	SETOPT(t->easy, CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(t->easy, CURLOPT_HEADERDATA, t);
	SETOPT(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
	SETOPT(t->easy, CURLOPT_PRIVATE, t);

	mcode = curl_multi_add_handle(backend_multi, t->easy);
	if (mcode != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start an HTTP transfer: %s", curl_multi_strerror(mcode))));
}

static LlmHttpOutcome
outcome_of(LlmTransfer *t)
{
	switch (t->code)
	{
		case CURLE_OK:
			return LLM_HTTP_RESPONSE;
		case CURLE_OPERATION_TIMEDOUT:
			return LLM_HTTP_TIMEOUT;
		case CURLE_COULDNT_CONNECT:
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
			return LLM_HTTP_CONNECT_FAILED;
		case CURLE_WRITE_ERROR:
			return t->too_large ? LLM_HTTP_TOO_LARGE : LLM_HTTP_FAILED;
		default:
			return LLM_HTTP_FAILED;
	}
}

/* Fills the caller's response from a finished transfer and frees curl's side. */
static void
transfer_finish(LlmTransfer *t)
{
	LlmHttpResponse *resp = t->resp;
	double		seconds = 0;
	long		request_bytes = 0;
	long		status = 0;

	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &seconds);
	/* a reused connection reports no connect time, but the request was sent */
	curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &request_bytes);
	resp->connected = request_bytes > 0;
	resp->outcome = outcome_of(t);
	resp->status = status;
	resp->elapsed_ms = seconds * 1000.0;
	resp->retry_after_ms = t->retry_after_ms;
	resp->request_id = t->request_id[0] ? MemoryContextStrdup(t->result_context, t->request_id) : NULL;
	if (resp->outcome != LLM_HTTP_RESPONSE)
		strlcpy(resp->error, t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->code),
				sizeof(resp->error));
	resp->body = MemoryContextAlloc(t->result_context, t->len + 1);
	if (t->len > 0)
		memcpy(resp->body, t->buf, t->len);
	resp->body[t->len] = '\0';
	resp->body_len = t->len;
	resp->downloaded = t->downloaded;
	transfer_release(t);
}

/* Moves every transfer curl reports as finished to its engine's done list. */
static void
collect_finished(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(backend_multi, &left)) != NULL)
	{
		LlmTransfer *t;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		t->code = msg->data.result;
		dlist_delete(&t->node);
		dlist_push_tail(&t->engine->done, &t->node);
	}
}

void *
llm_engine_next_done(LlmEngine *engine, long timeout_ms)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	for (;;)
	{
		int			running;
		int			numfds;
		long		wait_ms;

		if (!dlist_is_empty(&engine->done))
		{
			LlmTransfer *t = dlist_container(LlmTransfer, node,
											 dlist_pop_head_node(&engine->done));
			void	   *tag = t->tag;

			engine->pending--;
			transfer_finish(t);
			pfree(t);
			return tag;
		}
		if (engine->pending == 0)
			return NULL;

		/*
		 * curl's poll is no latch wait, so WL_EXIT_ON_PM_DEATH does not cover
		 * it: without the postmaster, stop at once (as WaitLatch would), and
		 * before curl sends anything more, rather than go on calling a
		 * provider for answers nobody will record.  The check is cheap.
		 */
		if (!PostmasterIsAlive())
			proc_exit(1);
		curl_multi_perform(backend_multi, &running);
		collect_finished();
		if (!dlist_is_empty(&engine->done))
			continue;

		wait_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (wait_ms <= 0)
			return NULL;
		pgstat_report_wait_start(PG_WAIT_EXTENSION);
		curl_multi_poll(backend_multi, NULL, 0, (int) Min(wait_ms, POLL_SLICE_MS), &numfds);
		pgstat_report_wait_end();
		CHECK_FOR_INTERRUPTS();
	}
}

void
llm_engine_kick(LlmEngine *engine)
{
	int			running;

	if (engine->pending > 0)
	{
		if (!PostmasterIsAlive())
			proc_exit(1);		/* as in llm_engine_next_done */
		curl_multi_perform(backend_multi, &running);
	}
}

bool
llm_engine_cancel(LlmEngine *engine, void *tag)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &engine->running)
	{
		LlmTransfer *t = dlist_container(LlmTransfer, node, iter.cur);

		if (t->tag == tag)
		{
			dlist_delete(&t->node);
			transfer_release(t);
			pfree(t);
			engine->pending--;
			return true;
		}
	}
	return false;
}

void
llm_http_perform(const LlmHttpRequest *req, LlmHttpResponse *resp)
{
	MemoryContext context = AllocSetContextCreate(CurrentMemoryContext,
												  "llmext transfer",
												  ALLOCSET_SMALL_SIZES);
	LlmEngine  *engine = llm_engine_create(context);

	llm_engine_add(engine, req, resp, resp);
	while (llm_engine_next_done(engine, POLL_SLICE_MS * 10) == NULL)
		 /* keep waiting: the transfer's own timeout ends it */ ;
	MemoryContextDelete(context);
}
