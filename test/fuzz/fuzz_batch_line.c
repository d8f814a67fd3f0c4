/*
 * fuzz_batch_line.c — libFuzzer target for the Batch API parsers
 * (src/providers/openai_batch.c): a line of a batch's output or error file
 * (openai_parse_batch_line), a batch object (openai_parse_batch) and a page
 * of batches (openai_parse_batch_list), all of which come from the network.
 * Each input goes through the three parsers, and through batch_line as a
 * custom_id (and, when it is JSON, as a body) to check the line's round trip.
 *
 * The whole input is the line or body, in a copy of exactly its bytes (not
 * NUL-terminated), so reading past len is caught.  Its length decides the
 * size of the error buffer, so that short buffers are exercised too.
 * Checked: a failure leaves a NUL-terminated message and an empty result; a
 * line read has a custom_id, a status of 0 or 100 to 599, an error when it
 * has no status, and a body that is JSON text; a batch has an id and counts
 * of -1 or more; a page that has more names a last id; a line that
 * batch_line builds reads back with the same custom_id and body (none for
 * a body of null).  Everything
 * is freed (LeakSanitizer runs at exit).
 *
 * Build and run with test/fuzz/run.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_checks.h"
#include "providers/openai.h"

static void
check_string(const char *s)
{
	/* reading it all is the check: ASan reports any overrun */
	if (s != NULL && strlen(s) > (size_t) 1 << 30)
		abort();
}

static void
check_err(const char *err, size_t errlen)
{
	if (strnlen(err, errlen) == errlen)
		abort();
}

static void
check_line(const char *body, size_t size, char *err, size_t errlen)
{
	LlmBatchLine out;

	if (!openai_parse_batch_line(body, size, &out, err, errlen))
	{
		check_err(err, errlen);
		if (out.custom_id || out.body || out.request_id || out.error || out.status_code)
			abort();
		return;
	}
	if (out.custom_id == NULL || out.custom_id[0] == '\0')
		abort();
	if (out.status_code != 0 && (out.status_code < 100 || out.status_code > 599))
		abort();
	if (out.status_code == 0 && (out.error == NULL || out.body || out.request_id))
		abort();
	check_string(out.request_id);
	check_string(out.error);
	if (out.body != NULL)
	{
		cJSON	   *again = cJSON_Parse(out.body);

		if (again == NULL)
			abort();
		cJSON_Delete(again);
	}
	llm_batch_line_free(&out);
}

static void
check_batch(const LlmProviderBatch *b)
{
	if (b->id == NULL || b->id[0] == '\0')
		abort();
	if (b->total < -1 || b->completed < -1 || b->failed < -1)
		abort();
	check_string(b->status);
	check_string(b->output_file_id);
	check_string(b->error_file_id);
	check_string(b->error_message);
	check_string(b->batch_tag);
	check_string(b->database_tag);
}

static void
check_batches(const char *body, size_t size, char *err, size_t errlen)
{
	LlmProviderBatch b;
	LlmProviderBatchList list;

	if (openai_parse_batch(body, size, &b, err, errlen))
	{
		check_batch(&b);
		llm_provider_batch_free(&b);
	}
	else
	{
		check_err(err, errlen);
		if (b.id || b.status || b.error_message)
			abort();
	}

	if (openai_parse_batch_list(body, size, &list, err, errlen))
	{
		if (list.n < 0 || (list.has_more && list.last_id == NULL))
			abort();
		for (int i = 0; i < list.n; i++)
			check_batch(&list.batches[i]);
		check_string(list.last_id);
		llm_provider_batch_list_free(&list);
	}
	else
	{
		check_err(err, errlen);
		if (list.n != 0 || list.batches || list.last_id)
			abort();
	}
}

/*
 * The input up to its first NUL as a custom_id, with the input as the body
 * when it is JSON (nested shallow enough to sit two levels deeper in an
 * answer): the line must read back with both, and so must the answer a
 * provider would write for it.  Bodies are compared as printed text, as
 * cJSON_Compare tells apart two copies of an object with a key twice.
 */
static void
check_round_trip(const char *body, size_t size)
{
	size_t		id_len = strnlen(body, size < 256 ? size : 256);
	char	   *custom_id = malloc(id_len + 1);
	cJSON	   *json = cJSON_ParseWithLength(body, size);
	char	   *request = json ? cJSON_PrintUnformatted(json) : NULL;
	char	   *line;
	char	   *body_again;
	const char *id_again;
	cJSON	   *in;
	char		err[256];

	if (request == NULL || llm_json_text_depth(request) > CJSON_NESTING_LIMIT - 3)
	{
		free(request);
		request = strdup("{}");
	}
	memcpy(custom_id, body, id_len);
	custom_id[id_len] = '\0';
	line = openai_batch_line(custom_id, "/v1/chat/completions", request);
	in = cJSON_Parse(line);
	id_again = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(in, "custom_id"));
	body_again = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(in, "body"));
	if (!cJSON_IsObject(in) || strchr(line, '\n') != NULL || id_again == NULL ||
		strcmp(id_again, custom_id) != 0 || body_again == NULL || strcmp(body_again, request) != 0)
		abort();
	if (id_len > 0)
	{
		cJSON	   *answer = cJSON_CreateObject();
		cJSON	   *response;
		char	   *text;
		LlmBatchLine out;

		cJSON_AddStringToObject(answer, "custom_id", custom_id);
		response = cJSON_AddObjectToObject(answer, "response");
		cJSON_AddNumberToObject(response, "status_code", 200);
		cJSON_AddItemToObject(response, "body",
							  cJSON_DetachItemFromObjectCaseSensitive(in, "body"));
		text = cJSON_PrintUnformatted(answer);
		/* a body of null is no body */
		if (!openai_parse_batch_line(text, strlen(text), &out, err, sizeof(err)) ||
			strcmp(out.custom_id, custom_id) != 0 || out.status_code != 200 ||
			(strcmp(request, "null") == 0 ? out.body != NULL
			 : out.body == NULL || strcmp(out.body, request) != 0))
			abort();
		llm_batch_line_free(&out);
		free(text);
		cJSON_Delete(answer);
	}
	cJSON_Delete(in);
	cJSON_Delete(json);
	free(body_again);
	free(line);
	free(request);
	free(custom_id);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		err[512];
	size_t		errlen = size % 3 == 0 ? 1 + size % 40 : sizeof(err);
	/* a copy of exactly size bytes, so reading past the line is caught */
	char	   *body = malloc(size > 0 ? size : 1);

	memcpy(body, data, size);
	check_line(body, size, err, errlen);
	check_batches(body, size, err, errlen);
	check_round_trip(body, size);
	free(body);
	return 0;
}
