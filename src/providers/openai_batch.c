/*
 * openai_batch.c — the OpenAI Batch API: the lines of an input file, the
 * body of a batch create, batch objects and their lists, and the lines of
 * output and error files.  Tolerant like openai_finetune.c: unknown keys
 * are ignored, a status is kept as the text the provider sent whatever it
 * is, and every field but an object's id (a line's custom_id) may be
 * missing or null.
 *
 * Pure code (see request.h).
 */
#include "providers/openai.h"

#include "providers/provider.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A string member that is there and not empty: an id. */
static char *
id_of(const cJSON *object, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

	return cJSON_IsString(item) && item->valuestring[0] != '\0'
		? llm_strdup(item->valuestring) : NULL;
}

/* The bytes s takes inside a JSON string, escaped as append_escaped writes it. */
static size_t
escaped_len(const char *s)
{
	size_t		n = 0;

	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' ||
			c == '\r' || c == '\t')
			n += 2;
		else if (c < 0x20)
			n += 6;				/* \u00XX */
		else
			n++;
	}
	return n;
}

/*
 * Writes s escaped for a JSON string, as cJSON prints one: quote, backslash
 * and control characters escaped, every other byte (UTF-8 included) as is.
 * Returns the end.
 */
static char *
append_escaped(char *p, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		switch (c)
		{
			case '"':
			case '\\':
				*p++ = '\\';
				*p++ = (char) c;
				break;
			case '\b':
				*p++ = '\\';
				*p++ = 'b';
				break;
			case '\f':
				*p++ = '\\';
				*p++ = 'f';
				break;
			case '\n':
				*p++ = '\\';
				*p++ = 'n';
				break;
			case '\r':
				*p++ = '\\';
				*p++ = 'r';
				break;
			case '\t':
				*p++ = '\\';
				*p++ = 't';
				break;
			default:
				if (c < 0x20)
				{
					memcpy(p, "\\u00", 4);
					p += 4;
					*p++ = hex[c >> 4];
					*p++ = hex[c & 15];
				}
				else
					*p++ = (char) c;
		}
	}
	return p;
}

static char *
append_text(char *p, const char *s, size_t len)
{
	memcpy(p, s, len);
	return p + len;
}

#define LINE_ID "{\"custom_id\":\""
#define LINE_URL "\",\"method\":\"POST\",\"url\":\""
#define LINE_BODY "\",\"body\":"

/*
 * {"custom_id":..,"method":"POST","url":..,"body":<body>}.  Called once
 * per request of a batch (up to 50,000), so the line is written in one
 * allocation rather than parsed and printed: body is copied as it is and
 * must be JSON text on one line (what cJSON_PrintUnformatted writes: it
 * never puts a raw newline out).  NULL when an argument is NULL.
 */
char *
openai_batch_line(const char *custom_id, const char *url, const char *body)
{
	size_t		body_len;
	char	   *line;
	char	   *p;

	if (custom_id == NULL || url == NULL || body == NULL)
		return NULL;
	body_len = strlen(body);
	line = cJSON_malloc(strlen(LINE_ID) + escaped_len(custom_id) + strlen(LINE_URL) +
						escaped_len(url) + strlen(LINE_BODY) + body_len + 2);
	p = append_text(line, LINE_ID, strlen(LINE_ID));
	p = append_escaped(p, custom_id);
	p = append_text(p, LINE_URL, strlen(LINE_URL));
	p = append_escaped(p, url);
	p = append_text(p, LINE_BODY, strlen(LINE_BODY));
	p = append_text(p, body, body_len);
	*p++ = '}';
	*p = '\0';
	return line;
}

/* metadata holds only the tags given, and is left out when there is none */
char *
openai_batch_request(const char *input_file_id, const char *endpoint,
					 const char *batch_tag, const char *database_tag)
{
	cJSON	   *body = cJSON_CreateObject();
	char	   *text;

	cJSON_AddStringToObject(body, "input_file_id", input_file_id);
	cJSON_AddStringToObject(body, "endpoint", endpoint);
	cJSON_AddStringToObject(body, "completion_window", "24h");
	if (batch_tag != NULL || database_tag != NULL)
	{
		cJSON	   *metadata = cJSON_AddObjectToObject(body, "metadata");

		if (batch_tag != NULL)
			cJSON_AddStringToObject(metadata, LLM_BATCH_META_BATCH, batch_tag);
		if (database_tag != NULL)
			cJSON_AddStringToObject(metadata, LLM_FINETUNE_META_DATABASE, database_tag);
	}
	text = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	return text;
}

/* ?limit=100[&after=<id>] */
char *
openai_batch_list_query(const char *after)
{
	char	   *q = cJSON_malloc(32 + (after ? 3 * strlen(after) : 0));
	size_t		len;

	strcpy(q, "?limit=100");
	len = strlen(q);
	if (after != NULL)
	{
		strcpy(q + len, "&after=");
		len += strlen("&after=");
		openai_append_encoded(q, &len, after);
	}
	return q;
}

/*
 * An error as one sentence: "code: message", the message or the code alone
 * when the other is missing, a plain string as it is, and anything else
 * (an object with neither, a number) as its JSON text, so that an error is
 * never lost.  line_key names a line number to add as " (line N)", or NULL.
 */
static char *
error_text(const cJSON *error, const char *line_key)
{
	const cJSON *code_item = cJSON_GetObjectItemCaseSensitive(error, "code");
	const cJSON *message_item = cJSON_GetObjectItemCaseSensitive(error, "message");
	int64_t		line = line_key ? openai_count_member(error, line_key) : -1;
	char	   *code = NULL;
	const char *message = NULL;
	char	   *text;
	size_t		size;

	if (cJSON_IsString(error))
		return llm_strdup(error->valuestring);
	if (!cJSON_IsObject(error))
		return cJSON_PrintUnformatted(error);
	if (cJSON_IsString(code_item) && code_item->valuestring[0] != '\0')
		code = llm_strdup(code_item->valuestring);
	else if (cJSON_IsNumber(code_item))
		code = cJSON_PrintUnformatted(code_item);
	if (cJSON_IsString(message_item) && message_item->valuestring[0] != '\0')
		message = message_item->valuestring;
	if (code == NULL && message == NULL)
		return cJSON_PrintUnformatted(error);

	size = (code ? strlen(code) : 0) + (message ? strlen(message) : 0) + 48;
	text = cJSON_malloc(size);
	snprintf(text, size, "%s%s%s", code ? code : "", code && message ? ": " : "",
			 message ? message : "");
	if (line >= 0)
		snprintf(text + strlen(text), size - strlen(text), " (line %lld)", (long long) line);
	cJSON_free(code);
	return text;
}

static bool
batch_from(const cJSON *object, LlmProviderBatch *batch, char *err, size_t errlen)
{
	const cJSON *counts = cJSON_GetObjectItemCaseSensitive(object, "request_counts");
	const cJSON *errors = cJSON_GetObjectItemCaseSensitive(object, "errors");
	const cJSON *metadata = cJSON_GetObjectItemCaseSensitive(object, "metadata");
	const cJSON *first;

	memset(batch, 0, sizeof(*batch));
	batch->id = id_of(object, "id");
	if (batch->id == NULL)
	{
		snprintf(err, errlen, "the batch object has no id");
		return false;
	}
	batch->status = openai_string_member(object, "status");
	batch->output_file_id = id_of(object, "output_file_id");
	batch->error_file_id = id_of(object, "error_file_id");
	batch->total = openai_count_member(counts, "total");
	batch->completed = openai_count_member(counts, "completed");
	batch->failed = openai_count_member(counts, "failed");
	/* {"object": "list", "data": [...]}; a bare array is read the same way */
	if (cJSON_IsObject(errors))
		errors = cJSON_GetObjectItemCaseSensitive(errors, "data");
	first = cJSON_IsArray(errors) ? cJSON_GetArrayItem(errors, 0) : NULL;
	if (first != NULL && !cJSON_IsNull(first))
		batch->error_message = error_text(first, "line");
	if (cJSON_IsObject(metadata))
	{
		batch->batch_tag = openai_string_member(metadata, LLM_BATCH_META_BATCH);
		batch->database_tag = openai_string_member(metadata, LLM_FINETUNE_META_DATABASE);
	}
	return true;
}

bool
openai_parse_batch(const char *body, size_t len, LlmProviderBatch *batch,
				   char *err, size_t errlen)
{
	cJSON	   *root = cJSON_ParseWithLength(body, len);
	bool		ok;

	memset(batch, 0, sizeof(*batch));
	if (!cJSON_IsObject(root))
	{
		snprintf(err, errlen, root == NULL ? "the response body is not valid JSON"
				 : "the response body is not a JSON object");
		cJSON_Delete(root);
		return false;
	}
	ok = batch_from(root, batch, err, errlen);
	cJSON_Delete(root);
	return ok;
}

/*
 * Items without an id are skipped: they can be neither polled nor matched
 * to a batch of llmext's.  The next page starts after last_id, else after
 * the last item with an id; a page that says there is more but names
 * neither is an error, as paging from the start again would never end.
 */
bool
openai_parse_batch_list(const char *body, size_t len, LlmProviderBatchList *list,
						char *err, size_t errlen)
{
	cJSON	   *root = cJSON_ParseWithLength(body, len);
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
	const cJSON *item;
	char	   *last_id;

	memset(list, 0, sizeof(*list));
	if (!cJSON_IsArray(data))
	{
		snprintf(err, errlen, root == NULL ? "the response body is not valid JSON"
				 : "the list has no data array");
		cJSON_Delete(root);
		return false;
	}
	list->batches = cJSON_malloc(sizeof(LlmProviderBatch) * (cJSON_GetArraySize(data) + 1));
	cJSON_ArrayForEach(item, data)
	{
		char		ignored[8];

		if (cJSON_IsObject(item) &&
			batch_from(item, &list->batches[list->n], ignored, sizeof(ignored)))
			list->n++;
	}
	list->has_more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "has_more"));
	last_id = id_of(root, "last_id");
	if (last_id == NULL && list->n > 0)
		last_id = llm_strdup(list->batches[list->n - 1].id);
	list->last_id = last_id;
	cJSON_Delete(root);
	if (list->has_more && list->last_id == NULL)
	{
		snprintf(err, errlen, "the list of batches has more pages but no last id");
		llm_provider_batch_list_free(list);
		return false;
	}
	return true;
}

/* null is no response; null, false and "" are no error */
static bool
present(const cJSON *item)
{
	return item != NULL && !cJSON_IsNull(item);
}

static bool
error_present(const cJSON *error)
{
	return present(error) && !cJSON_IsFalse(error) &&
		!(cJSON_IsString(error) && error->valuestring[0] == '\0');
}

/* An HTTP status: a whole number from 100 to 599. */
static bool
is_status(const cJSON *status)
{
	return cJSON_IsNumber(status) && status->valuedouble >= 100 &&
		status->valuedouble <= 599 && status->valuedouble == floor(status->valuedouble);
}

/*
 * {"id", "custom_id", "response": {"status_code", "request_id", "body"},
 * "error": null | {"code", "message"}}.  The line is the bytes up to len:
 * not NUL-terminated, and a NUL among them (no JSON text holds one) makes
 * the line unreadable, as does anything but white space after the object,
 * rather than a line read up to where it looks complete.  A line with both
 * a response and an error keeps both: the caller decides.
 */
bool
openai_parse_batch_line(const char *line, size_t len, LlmBatchLine *out,
						char *err, size_t errlen)
{
	cJSON	   *root;
	const char *end = NULL;
	const cJSON *custom_id;
	const cJSON *response;
	const cJSON *status;
	const cJSON *error;

	memset(out, 0, sizeof(*out));
	if (line == NULL || memchr(line, '\0', len) != NULL)
	{
		snprintf(err, errlen, "the batch output line holds a NUL byte");
		return false;
	}
	root = cJSON_ParseWithLengthOpts(line, len, &end, false);
	if (root != NULL)
		while (end < line + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
			end++;
	if (root == NULL || end != line + len)
	{
		snprintf(err, errlen, "the batch output line is not valid JSON");
		cJSON_Delete(root);
		return false;
	}
	if (!cJSON_IsObject(root))
	{
		snprintf(err, errlen, "the batch output line is not a JSON object");
		cJSON_Delete(root);
		return false;
	}
	custom_id = cJSON_GetObjectItemCaseSensitive(root, "custom_id");
	response = cJSON_GetObjectItemCaseSensitive(root, "response");
	status = cJSON_GetObjectItemCaseSensitive(response, "status_code");
	error = cJSON_GetObjectItemCaseSensitive(root, "error");
	if (!cJSON_IsString(custom_id) || custom_id->valuestring[0] == '\0')
		snprintf(err, errlen, "the batch output line has no custom_id");
	else if (!present(response) && !error_present(error))
		snprintf(err, errlen, "the batch output line has neither a response nor an error");
	else if (present(response) && !cJSON_IsObject(response))
		snprintf(err, errlen, "the batch output line's response is not an object");
	else if (present(response) && !is_status(status))
		snprintf(err, errlen, "the batch output line's status_code is not an HTTP status");
	else
	{
		out->custom_id = llm_strdup(custom_id->valuestring);
		if (present(response))
		{
			const cJSON *body = cJSON_GetObjectItemCaseSensitive(response, "body");

			out->status_code = (long) status->valuedouble;
			out->request_id = openai_string_member(response, "request_id");
			if (present(body))
				out->body = cJSON_PrintUnformatted(body);
		}
		if (error_present(error))
			out->error = error_text(error, NULL);
		cJSON_Delete(root);
		return true;
	}
	cJSON_Delete(root);
	return false;
}
