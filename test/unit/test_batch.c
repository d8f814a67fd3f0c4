/*
 * Unit tests of openai_batch.c: input lines, batch creates, list queries,
 * batch objects and lists, output and error file lines, and a line's round
 * trip through a provider that echoes it.
 */
#include "unit.h"

#include <stdlib.h>

#include "providers/openai.h"
#include "providers/provider.h"

static const LlmProviderRoutine *r;

static void
test_line(void)
{
	char	   *line = r->batch_line("req-1", "/v1/chat/completions",
									 "{\"model\":\"m\",\"messages\":[]}");
	cJSON	   *parsed;

	CHECK_STR(line, "{\"custom_id\":\"req-1\",\"method\":\"POST\","
			  "\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"messages\":[]}}");
	free(line);

	/* quotes, backslashes and control characters escaped; UTF-8 as it is */
	line = r->batch_line("a\"b\\c\n\t\r\b\f\x01\x1f\x7f d\xc3\xa9\xe2\x82\xac", "/v1/x\"y", "1");
	CHECK_STR(line, "{\"custom_id\":\"a\\\"b\\\\c\\n\\t\\r\\b\\f\\u0001\\u001f\x7f d\xc3\xa9\xe2\x82\xac\","
			  "\"method\":\"POST\",\"url\":\"/v1/x\\\"y\",\"body\":1}");
	/* and what cJSON reads back is what was given */
	parsed = cJSON_Parse(line);
	CHECK(cJSON_IsObject(parsed));
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(parsed, "custom_id")),
			  "a\"b\\c\n\t\r\b\f\x01\x1f\x7f d\xc3\xa9\xe2\x82\xac");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(parsed, "url")), "/v1/x\"y");
	CHECK(strchr(line, '\n') == NULL);
	cJSON_Delete(parsed);
	free(line);

	/* empty strings are kept; a NULL argument gives no line */
	line = r->batch_line("", "", "{}");
	CHECK_STR(line, "{\"custom_id\":\"\",\"method\":\"POST\",\"url\":\"\",\"body\":{}}");
	free(line);
	CHECK(r->batch_line("a", "/v1/chat/completions", NULL) == NULL);
	CHECK(r->batch_line(NULL, "/v1/chat/completions", "{}") == NULL);
	CHECK(r->batch_line("a", NULL, "{}") == NULL);
}

static void
test_create_and_query(void)
{
	char	   *body = r->batch_request("file-in", "/v1/chat/completions", "42", "7311/16384");
	char	   *q;

	CHECK_STR(body, "{\"input_file_id\":\"file-in\",\"endpoint\":\"/v1/chat/completions\","
			  "\"completion_window\":\"24h\",\"metadata\":{\"llmext_batch\":\"42\","
			  "\"llmext_database\":\"7311/16384\"}}");
	free(body);
	body = r->batch_request("file-in", "/v1/embeddings", "42", NULL);
	CHECK_STR(body, "{\"input_file_id\":\"file-in\",\"endpoint\":\"/v1/embeddings\","
			  "\"completion_window\":\"24h\",\"metadata\":{\"llmext_batch\":\"42\"}}");
	free(body);
	body = r->batch_request("file-\"q\"", "/v1/chat/completions", NULL, NULL);
	CHECK_STR(body, "{\"input_file_id\":\"file-\\\"q\\\"\",\"endpoint\":\"/v1/chat/completions\","
			  "\"completion_window\":\"24h\"}");
	free(body);

	q = r->batch_list_query(NULL);
	CHECK_STR(q, "?limit=100");
	free(q);
	q = r->batch_list_query("batch_abc-1.2~x");
	CHECK_STR(q, "?limit=100&after=batch_abc-1.2~x");
	free(q);
	q = r->batch_list_query("a b&c=d/\xc3\xa9");
	CHECK_STR(q, "?limit=100&after=a%20b%26c%3Dd%2F%C3%A9");
	free(q);
}

static void
test_batch_object(void)
{
	static const char *const statuses[] = {
		"validating", "failed", "in_progress", "finalizing", "completed", "expired",
		"cancelling", "cancelled", "some_new_status"
	};
	char		err[128];
	char		text[512];
	LlmProviderBatch b;
	const char *full = "{\"id\":\"batch_1\",\"object\":\"batch\",\"endpoint\":\"/v1/chat/completions\","
		"\"errors\":null,\"input_file_id\":\"file-in\",\"completion_window\":\"24h\","
		"\"status\":\"completed\",\"output_file_id\":\"file-out\",\"error_file_id\":\"file-err\","
		"\"created_at\":1711471533,\"in_progress_at\":1711471538,\"completed_at\":1711493163,"
		"\"request_counts\":{\"total\":100,\"completed\":95,\"failed\":5},"
		"\"usage\":{\"input_tokens\":1000,\"output_tokens\":200,\"total_tokens\":1200},"
		"\"metadata\":{\"llmext_batch\":\"42\",\"llmext_database\":\"1/2\",\"other\":\"x\"}}";
	const char *bare = "{\"id\":\"batch_2\"}";
	const char *nulls = "{\"id\":\"batch_3\",\"status\":null,\"output_file_id\":null,"
		"\"error_file_id\":\"\",\"request_counts\":{\"total\":null,\"completed\":-1,\"failed\":1e300},"
		"\"metadata\":null}";

	CHECK(r->parse_batch(full, strlen(full), &b, err, sizeof(err)));
	CHECK_STR(b.id, "batch_1");
	CHECK_STR(b.status, "completed");
	CHECK_STR(b.output_file_id, "file-out");
	CHECK_STR(b.error_file_id, "file-err");
	CHECK(b.total == 100 && b.completed == 95 && b.failed == 5);
	CHECK(b.error_message == NULL);
	CHECK_STR(b.batch_tag, "42");
	CHECK_STR(b.database_tag, "1/2");
	llm_provider_batch_free(&b);
	CHECK(b.id == NULL);

	/* every status, known or not, is kept as text */
	for (size_t i = 0; i < LLM_LENGTHOF(statuses); i++)
	{
		snprintf(text, sizeof(text), "{\"id\":\"b\",\"status\":\"%s\"}", statuses[i]);
		CHECK(r->parse_batch(text, strlen(text), &b, err, sizeof(err)));
		CHECK_STR(b.status, statuses[i]);
		llm_provider_batch_free(&b);
	}

	/* missing and null fields: NULL strings, -1 counts */
	CHECK(r->parse_batch(bare, strlen(bare), &b, err, sizeof(err)));
	CHECK(b.status == NULL && b.output_file_id == NULL && b.error_file_id == NULL);
	CHECK(b.total == -1 && b.completed == -1 && b.failed == -1);
	CHECK(b.error_message == NULL && b.batch_tag == NULL && b.database_tag == NULL);
	llm_provider_batch_free(&b);
	CHECK(r->parse_batch(nulls, strlen(nulls), &b, err, sizeof(err)));
	CHECK(b.status == NULL && b.output_file_id == NULL && b.error_file_id == NULL);
	CHECK(b.total == -1 && b.completed == -1);
	CHECK(b.failed == 9007199254740992);
	CHECK(b.batch_tag == NULL);
	llm_provider_batch_free(&b);

	/* no id, an empty id, an error envelope, not an object, not JSON */
	CHECK(!r->parse_batch("{\"status\":\"failed\"}", 19, &b, err, sizeof(err)));
	CHECK_STR(err, "the batch object has no id");
	CHECK(b.status == NULL);
	CHECK(!r->parse_batch("{\"id\":\"\"}", 9, &b, err, sizeof(err)));
	CHECK(!r->parse_batch("{\"id\":7}", 8, &b, err, sizeof(err)));
	strcpy(text, "{\"error\":{\"message\":\"No batch found\",\"type\":\"invalid_request_error\"}}");
	CHECK(!r->parse_batch(text, strlen(text), &b, err, sizeof(err)));
	CHECK_STR(err, "the batch object has no id");
	CHECK(!r->parse_batch("[{\"id\":\"b\"}]", 12, &b, err, sizeof(err)));
	CHECK_STR(err, "the response body is not a JSON object");
	CHECK(!r->parse_batch("{\"id\":\"b\"", 9, &b, err, sizeof(err)));
	CHECK_STR(err, "the response body is not valid JSON");
	CHECK(!r->parse_batch("", 0, &b, err, sizeof(err)));
}

/* The error_message of a batch whose errors member is errors. */
static void
check_batch_error(const char *errors, const char *expected)
{
	char		err[128];
	char		text[512];
	LlmProviderBatch b;

	snprintf(text, sizeof(text), "{\"id\":\"b\",\"status\":\"failed\",\"errors\":%s}", errors);
	CHECK(r->parse_batch(text, strlen(text), &b, err, sizeof(err)));
	if (expected == NULL)
		CHECK(b.error_message == NULL);
	else
		CHECK_STR(b.error_message, expected);
	llm_provider_batch_free(&b);
}

static void
test_batch_errors(void)
{
	check_batch_error("{\"object\":\"list\",\"data\":[{\"code\":\"invalid_json_line\","
					  "\"message\":\"This line is not parseable as valid JSON.\",\"param\":null,"
					  "\"line\":3},{\"code\":\"second\",\"message\":\"not shown\"}]}",
					  "invalid_json_line: This line is not parseable as valid JSON. (line 3)");
	check_batch_error("{\"object\":\"list\",\"data\":[{\"code\":\"token_limit_exceeded\","
					  "\"message\":\"Enqueued token limit reached.\",\"line\":null}]}",
					  "token_limit_exceeded: Enqueued token limit reached.");
	check_batch_error("{\"data\":[{\"message\":\"only a message\"}]}", "only a message");
	check_batch_error("{\"data\":[{\"code\":\"only_a_code\",\"line\":12}]}", "only_a_code (line 12)");
	check_batch_error("{\"data\":[{\"code\":500,\"message\":\"numeric code\"}]}", "500: numeric code");
	check_batch_error("{\"data\":[{\"param\":\"x\"}]}", "{\"param\":\"x\"}");
	check_batch_error("{\"data\":[\"a plain string\"]}", "a plain string");
	check_batch_error("[{\"code\":\"bare_array\",\"message\":\"m\"}]", "bare_array: m");
	check_batch_error("{\"object\":\"list\",\"data\":[]}", NULL);
	check_batch_error("{\"data\":[null]}", NULL);
	check_batch_error("null", NULL);
	check_batch_error("\"not a list\"", NULL);
}

static void
test_list(void)
{
	char		err[128];
	LlmProviderBatchList list;
	const char *page = "{\"object\":\"list\",\"data\":["
		"{\"id\":\"batch_1\",\"status\":\"in_progress\",\"metadata\":{\"llmext_batch\":\"9\"}},"
		"{\"no\":\"id\"},7,"
		"{\"id\":\"batch_2\",\"status\":\"completed\",\"output_file_id\":\"file-o\"}],"
		"\"first_id\":\"batch_1\",\"last_id\":\"batch_2\",\"has_more\":true}";
	const char *no_last = "{\"data\":[{\"id\":\"batch_5\"},{\"id\":\"batch_6\"},{\"x\":1}],"
		"\"has_more\":true}";
	const char *cursor = "{\"data\":[{\"id\":\"batch_5\"}],\"last_id\":\"batch_9\",\"has_more\":false}";
	const char *empty = "{\"object\":\"list\",\"data\":[],\"has_more\":false}";
	const char *stuck = "{\"data\":[{\"no\":\"id\"}],\"has_more\":true}";

	CHECK(r->parse_batch_list(page, strlen(page), &list, err, sizeof(err)));
	CHECK(list.n == 2);
	CHECK_STR(list.batches[0].id, "batch_1");
	CHECK_STR(list.batches[0].batch_tag, "9");
	CHECK_STR(list.batches[1].output_file_id, "file-o");
	CHECK(list.has_more);
	CHECK_STR(list.last_id, "batch_2");
	llm_provider_batch_list_free(&list);
	CHECK(list.n == 0 && list.batches == NULL);

	/* without last_id, the last item with an id */
	CHECK(r->parse_batch_list(no_last, strlen(no_last), &list, err, sizeof(err)));
	CHECK(list.n == 2 && list.has_more);
	CHECK_STR(list.last_id, "batch_6");
	llm_provider_batch_list_free(&list);

	/* the provider's cursor wins over the items */
	CHECK(r->parse_batch_list(cursor, strlen(cursor), &list, err, sizeof(err)));
	CHECK_STR(list.last_id, "batch_9");
	CHECK(!list.has_more);
	llm_provider_batch_list_free(&list);

	CHECK(r->parse_batch_list(empty, strlen(empty), &list, err, sizeof(err)));
	CHECK(list.n == 0 && !list.has_more && list.last_id == NULL);
	llm_provider_batch_list_free(&list);

	/* more pages, but nothing to page after */
	CHECK(!r->parse_batch_list(stuck, strlen(stuck), &list, err, sizeof(err)));
	CHECK_STR(err, "the list of batches has more pages but no last id");
	CHECK(list.n == 0 && list.batches == NULL && list.last_id == NULL);

	CHECK(!r->parse_batch_list("{\"object\":\"list\"}", 17, &list, err, sizeof(err)));
	CHECK_STR(err, "the list has no data array");
	CHECK(!r->parse_batch_list("{\"data\":", 8, &list, err, sizeof(err)));
	CHECK_STR(err, "the response body is not valid JSON");
}

/* Parses line (strlen) expecting success. */
static bool
parse_line(const char *line, LlmBatchLine *out)
{
	char		err[128];

	if (r->parse_batch_line(line, strlen(line), out, err, sizeof(err)))
		return true;
	fprintf(stderr, "parse_batch_line: %s\n", err);
	return false;
}

/* Parses line (strlen) expecting failure with sentence. */
static void
check_line_fails(const char *line, size_t len, const char *sentence)
{
	char		err[128];
	LlmBatchLine out;

	CHECK(!r->parse_batch_line(line, len, &out, err, sizeof(err)));
	CHECK_STR(err, sentence);
	CHECK(out.custom_id == NULL && out.body == NULL && out.request_id == NULL &&
		  out.error == NULL && out.status_code == 0);
}

static void
test_output_lines(void)
{
	LlmBatchLine out;
	const char *ok = "{\"id\":\"batch_req_1\",\"custom_id\":\"r-1\",\"response\":{\"status_code\":200,"
		"\"request_id\":\"req_abc\",\"body\":{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\","
		"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},"
		"\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}},"
		"\"error\":null}";
	const char *bad_request = "{\"id\":\"batch_req_2\",\"custom_id\":\"r-2\",\"response\":"
		"{\"status_code\":400,\"request_id\":\"req_def\",\"body\":{\"error\":{\"message\":"
		"\"Invalid 'messages': empty array.\",\"type\":\"invalid_request_error\","
		"\"param\":\"messages\",\"code\":\"empty_array\"}}},\"error\":null}";
	const char *error_only = "{\"id\":\"batch_req_3\",\"custom_id\":\"r-3\",\"response\":null,"
		"\"error\":{\"code\":\"batch_expired\",\"message\":\"This request could not be executed "
		"before the completion window expired.\"}}";
	const char *line;
	LlmChatResult result;
	char		err[128];

	CHECK(parse_line(ok, &out));
	CHECK_STR(out.custom_id, "r-1");
	CHECK(out.status_code == 200);
	CHECK_STR(out.request_id, "req_abc");
	CHECK(out.error == NULL);
	/* the body is JSON text the chat parser reads */
	CHECK(out.body != NULL && openai_parse_chat_response(out.body, strlen(out.body), &result,
														 err, sizeof(err)));
	CHECK_STR(result.content, "Hi");
	CHECK(result.usage.input_tokens == 5);
	llm_chat_result_free(&result);
	llm_batch_line_free(&out);
	CHECK(out.custom_id == NULL);

	/* an HTTP failure: a response, with the error body as its body */
	CHECK(parse_line(bad_request, &out));
	CHECK(out.status_code == 400);
	CHECK(out.error == NULL);
	CHECK_STR(out.body, "{\"error\":{\"message\":\"Invalid 'messages': empty array.\","
			  "\"type\":\"invalid_request_error\",\"param\":\"messages\",\"code\":\"empty_array\"}}");
	llm_batch_line_free(&out);

	/* a failure without an HTTP response */
	CHECK(parse_line(error_only, &out));
	CHECK_STR(out.custom_id, "r-3");
	CHECK(out.status_code == 0 && out.body == NULL && out.request_id == NULL);
	CHECK_STR(out.error, "batch_expired: This request could not be executed before the "
			  "completion window expired.");
	llm_batch_line_free(&out);

	/* error forms: message or code alone, a string, neither; false and "" are none */
	CHECK(parse_line("{\"custom_id\":\"a\",\"error\":{\"message\":\"m\"}}", &out));
	CHECK_STR(out.error, "m");
	llm_batch_line_free(&out);
	CHECK(parse_line("{\"custom_id\":\"a\",\"error\":{\"code\":\"c\",\"message\":null}}", &out));
	CHECK_STR(out.error, "c");
	llm_batch_line_free(&out);
	CHECK(parse_line("{\"custom_id\":\"a\",\"error\":\"went wrong\"}", &out));
	CHECK_STR(out.error, "went wrong");
	llm_batch_line_free(&out);
	CHECK(parse_line("{\"custom_id\":\"a\",\"error\":{\"type\":\"t\"}}", &out));
	CHECK_STR(out.error, "{\"type\":\"t\"}");
	llm_batch_line_free(&out);
	line = "{\"custom_id\":\"a\",\"error\":false}";
	check_line_fails(line, strlen(line), "the batch output line has neither a response nor an error");
	line = "{\"custom_id\":\"a\",\"response\":null,\"error\":\"\"}";
	check_line_fails(line, strlen(line), "the batch output line has neither a response nor an error");

	/* a response without a body or request_id; both a response and an error */
	CHECK(parse_line("{\"custom_id\":\"a\",\"response\":{\"status_code\":204}}", &out));
	CHECK(out.status_code == 204 && out.body == NULL && out.request_id == NULL && out.error == NULL);
	llm_batch_line_free(&out);
	CHECK(parse_line("{\"custom_id\":\"a\",\"response\":{\"status_code\":500,\"body\":null},"
					 "\"error\":{\"code\":\"server_error\",\"message\":\"m\"}}", &out));
	CHECK(out.status_code == 500 && out.body == NULL);
	CHECK_STR(out.error, "server_error: m");
	llm_batch_line_free(&out);
	/* a body that is not an object is still JSON text; white space after the line is fine */
	CHECK(parse_line("{\"custom_id\":\"a\",\"response\":{\"status_code\":502,\"body\":\"Bad gateway\"}}\r\n",
					 &out));
	CHECK_STR(out.body, "\"Bad gateway\"");
	llm_batch_line_free(&out);
}

static void
test_bad_lines(void)
{
	const char *line;
	char	   *copy;
	LlmBatchLine out;
	char		err[128];

	line = "{\"id\":\"x\",\"response\":{\"status_code\":200,\"body\":{}}}";
	check_line_fails(line, strlen(line), "the batch output line has no custom_id");
	line = "{\"custom_id\":\"\",\"response\":{\"status_code\":200}}";
	check_line_fails(line, strlen(line), "the batch output line has no custom_id");
	line = "{\"custom_id\":17,\"response\":{\"status_code\":200}}";
	check_line_fails(line, strlen(line), "the batch output line has no custom_id");
	line = "{\"custom_id\":\"a\"}";
	check_line_fails(line, strlen(line), "the batch output line has neither a response nor an error");
	line = "{\"custom_id\":\"a\",\"response\":\"200\"}";
	check_line_fails(line, strlen(line), "the batch output line's response is not an object");

	/* status codes: missing, a string, a fraction, out of range, huge */
	line = "{\"custom_id\":\"a\",\"response\":{\"body\":{}}}";
	check_line_fails(line, strlen(line), "the batch output line's status_code is not an HTTP status");
	line = "{\"custom_id\":\"a\",\"response\":{\"status_code\":\"200\"}}";
	check_line_fails(line, strlen(line), "the batch output line's status_code is not an HTTP status");
	line = "{\"custom_id\":\"a\",\"response\":{\"status_code\":200.5}}";
	check_line_fails(line, strlen(line), "the batch output line's status_code is not an HTTP status");
	line = "{\"custom_id\":\"a\",\"response\":{\"status_code\":99}}";
	check_line_fails(line, strlen(line), "the batch output line's status_code is not an HTTP status");
	line = "{\"custom_id\":\"a\",\"response\":{\"status_code\":600}}";
	check_line_fails(line, strlen(line), "the batch output line's status_code is not an HTTP status");
	line = "{\"custom_id\":\"a\",\"response\":{\"status_code\":1e999}}";
	check_line_fails(line, strlen(line), "the batch output line's status_code is not an HTTP status");
	line = "{\"custom_id\":\"a\",\"response\":{\"status_code\":-200}}";
	check_line_fails(line, strlen(line), "the batch output line's status_code is not an HTTP status");
	line = "{\"custom_id\":\"a\",\"response\":{\"status_code\":599.0}}";
	CHECK(parse_line(line, &out) && out.status_code == 599);
	llm_batch_line_free(&out);

	/* not JSON, not an object, truncated, two objects on one line, empty */
	line = "not json";
	check_line_fails(line, strlen(line), "the batch output line is not valid JSON");
	line = "[{\"custom_id\":\"a\"}]";
	check_line_fails(line, strlen(line), "the batch output line is not a JSON object");
	line = "{\"custom_id\":\"a\",\"response\":{\"status_code\":200,\"body\":{\"x\":";
	check_line_fails(line, strlen(line), "the batch output line is not valid JSON");
	line = "{\"custom_id\":\"a\",\"error\":\"e\"}{\"custom_id\":\"b\",\"error\":\"e\"}";
	check_line_fails(line, strlen(line), "the batch output line is not valid JSON");
	check_line_fails("", 0, "the batch output line is not valid JSON");
	check_line_fails("\r", 1, "the batch output line is not valid JSON");

	/* len is authoritative: a NUL among the bytes, the bytes after len, no terminator */
	{
		static const char nul[] = "{\"custom_id\":\"a\",\"error\":\"e\"}\0{\"custom_id\":\"b\"}";
		static const char nul_inside[] = "{\"custom_id\":\"a\0b\",\"error\":\"e\"}";

		check_line_fails(nul, sizeof(nul) - 1, "the batch output line holds a NUL byte");
		check_line_fails(nul_inside, sizeof(nul_inside) - 1, "the batch output line holds a NUL byte");
		CHECK(r->parse_batch_line(nul, strlen(nul), &out, err, sizeof(err)));
		CHECK_STR(out.custom_id, "a");
		llm_batch_line_free(&out);
	}
	line = "{\"custom_id\":\"a\",\"error\":\"e\"}garbage";
	CHECK(r->parse_batch_line(line, strlen(line) - 7, &out, err, sizeof(err)));
	CHECK_STR(out.error, "e");
	llm_batch_line_free(&out);
	line = "{\"custom_id\":\"abc\",\"response\":{\"status_code\":201,\"body\":[1,2]}}";
	copy = malloc(strlen(line));
	memcpy(copy, line, strlen(line));
	CHECK(r->parse_batch_line(copy, strlen(line), &out, err, sizeof(err)));
	CHECK_STR(out.custom_id, "abc");
	CHECK_STR(out.body, "[1,2]");
	llm_batch_line_free(&out);
	/* cut one byte short of its end */
	check_line_fails(copy, strlen(line) - 1, "the batch output line is not valid JSON");
	free(copy);

	/* nesting beyond cJSON's limit is refused by the parser, not the stack */
	{
		size_t		depth = CJSON_NESTING_LIMIT + 10;
		size_t		n = 0;
		char	   *deep = malloc(64 + 2 * depth);

		n += sprintf(deep, "{\"custom_id\":\"a\",\"error\":");
		for (size_t i = 0; i < depth; i++)
			deep[n++] = '[';
		for (size_t i = 0; i < depth; i++)
			deep[n++] = ']';
		deep[n++] = '}';
		check_line_fails(deep, n, "the batch output line is not valid JSON");
		free(deep);
	}

	/* a short error buffer still ends in a NUL */
	line = "nope";
	CHECK(!r->parse_batch_line(line, strlen(line), &out, err, 8));
	CHECK(strlen(err) == 7);
}

/*
 * A line built by batch_line, read as the fake provider reads it, answered
 * as it answers (custom_id echoed, the body's model and messages in a chat
 * completion), and that answer parsed back.
 */
static void
test_round_trip(void)
{
	const char *custom_id = "17:\"q\"\\\n\xc3\xa9";
	cJSON	   *messages = llm_messages_from_prompt("Say \"hi\"\n\x01", "be brief");
	char	   *request = openai_chat_request("gpt-4o-mini", messages, NULL);
	char	   *line = r->batch_line(custom_id, r->batch_chat_url, request);
	cJSON	   *in = cJSON_Parse(line);
	cJSON	   *in_body = cJSON_GetObjectItemCaseSensitive(in, "body");
	cJSON	   *answer = cJSON_CreateObject();
	cJSON	   *response = cJSON_CreateObject();
	cJSON	   *completion = cJSON_CreateObject();
	cJSON	   *request_body = cJSON_Parse(request);
	char	   *answer_text;
	LlmBatchLine out;
	cJSON	   *echoed;

	CHECK(cJSON_IsObject(in));
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(in, "method")), "POST");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(in, "url")),
			  "/v1/chat/completions");
	CHECK(cJSON_Compare(in_body, request_body, true));

	cJSON_AddStringToObject(answer, "id", "batch_req_1");
	cJSON_AddItemToObject(answer, "custom_id",
						  cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(in, "custom_id"), true));
	cJSON_AddNumberToObject(response, "status_code", 200);
	cJSON_AddStringToObject(response, "request_id", "req_1");
	cJSON_AddStringToObject(completion, "object", "chat.completion");
	cJSON_AddItemToObject(completion, "echo", cJSON_Duplicate(in_body, true));
	cJSON_AddItemToObject(response, "body", completion);
	cJSON_AddItemToObject(answer, "response", response);
	cJSON_AddNullToObject(answer, "error");
	answer_text = cJSON_PrintUnformatted(answer);

	CHECK(parse_line(answer_text, &out));
	CHECK_STR(out.custom_id, custom_id);
	CHECK(out.status_code == 200);
	CHECK_STR(out.request_id, "req_1");
	echoed = out.body ? cJSON_Parse(out.body) : NULL;
	CHECK(cJSON_Compare(cJSON_GetObjectItemCaseSensitive(echoed, "echo"), request_body, true));
	cJSON_Delete(echoed);
	llm_batch_line_free(&out);

	free(answer_text);
	cJSON_Delete(answer);
	cJSON_Delete(request_body);
	cJSON_Delete(in);
	free(line);
	free(request);
	cJSON_Delete(messages);
}

void
test_batch(void)
{
	const LlmProviderRoutine *anthropic = llm_provider_routine("anthropic");

	r = llm_provider_routine("openai");
	CHECK(r != NULL && r->batch_line != NULL && r->parse_batch_line != NULL);
	CHECK_STR(r->batches_path, "/batches");
	CHECK_STR(r->batch_files_purpose, "batch");
	CHECK_STR(r->batch_chat_url, "/v1/chat/completions");
	CHECK(anthropic != NULL && anthropic->batches_path == NULL && anthropic->batch_line == NULL);
	test_line();
	test_create_and_query();
	test_batch_object();
	test_batch_errors();
	test_list();
	test_output_lines();
	test_bad_lines();
	test_round_trip();
}
