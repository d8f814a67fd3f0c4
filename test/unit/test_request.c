/* Unit tests of request.c: messages, parameters, cost, redaction. */
#include "unit.h"

#include <math.h>
#include <stdlib.h>

#include "core/redact.h"
#include "core/request.h"

static bool
messages_ok(const char *json, char *err, size_t errlen)
{
	cJSON	   *messages = cJSON_Parse(json);
	bool		ok = llm_validate_messages(messages, err, errlen);

	cJSON_Delete(messages);
	return ok;
}

static void
test_validate_messages(void)
{
	char		err[256];

	CHECK(messages_ok("[{\"role\":\"user\",\"content\":\"hi\"}]", err, sizeof(err)));
	CHECK(messages_ok("[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}]",
					  err, sizeof(err)));
	CHECK(messages_ok("[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]}]", err, sizeof(err)));

	CHECK(!messages_ok("{}", err, sizeof(err)));
	CHECK_STR(err, "messages must be a JSON array of message objects");
	CHECK(!messages_ok("[]", err, sizeof(err)));
	CHECK_STR(err, "messages must not be an empty array");
	CHECK(!messages_ok("[{\"role\":\"user\",\"content\":\"a\"},\"x\"]", err, sizeof(err)));
	CHECK_STR(err, "message 1 is not a JSON object");
	CHECK(!messages_ok("[{\"role\":1,\"content\":\"a\"}]", err, sizeof(err)));
	CHECK_STR(err, "message 0 has no \"role\" string");
	CHECK(!messages_ok("[{\"role\":\"robot\",\"content\":\"a\"}]", err, sizeof(err)));
	CHECK(strstr(err, "unknown role \"robot\"") != NULL);
	CHECK(!messages_ok("[{\"role\":\"user\",\"content\":null}]", err, sizeof(err)));
	CHECK_STR(err, "message 0 has no \"content\"");
	CHECK(!messages_ok("[{\"role\":\"user\",\"content\":{}}]", err, sizeof(err)));
	CHECK(!llm_validate_messages(NULL, err, sizeof(err)));
}

static void
test_messages_from_prompt(void)
{
	cJSON	   *m = llm_messages_from_prompt("hello", "be brief");
	char	   *text = cJSON_PrintUnformatted(m);

	CHECK_STR(text, "[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"hello\"}]");
	cJSON_free(text);
	cJSON_Delete(m);

	m = llm_messages_from_prompt("hello", "");
	CHECK(cJSON_GetArraySize(m) == 1);
	cJSON_Delete(m);
	m = llm_messages_from_prompt("hello", NULL);
	CHECK(cJSON_GetArraySize(m) == 1);
	cJSON_Delete(m);
}

static char *
merged(const char *defaults, const char *overrides, char *err, size_t errlen)
{
	cJSON	   *d = defaults ? cJSON_Parse(defaults) : NULL;
	cJSON	   *o = overrides ? cJSON_Parse(overrides) : NULL;
	cJSON	   *m = llm_merge_params(d, o, err, errlen);
	char	   *text = m ? cJSON_PrintUnformatted(m) : NULL;

	cJSON_Delete(d);
	cJSON_Delete(o);
	cJSON_Delete(m);
	return text;
}

static void
test_merge_params(void)
{
	char		err[256];
	char	   *text;

	text = merged("{\"temperature\":0,\"seed\":1}", "{\"temperature\":0.5,\"on_error\":\"null\"}", err, sizeof(err));
	CHECK_STR(text, "{\"seed\":1,\"temperature\":0.5}");
	free(text);
	text = merged(NULL, NULL, err, sizeof(err));
	CHECK_STR(text, "{}");
	free(text);
	text = merged("{}", "{\"stream\":true}", err, sizeof(err));
	CHECK(text == NULL);
	CHECK_STR(err, "parameter \"stream\" cannot be set");
	text = merged("{\"model\":\"x\"}", NULL, err, sizeof(err));
	CHECK(text == NULL);
	text = merged("[1]", NULL, err, sizeof(err));
	CHECK(text == NULL);
	CHECK_STR(err, "parameters must be a JSON object");
	CHECK(llm_is_reserved_option("on_error"));
	CHECK(!llm_is_reserved_option("temperature"));
}

static void
test_cost(void)
{
	LlmPrices	prices = {.input = 0.15, .cached_input = 0.075, .output = 0.60};
	LlmUsage	usage = {.present = true, .input_tokens = 1000000, .cached_input_tokens = 400000,
	.output_tokens = 200000, .reasoning_tokens = 50000};

	/* 600k * 0.15 + 400k * 0.075 + 200k * 0.60, per million */
	CHECK(fabs(llm_cost_usd(&usage, &prices) - (0.09 + 0.03 + 0.12)) < 1e-12);

	/* more cached tokens than input tokens: all input billed as cached */
	usage = (LlmUsage)
	{
		.input_tokens = 10,.cached_input_tokens = 50,.output_tokens = 0
	};
	CHECK(fabs(llm_cost_usd(&usage, &prices) - 10 * 0.075 / 1e6) < 1e-15);

	usage = (LlmUsage)
	{
		0
	};
	CHECK(llm_cost_usd(&usage, &prices) == 0);
}

static void
test_redact(void)
{
	char	   *text;

	text = llm_redact("key sk-abc and sk-abc again", "sk-abc");
	CHECK_STR(text, "key [redacted] and [redacted] again");
	free(text);
	text = llm_redact("no secret here", "sk-abc");
	CHECK_STR(text, "no secret here");
	free(text);
	text = llm_redact("sk-abc", "sk-abc");
	CHECK_STR(text, "[redacted]");
	free(text);
	text = llm_redact("keep", NULL);
	CHECK_STR(text, "keep");
	free(text);
	text = llm_redact("keep", "");
	CHECK_STR(text, "keep");
	free(text);
	CHECK(llm_redact(NULL, "x") == NULL);
}

static void
test_plain_id(void)
{
	CHECK(llm_is_plain_id("batch_abc123"));
	CHECK(llm_is_plain_id("file-XYZ.jsonl"));
	CHECK(llm_is_plain_id("ft:gpt-4o-mini:org:x"));
	CHECK(!llm_is_plain_id(NULL));
	CHECK(!llm_is_plain_id(""));
	CHECK(!llm_is_plain_id(".."));
	CHECK(!llm_is_plain_id(".hidden"));
	CHECK(!llm_is_plain_id("a/../b"));
	CHECK(!llm_is_plain_id("batch_1?x=1"));
	CHECK(!llm_is_plain_id("batch 1"));
	CHECK(!llm_is_plain_id("b%2e%2e"));
	CHECK(!llm_is_plain_id("b\r\nHost: evil"));
	{
		char		longest[202];

		memset(longest, 'a', 201);
		longest[201] = '\0';
		CHECK(!llm_is_plain_id(longest));
		longest[200] = '\0';
		CHECK(llm_is_plain_id(longest));
	}
}

void
test_request(void)
{
	test_plain_id();
	test_validate_messages();
	test_messages_from_prompt();
	test_merge_params();
	test_cost();
	test_redact();
}
