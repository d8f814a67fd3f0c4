/* Unit tests of anthropic.c: request bodies, responses, error bodies, cost. */
#include "unit.h"

#include <stdlib.h>

#include "providers/anthropic.h"
#include "providers/provider.h"

static char *
request(const char *messages_json, const char *params_json)
{
	cJSON	   *messages = cJSON_Parse(messages_json);
	cJSON	   *params = cJSON_Parse(params_json);
	char	   *body = anthropic_chat_request("claude-x", messages, params);

	cJSON_Delete(messages);
	cJSON_Delete(params);
	return body;
}

static void
test_request_body(void)
{
	char	   *body;

	/* system and developer turns become the top-level system; the default limit */
	body = request("[{\"role\":\"system\",\"content\":\"Be brief.\"},"
				   "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"Use SQL.\"}]},"
				   "{\"role\":\"user\",\"content\":\"hi\"}]", "{}");
	CHECK_STR(body, "{\"model\":\"claude-x\",\"max_tokens\":1024,\"system\":\"Be brief.\\n\\nUse SQL.\","
			  "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
	free(body);

	/* max_completion_tokens wins, stop becomes stop_sequences, the rest passes */
	body = request("[{\"role\":\"user\",\"content\":\"hi\"}]",
				   "{\"max_tokens\":50,\"max_completion_tokens\":20,\"stop\":\"END\","
				   "\"temperature\":0.5,\"top_p\":0.9}");
	CHECK_STR(body, "{\"model\":\"claude-x\",\"max_tokens\":20,"
			  "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
			  "\"stop_sequences\":[\"END\"],\"temperature\":0.5,\"top_p\":0.9}");
	free(body);

	/* tool calls and results in Anthropic's blocks */
	body = request("[{\"role\":\"user\",\"content\":\"weather?\"},"
				   "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"t1\","
				   "\"type\":\"function\",\"function\":{\"name\":\"w\",\"arguments\":\"{\\\"c\\\":1}\"}}]},"
				   "{\"role\":\"tool\",\"tool_call_id\":\"t1\",\"content\":\"sunny\"}]",
				   "{\"stop\":[\"a\",\"b\"]}");
	CHECK_STR(body, "{\"model\":\"claude-x\",\"max_tokens\":1024,\"messages\":["
			  "{\"role\":\"user\",\"content\":\"weather?\"},"
			  "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"w\",\"input\":{\"c\":1}}]},"
			  "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":\"sunny\"}]}],"
			  "\"stop_sequences\":[\"a\",\"b\"]}");
	free(body);
}

static void
test_json_output(void)
{
	const LlmProviderRoutine *routine = llm_provider_routine("anthropic");
	cJSON	   *params = cJSON_Parse("{\"temperature\":0}");
	cJSON	   *schema = cJSON_Parse("{\"type\":\"object\"}");
	char	   *text;

	CHECK(routine != NULL && routine == &anthropic_routine);
	CHECK(!routine->has_output_format(params));
	routine->add_json_output(params, "my prompt", schema);
	text = cJSON_PrintUnformatted(params);
	CHECK_STR(text, "{\"temperature\":0,\"tools\":[{\"name\":\"respond\","
			  "\"description\":\"Give the answer, following the input schema.\","
			  "\"input_schema\":{\"type\":\"object\"}}],"
			  "\"tool_choice\":{\"type\":\"tool\",\"name\":\"respond\"}}");
	CHECK(routine->has_output_format(params));
	CHECK(routine->max_output_tokens(params) == ANTHROPIC_DEFAULT_MAX_TOKENS);
	free(text);
	cJSON_Delete(params);
	cJSON_Delete(schema);

	/* the kind's headers and key header */
	CHECK_STR(routine->headers[0], "anthropic-version: 2023-06-01");
	CHECK(routine->headers[1] == NULL);
	text = routine->auth_header(NULL, "sk-ant-1");
	CHECK_STR(text, "x-api-key: sk-ant-1");
	free(text);
	CHECK(llm_provider_routine("gemini") == NULL);
}

static bool
parse(const char *body, LlmChatResult *r)
{
	char		err[256];

	return anthropic_parse_chat_response(body, strlen(body), r, err, sizeof(err));
}

static void
test_responses(void)
{
	LlmChatResult r;
	char		err[256];
	LlmPrices	prices = {.input = 3, .cached_input = 0.3, .cache_write = 3.75, .output = 15};

	CHECK(parse("{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x-1\","
				"\"content\":[{\"type\":\"text\",\"text\":\"Hello\"},{\"type\":\"text\",\"text\":\" there\"}],"
				"\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,"
				"\"output_tokens\":5,\"cache_read_input_tokens\":100,\"cache_creation_input_tokens\":20}}", &r));
	CHECK_STR(r.content, "Hello there");
	CHECK_STR(r.finish_reason, "stop");
	CHECK_STR(r.remote_model, "claude-x-1");
	CHECK_STR(r.response_id, "msg_1");
	CHECK(r.tool_calls == NULL);
	CHECK(r.usage.present && r.usage.input_tokens == 130 && r.usage.cached_input_tokens == 100 &&
		  r.usage.cache_write_tokens == 20 && r.usage.output_tokens == 5);
	/* 10 at 3, 100 at 0.3, 20 at 3.75, 5 at 15 per million */
	CHECK(llm_cost_usd(&r.usage, &prices) > 0.000209999 && llm_cost_usd(&r.usage, &prices) < 0.000210001);
	llm_chat_result_free(&r);

	/* stop reasons */
	CHECK(parse("{\"content\":[{\"type\":\"text\",\"text\":\"a\"}],\"stop_reason\":\"max_tokens\"}", &r));
	CHECK_STR(r.finish_reason, "length");
	CHECK(!r.usage.present);
	llm_chat_result_free(&r);
	CHECK(parse("{\"content\":[],\"stop_reason\":\"stop_sequence\"}", &r));
	CHECK_STR(r.finish_reason, "stop");
	CHECK(r.content == NULL);
	llm_chat_result_free(&r);
	CHECK(parse("{\"content\":[],\"stop_reason\":\"pause_turn\"}", &r));
	CHECK_STR(r.finish_reason, "pause_turn");
	llm_chat_result_free(&r);

	/* the forced respond tool: its input is the answer */
	CHECK(parse("{\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"respond\","
				"\"input\":{\"city\":\"Paris\"}}],\"stop_reason\":\"tool_use\"}", &r));
	CHECK_STR(r.content, "{\"city\":\"Paris\"}");
	CHECK_STR(r.finish_reason, "stop");
	CHECK(r.tool_calls == NULL);
	llm_chat_result_free(&r);

	/* another tool: a tool call in OpenAI's shape */
	CHECK(parse("{\"content\":[{\"type\":\"text\",\"text\":\"Let me look.\"},{\"type\":\"tool_use\","
				"\"id\":\"toolu_2\",\"name\":\"lookup\",\"input\":{\"id\":7}}],\"stop_reason\":\"tool_use\"}", &r));
	CHECK_STR(r.content, "Let me look.");
	CHECK_STR(r.finish_reason, "tool_calls");
	if (r.tool_calls != NULL)
	{
		char	   *calls = cJSON_PrintUnformatted(r.tool_calls);

		CHECK_STR(calls, "[{\"id\":\"toolu_2\",\"type\":\"function\",\"function\":{\"name\":\"lookup\","
				  "\"arguments\":\"{\\\"id\\\":7}\"}}]");
		free(calls);
	}
	else
		CHECK(r.tool_calls != NULL);
	llm_chat_result_free(&r);

	/* what is refused */
	CHECK(!anthropic_parse_chat_response("{", 1, &r, err, sizeof(err)));
	CHECK_STR(err, "the response body is not valid JSON");
	CHECK(!parse("{\"type\":\"message\"}", &r));
	CHECK(!anthropic_parse_chat_response("{\"content\":{}}", 14, &r, err, sizeof(err)));
	CHECK_STR(err, "the response has no content array");

	/* counts: negative ones are 0, huge ones 2^53, and cache counts never exceed the total */
	CHECK(parse("{\"content\":[],\"usage\":{\"input_tokens\":-5,\"output_tokens\":1e300,"
				"\"cache_read_input_tokens\":null}}", &r));
	CHECK(r.usage.input_tokens == 0 && r.usage.output_tokens == 9007199254740992LL);
	llm_chat_result_free(&r);
	{
		LlmUsage	u = {.present = true, .input_tokens = 10, .cached_input_tokens = 8,
		.cache_write_tokens = 8};

		/* 8 read at 0.3, the 2 left written at 3.75 */
		CHECK(llm_cost_usd(&u, &prices) > 0.0000098999 && llm_cost_usd(&u, &prices) < 0.0000099001);
	}
}

static void
test_error_body(void)
{
	const char *body = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
		"\"message\":\"Overloaded\"},\"request_id\":\"req_1\"}";
	char	   *message = anthropic_error_message(body, strlen(body));

	CHECK_STR(message, "Overloaded (type overloaded_error)");
	free(message);
	CHECK(anthropic_error_message("<html>", 6) == NULL);
}

void
test_anthropic(void)
{
	test_request_body();
	test_json_output();
	test_responses();
	test_error_body();
}
