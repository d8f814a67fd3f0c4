/* Unit tests of openai.c: request bodies, responses, error bodies. */
#include "unit.h"

#include <stdlib.h>

#include "providers/openai.h"

static bool
parse(const char *body, LlmChatResult *result, char *err, size_t errlen)
{
	return openai_parse_chat_response(body, strlen(body), result, err, errlen);
}

static void
test_request_body(void)
{
	cJSON	   *messages = llm_messages_from_prompt("hi", NULL);
	cJSON	   *params = cJSON_Parse("{\"temperature\":0,\"response_format\":{\"type\":\"json_object\"}}");
	char	   *body = openai_chat_request("gpt-4o-mini", messages, params);

	CHECK_STR(body, "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
			  "\"temperature\":0,\"response_format\":{\"type\":\"json_object\"}}");
	free(body);
	cJSON_Delete(params);
	cJSON_Delete(messages);
}

static void
test_full_response(void)
{
	LlmChatResult r;
	char		err[256];
	const char *body =
		"{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"gpt-4o-mini-2024-07-18\","
		"\"choices\":[{\"index\":0,\"finish_reason\":\"stop\",\"message\":{\"role\":\"assistant\","
		"\"content\":\"Hello!\",\"refusal\":null}}],"
		"\"usage\":{\"prompt_tokens\":24,\"completion_tokens\":8,\"total_tokens\":32,"
		"\"prompt_tokens_details\":{\"cached_tokens\":16},"
		"\"completion_tokens_details\":{\"reasoning_tokens\":3}},\"system_fingerprint\":null}";

	CHECK(parse(body, &r, err, sizeof(err)));
	CHECK_STR(r.content, "Hello!");
	CHECK_STR(r.finish_reason, "stop");
	CHECK_STR(r.remote_model, "gpt-4o-mini-2024-07-18");
	CHECK_STR(r.response_id, "chatcmpl-1");
	CHECK(r.refusal == NULL);
	CHECK(r.tool_calls == NULL);
	CHECK(r.usage.present);
	CHECK(r.usage.input_tokens == 24);
	CHECK(r.usage.cached_input_tokens == 16);
	CHECK(r.usage.output_tokens == 8);
	CHECK(r.usage.reasoning_tokens == 3);
	llm_chat_result_free(&r);
}

static void
test_tolerant_parsing(void)
{
	LlmChatResult r;
	char		err[256];

	/* Ollama: no usage details, no id */
	CHECK(parse("{\"choices\":[{\"message\":{\"content\":\"ok\"},\"finish_reason\":\"length\"}],"
				"\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}", &r, err, sizeof(err)));
	CHECK_STR(r.content, "ok");
	CHECK(r.usage.cached_input_tokens == 0 && r.usage.reasoning_tokens == 0);
	CHECK(r.response_id == NULL);
	llm_chat_result_free(&r);

	/* no usage at all; content as parts */
	CHECK(parse("{\"choices\":[{\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
				"{\"type\":\"text\",\"text\":\"b\"}]}}]}", &r, err, sizeof(err)));
	CHECK_STR(r.content, "ab");
	CHECK(!r.usage.present);
	llm_chat_result_free(&r);

	/* tool calls, null content, refusal */
	CHECK(parse("{\"choices\":[{\"finish_reason\":\"tool_calls\",\"message\":{\"content\":null,"
				"\"refusal\":\"no\",\"tool_calls\":[{\"id\":\"t1\",\"type\":\"function\"}]}}]}",
				&r, err, sizeof(err)));
	CHECK(r.content == NULL);
	CHECK_STR(r.refusal, "no");
	CHECK(cJSON_GetArraySize(r.tool_calls) == 1);
	llm_chat_result_free(&r);

	/* negative or non-numeric counts are taken as 0 */
	CHECK(parse("{\"choices\":[{\"message\":{\"content\":\"x\"}}],"
				"\"usage\":{\"prompt_tokens\":-5,\"completion_tokens\":\"7\"}}", &r, err, sizeof(err)));
	CHECK(r.usage.input_tokens == 0 && r.usage.output_tokens == 0);
	llm_chat_result_free(&r);
}

static void
test_bad_responses(void)
{
	LlmChatResult r;
	char		err[256];

	CHECK(!parse("{\"choices\":[{\"message\":{\"content\":\"cut", &r, err, sizeof(err)));
	CHECK_STR(err, "the response body is not valid JSON");
	CHECK(!parse("<html>502</html>", &r, err, sizeof(err)));
	CHECK(!parse("", &r, err, sizeof(err)));
	CHECK(!parse("{\"id\":\"x\"}", &r, err, sizeof(err)));
	CHECK_STR(err, "the response has no choices[0].message object");
	CHECK(!parse("{\"choices\":[]}", &r, err, sizeof(err)));
	CHECK(!parse("{\"choices\":[{\"message\":\"text\"}]}", &r, err, sizeof(err)));
	CHECK(!parse("[1,2]", &r, err, sizeof(err)));
	/* a body with a NUL inside: only len bytes are read */
	CHECK(!openai_parse_chat_response("{\"a\":1}\0garbage", 15, &r, err, sizeof(err)));
}

static char *
error_of(const char *body)
{
	return openai_error_message(body, strlen(body));
}

static void
test_error_bodies(void)
{
	const char *openai = "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\","
		"\"param\":null,\"code\":\"rate_limit_exceeded\"}}";
	char	   *text;

	text = error_of(openai);
	CHECK_STR(text, "Rate limit reached (type requests, code rate_limit_exceeded)");
	free(text);

	text = error_of("{\"error\":{\"message\":\"model not found\",\"type\":\"not_found_error\"}}");
	CHECK_STR(text, "model not found (type not_found_error)");
	free(text);

	text = error_of("{\"error\":\"plain string\"}");
	CHECK_STR(text, "plain string");
	free(text);

	text = error_of("{\"message\":\"top level\"}");
	CHECK_STR(text, "top level");
	free(text);

	CHECK(error_of("Bad Gateway") == NULL);
	CHECK(error_of("{\"error\":{}}") == NULL);
}

void
test_openai(void)
{
	test_request_body();
	test_full_response();
	test_tolerant_parsing();
	test_bad_responses();
	test_error_bodies();
}
