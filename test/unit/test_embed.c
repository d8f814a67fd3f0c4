/*
 * test_embed.c — the embeddings request body and answer parser.
 */
#include "providers/openai.h"
#include "unit.h"

#include <math.h>
#include <stdlib.h>

static bool
parse(const char *body, int n, LlmEmbedResult *r, char *err, size_t errlen)
{
	return openai_parse_embed_response(body, strlen(body), n, r, err, errlen);
}

static void
test_request_body(void)
{
	cJSON	   *inputs = cJSON_Parse("[\"a\",\"b c\"]");
	cJSON	   *params = cJSON_Parse("{\"dimensions\":8}");
	cJSON	   *base64 = cJSON_Parse("{\"encoding_format\":\"base64\"}");
	char	   *body = openai_embed_request("text-embedding-3-small", inputs, params);

	CHECK_STR(body, "{\"model\":\"text-embedding-3-small\",\"input\":[\"a\",\"b c\"],"
			  "\"encoding_format\":\"float\",\"dimensions\":8}");
	cJSON_free(body);
	/* a caller's own encoding_format is sent as is (and then refused by the parser) */
	body = openai_embed_request("m", inputs, base64);
	CHECK_STR(body, "{\"model\":\"m\",\"input\":[\"a\",\"b c\"],\"encoding_format\":\"base64\"}");
	cJSON_free(body);
	body = openai_embed_request("m", inputs, NULL);
	CHECK_STR(body, "{\"model\":\"m\",\"input\":[\"a\",\"b c\"],\"encoding_format\":\"float\"}");
	cJSON_free(body);
	cJSON_Delete(inputs);
	cJSON_Delete(params);
	cJSON_Delete(base64);
}

static void
test_parse_ok(void)
{
	LlmEmbedResult r;
	char		err[256];

	/* listed out of order: each vector lands in its input's row */
	CHECK(parse("{\"object\":\"list\",\"model\":\"m-1\",\"data\":["
				"{\"object\":\"embedding\",\"index\":1,\"embedding\":[0.5,-0.25]},"
				"{\"object\":\"embedding\",\"index\":0,\"embedding\":[1,0]}],"
				"\"usage\":{\"prompt_tokens\":7,\"total_tokens\":7}}", 2, &r, err, sizeof(err)));
	CHECK(r.n == 2 && r.dimensions == 2);
	CHECK(r.vectors[0] == 1.0f && r.vectors[1] == 0.0f);
	CHECK(r.vectors[2] == 0.5f && r.vectors[3] == -0.25f);
	CHECK_STR(r.remote_model, "m-1");
	CHECK(r.usage.present && r.usage.input_tokens == 7 && r.usage.output_tokens == 0);
	llm_embed_result_free(&r);
	CHECK(r.vectors == NULL);

	/* no index, no usage, no model: input order, usage absent */
	CHECK(parse("{\"data\":[{\"embedding\":[1]},{\"embedding\":[2]}]}", 2, &r, err, sizeof(err)));
	CHECK(r.vectors[0] == 1.0f && r.vectors[1] == 2.0f);
	CHECK(!r.usage.present && r.remote_model == NULL);
	llm_embed_result_free(&r);
}

static void
test_parse_bad(void)
{
	LlmEmbedResult r;
	char		err[256];

	CHECK(!parse("{\"data\":[", 1, &r, err, sizeof(err)));
	CHECK_STR(err, "the response body is not valid JSON");
	CHECK(!parse("{\"object\":\"list\"}", 1, &r, err, sizeof(err)));
	CHECK_STR(err, "the response has no data array");
	CHECK(!parse("{\"data\":[{\"index\":0,\"embedding\":[1]}]}", 2, &r, err, sizeof(err)));
	CHECK_STR(err, "the response has 1 embeddings for 2 inputs");
	CHECK(!parse("{\"data\":[{\"index\":0,\"embedding\":[1]},{\"index\":0,\"embedding\":[2]}]}",
				 2, &r, err, sizeof(err)));
	CHECK_STR(err, "input 0 has more than one embedding");
	CHECK(r.vectors == NULL);
	CHECK(!parse("{\"data\":[{\"index\":2,\"embedding\":[1]},{\"index\":0,\"embedding\":[2]}]}",
				 2, &r, err, sizeof(err)));
	CHECK_STR(err, "data[0].index is not the index of an input (0 to 1)");
	CHECK(!parse("{\"data\":[{\"index\":0.5,\"embedding\":[1]}]}", 1, &r, err, sizeof(err)));
	CHECK_STR(err, "data[0].index is not the index of an input (0 to 0)");
	CHECK(!parse("{\"data\":[{\"index\":0,\"embedding\":[1,2]},{\"index\":1,\"embedding\":[2]}]}",
				 2, &r, err, sizeof(err)));
	CHECK_STR(err, "the embeddings differ in length (2 and 1)");
	CHECK(!parse("{\"data\":[{\"index\":0,\"embedding\":[]}]}", 1, &r, err, sizeof(err)));
	CHECK_STR(err, "data[0].embedding is not a non-empty array of numbers");
	CHECK(!parse("{\"data\":[{\"index\":0,\"embedding\":\"AAAA\"}]}", 1, &r, err, sizeof(err)));
	CHECK_STR(err, "data[0].embedding is not a non-empty array of numbers");
	CHECK(!parse("{\"data\":[{\"index\":0,\"embedding\":[1,\"x\"]}]}", 1, &r, err, sizeof(err)));
	CHECK_STR(err, "data[0].embedding[1] is not a finite number");
	/* beyond a real's range */
	CHECK(!parse("{\"data\":[{\"index\":0,\"embedding\":[1e300]}]}", 1, &r, err, sizeof(err)));
	CHECK_STR(err, "data[0].embedding[0] is not a finite number");
	CHECK(r.vectors == NULL);
}

void
test_embed(void)
{
	test_request_body();
	test_parse_ok();
	test_parse_bad();
}
