/* Unit tests of secrets.c: redaction and excerpts, patterns, hosts, JSON checks. */
#include "unit.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/json_checks.h"
#include "core/allowlist.h"
#include "core/redact.h"

#define KEY "sk-test-0123456789abcdef"

static void
check_cut(const char *text, size_t max, bool printable, const char *expected)
{
	char	   *out = llm_redact_cut(text, strlen(text), KEY, max, printable);

	CHECK_STR(out, expected);
	free(out);
}

static void
test_redact_cut(void)
{
	char		body[300];
	char	   *out;

	/* the report's case: a key at byte 181 of a body cut at 200 bytes */
	memset(body, 'x', 181);
	strcpy(body + 181, KEY " and more text after the key");
	out = llm_redact_cut(body, strlen(body), KEY, 200, true);
	CHECK(strstr(out, "sk-test") == NULL);
	CHECK(strstr(out, "0123") == NULL);
	CHECK(strcmp(out + 181, "[redacted] and more...") == 0);
	free(out);

	/* the whole key is masked before the cut, so the cut cannot split it */
	check_cut("abc " KEY, 10, true, "abc [redacted]");
	/* a text whose cut (ours or the provider's) ends inside the key */
	check_cut("abc sk-test-01XYZ", 14, true, "abc [redacted]...");
	check_cut("abc sk-test-01", 100, true, "abc [redacted]");
	/* three characters say too little to mask */
	check_cut("abc sk-", 100, true, "abc sk-");
	/* but not a prefix that stops short of the end */
	check_cut("sk-test-01 tail", 100, true, "sk-test-01 tail");
	/* masks are never cut, and every occurrence goes */
	check_cut(KEY KEY "z", 3, true, "[redacted]...");
	check_cut(KEY "," KEY, SIZE_MAX, false, "[redacted],[redacted]");
	/* printable: control characters and other bytes become spaces */
	check_cut("a\tb\xc3\xa9", 100, true, "a b  ");
	/* not printable: a cut never splits a UTF-8 character */
	check_cut("ab\xc3\xa9z", 3, false, "ab...");
	check_cut("ab\xc3\xa9z", 4, false, "ab\xc3\xa9...");
	check_cut("", 10, true, "");
	CHECK(llm_redact_cut(NULL, 0, KEY, 10, true) == NULL);

	/* no key: only the cut */
	out = llm_redact_cut("hello world", 11, NULL, 5, true);
	CHECK_STR(out, "hello...");
	free(out);
	/* a NUL byte in a body is a space in its excerpt */
	out = llm_redact_cut("a\0b", 3, KEY, 10, true);
	CHECK_STR(out, "a b");
	free(out);
}

static void
test_chat_result_redact(void)
{
	LlmChatResult r;

	memset(&r, 0, sizeof(r));
	r.content = strdup("your key is " KEY ".");
	r.remote_model = strdup("m-" KEY);
	r.response_id = strdup("id-sk-test-0123");
	r.finish_reason = strdup("stop");
	r.tool_calls = cJSON_Parse("[{\"function\":{\"arguments\":\"{\\\"k\\\":\\\"" KEY "\\\"}\"}}]");
	llm_chat_result_redact(&r, KEY);
	CHECK_STR(r.content, "your key is [redacted].");
	CHECK_STR(r.remote_model, "m-[redacted]");
	CHECK_STR(r.response_id, "id-[redacted]");
	CHECK_STR(r.finish_reason, "stop");
	CHECK(r.refusal == NULL);
	{
		char	   *text = cJSON_PrintUnformatted(r.tool_calls);

		CHECK(strstr(text, "sk-test") == NULL && strstr(text, "[redacted]") != NULL);
		free(text);
	}
	llm_chat_result_free(&r);
}

static void
test_patterns(void)
{
	CHECK(llm_pattern_list_match("*_API_KEY", "OPENAI_API_KEY", false));
	CHECK(!llm_pattern_list_match("*_API_KEY", "openai_api_key", false));
	CHECK(!llm_pattern_list_match("*_API_KEY", "PGDATA", false));
	CHECK(!llm_pattern_list_match("*_API_KEY", "OPENAI_API_KEY_2", false));
	CHECK(llm_pattern_list_match(" PATH_X , *_API_KEY", "PATH_X", false));
	CHECK(llm_pattern_list_match("a*b*c", "abxbc", false));
	CHECK(!llm_pattern_list_match("a*b*c", "abxb", false));
	CHECK(llm_pattern_list_match("*", "", false));
	CHECK(!llm_pattern_list_match("", "X", false));
	CHECK(!llm_pattern_list_match(" , ,", "X", false));
	CHECK(llm_pattern_list_match("*.Example.COM", "api.example.com", true));
	CHECK(!llm_pattern_list_match("*.example.com", "example.com.evil", true));
}

static void
test_url_host(void)
{
	char		host[256];
	int			port;

	CHECK(llm_url_host("https://API.OpenAI.com/v1", host, sizeof(host), &port));
	CHECK_STR(host, "api.openai.com");
	CHECK(port == 443);
	CHECK(llm_url_host("http://127.0.0.1:8080/v1", host, sizeof(host), &port));
	CHECK_STR(host, "127.0.0.1");
	CHECK(port == 8080);
	CHECK(llm_url_host("HTTP://example.com.", host, sizeof(host), &port));
	CHECK_STR(host, "example.com");
	CHECK(port == 80);
	CHECK(llm_url_host("http://[::1]:11434/v1", host, sizeof(host), &port));
	CHECK_STR(host, "::1");
	CHECK(port == 11434);
	CHECK(!llm_url_host("ftp://example.com/", host, sizeof(host), &port));
	CHECK(!llm_url_host("http://user@evil.com/", host, sizeof(host), &port));
	CHECK(!llm_url_host("http://evil.com#.good.com/", host, sizeof(host), &port));
	CHECK(!llm_url_host("http://evil.com\\.good.com/", host, sizeof(host), &port));
	CHECK(!llm_url_host("http://evil.com?.good.com/", host, sizeof(host), &port));
	CHECK(!llm_url_host("http://ex%61mple.com/", host, sizeof(host), &port));
	CHECK(!llm_url_host("http://:80/", host, sizeof(host), &port));
	CHECK(!llm_url_host("http://a:0/", host, sizeof(host), &port));
	CHECK(!llm_url_host("http://a:65536/", host, sizeof(host), &port));
	CHECK(!llm_url_host("http://a:/", host, sizeof(host), &port));
	CHECK(!llm_url_host("http://[::1%eth0]/", host, sizeof(host), &port));
	CHECK(!llm_url_host("http://[::1/", host, sizeof(host), &port));
	CHECK(!llm_url_host("http://abcdef/", host, 4, &port));
}

static void
test_host_allowed(void)
{
	CHECK(llm_host_allowed("*", "http://attacker/"));
	CHECK(llm_host_allowed("*", "http://evil.com#x/"));
	CHECK(!llm_host_allowed("", "http://api.openai.com/v1"));
	CHECK(llm_host_allowed("api.openai.com", "https://API.OPENAI.COM/v1"));
	CHECK(!llm_host_allowed("api.openai.com", "http://attacker/"));
	CHECK(llm_host_allowed("*.openai.azure.com, localhost:11434", "https://x.openai.azure.com/"));
	CHECK(!llm_host_allowed("*.openai.azure.com", "https://openai.azure.com.evil/"));
	CHECK(llm_host_allowed("localhost:11434", "http://localhost:11434/v1"));
	CHECK(!llm_host_allowed("localhost:11434", "http://localhost:5432/v1"));
	CHECK(!llm_host_allowed("localhost:11434", "http://localhost/v1"));
	CHECK(llm_host_allowed("localhost:80", "http://localhost/v1"));
	CHECK(llm_host_allowed("127.0.0.1:*", "http://127.0.0.1:9/v1"));
	CHECK(llm_host_allowed("[::1]", "http://[::1]:8000/"));
	CHECK(llm_host_allowed("[::1]:8000", "http://[::1]:8000/"));
	CHECK(!llm_host_allowed("[::1]:8001", "http://[::1]:8000/"));
	CHECK(!llm_host_allowed("good.com", "http://good.com@evil.com/"));
	CHECK(!llm_host_allowed("good.com", "http://evil.com#good.com/"));
}

static void
test_json_checks(void)
{
	cJSON	   *json;
	char		err[256];
	char		deep[2100];

	CHECK(llm_json_text_depth("1") == 0);
	CHECK(llm_json_text_depth("{\"a\":[[1]],\"b\":{}}") == 3);
	CHECK(llm_json_text_depth("[\"[[[\\\"[[\"]") == 1);
	memset(deep, '[', 1001);
	memset(deep + 1001, ']', 1001);
	deep[2002] = '\0';
	CHECK(llm_json_text_depth(deep) == 1001);
	CHECK(cJSON_Parse(deep) == NULL);	/* why the limit is cJSON's */

	json = cJSON_Parse("{\"a\":[1,{\"b\":1e400}]}");
	CHECK(llm_json_find_nonfinite(json) != NULL);
	CHECK(!llm_check_param_numbers(json, err, sizeof(err)));
	CHECK_STR(err, "parameter \"a\" holds a number too large for a double precision value");
	cJSON_Delete(json);
	json = cJSON_Parse("{\"seed\":1e400}");
	CHECK(!llm_check_param_numbers(json, err, sizeof(err)));
	cJSON_Delete(json);
	json = cJSON_Parse("{\"a\":[1,{\"b\":1e300}],\"seed\":-42,\"max_tokens\":null,\"n\":2}");
	CHECK(llm_json_find_nonfinite(json) == NULL);
	CHECK(llm_check_param_numbers(json, err, sizeof(err)));
	cJSON_Delete(json);
	json = cJSON_Parse("{\"max_completion_tokens\":1.5}");
	CHECK(!llm_check_param_numbers(json, err, sizeof(err)));
	CHECK_STR(err, "parameter \"max_completion_tokens\" must be a whole number from 0 to 2147483647");
	cJSON_Delete(json);
	json = cJSON_Parse("{\"seed\":1e20}");
	CHECK(!llm_check_param_numbers(json, err, sizeof(err)));
	cJSON_Delete(json);
	json = cJSON_Parse("{\"max_tokens\":\"10\"}");
	CHECK(!llm_check_param_numbers(json, err, sizeof(err)));
	cJSON_Delete(json);

	CHECK(llm_json_has_nul_escape("{\"c\":\"bad\\u0000tail\"}", 21));
	CHECK(!llm_json_has_nul_escape("{\"c\":\"bad\\\\u0000tail\"}", 22));
	CHECK(!llm_json_has_nul_escape("{\"c\":\"\\u00001\"}", 10));
	CHECK(!llm_json_has_nul_escape("{\"c\":\"\\u0001\"}", 14));
}

void
test_secrets(void)
{
	test_redact_cut();
	test_chat_result_redact();
	test_patterns();
	test_url_host();
	test_host_allowed();
	test_json_checks();
}
