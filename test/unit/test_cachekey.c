/* Unit tests of cachekey.c: canonical JSON, canonical requests, determinism. */
#include "unit.h"

#include <stdlib.h>

#include "core/cachekey.h"

static char *
canonical(const char *json)
{
	cJSON	   *item = cJSON_Parse(json);
	char	   *text = llm_canonical_json(item);

	cJSON_Delete(item);
	return text;
}

static char *
request(const char *messages, const char *params)
{
	cJSON	   *m = cJSON_Parse(messages);
	cJSON	   *p = cJSON_Parse(params);
	char	   *text = llm_canonical_request("fake", "gpt-4o-mini", m, p);

	cJSON_Delete(m);
	cJSON_Delete(p);
	return text;
}

static bool
deterministic(const char *params)
{
	cJSON	   *p = cJSON_Parse(params);
	bool		result = llm_request_is_deterministic(p);

	cJSON_Delete(p);
	return result;
}

void
test_cachekey(void)
{
	char	   *a;
	char	   *b;

	/* key order and white space never change the text, at any depth */
	a = canonical("{\"b\": 1, \"a\": {\"y\": [1, {\"q\": 2, \"p\": 3}], \"x\": null}}");
	CHECK_STR(a, "{\"a\":{\"x\":null,\"y\":[1,{\"p\":3,\"q\":2}]},\"b\":1}");
	free(a);
	a = canonical("[3, 1, 2]");
	CHECK_STR(a, "[3,1,2]");	/* arrays keep their order */
	free(a);
	a = canonical("{}");
	CHECK_STR(a, "{}");
	free(a);

	/* the request: provider, model, messages and answer-changing parameters */
	a = request("[{\"role\":\"user\",\"content\":\"hi\"}]", "{\"temperature\":0,\"seed\":1}");
	CHECK_STR(a, "{\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}],\"model\":\"gpt-4o-mini\","
			  "\"params\":{\"seed\":1,\"temperature\":0},\"provider\":\"fake\"}");
	b = request("[{\"content\":\"hi\",\"role\":\"user\"}]",
				"{\"seed\":1,\"user\":\"u-1\",\"metadata\":{\"k\":\"v\"},\"temperature\":0}");
	CHECK_STR(b, a);			/* reordered, and labels that do not change the answer */
	free(b);
	b = request("[{\"role\":\"user\",\"content\":\"hi\"}]", "{\"temperature\":0.5,\"seed\":1}");
	CHECK(strcmp(a, b) != 0);
	free(b);
	b = request("[{\"role\":\"user\",\"content\":\"Hi\"}]", "{\"temperature\":0,\"seed\":1}");
	CHECK(strcmp(a, b) != 0);
	free(b);
	free(a);

	/* only requests whose answer is fixed are cached */
	CHECK(deterministic("{\"temperature\":0}"));
	CHECK(deterministic("{\"seed\":42,\"temperature\":0.9}"));
	CHECK(!deterministic("{}"));
	CHECK(!deterministic("{\"temperature\":0.2}"));
	CHECK(!deterministic("{\"temperature\":\"0\"}"));
	CHECK(!deterministic("{\"seed\":\"42\"}"));
}
