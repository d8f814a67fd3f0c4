/* Unit tests of the scorers (score.c, score_json.c, similarity.c). */
#include "unit.h"

#include <math.h>
#include <stdlib.h>

#include "core/score.h"

static char err[256];
static LlmScore sc;

/* Scores with scorer and expected given as JSON texts (NULL: none). */
static bool
run(const char *scorer, const char *output, const char *expected)
{
	cJSON	   *s = cJSON_Parse(scorer);
	cJSON	   *e = expected ? cJSON_Parse(expected) : NULL;
	bool		ok;

	err[0] = '\0';
	if (s == NULL || (expected != NULL && e == NULL))
	{
		fprintf(stderr, "test_score: bad test JSON %s / %s\n", scorer, expected ? expected : "");
		abort();
	}
	ok = llm_score(s, output, e, NULL, &sc, err, sizeof(err));
	cJSON_Delete(s);
	cJSON_Delete(e);
	return ok;
}

#define PASS(scorer, output, expected) \
	do { CHECK(run(scorer, output, expected)); CHECK(sc.has_score && sc.passed && sc.score == 1 && sc.reason[0] == '\0'); } while (0)
#define FAIL(scorer, output, expected) \
	do { CHECK(run(scorer, output, expected)); CHECK(sc.has_score && !sc.passed && sc.reason[0] != '\0'); } while (0)
#define BAD(scorer, needle) \
	do { CHECK(!run(scorer, "x", "\"x\"")); CHECK(strstr(err, needle) != NULL); } while (0)

static bool
valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;

	while (*p)
	{
		int			n = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2 : (*p & 0xF8) == 0xF0 ? 3 : -1;

		if (n < 0)
			return false;
		p++;
		for (int i = 0; i < n; i++, p++)
			if ((*p & 0xC0) != 0x80)
				return false;
	}
	return true;
}

static void
test_scorer_parse(void)
{
	BAD("[]", "JSON object");
	BAD("{}", "\"type\" string");
	BAD("{\"type\": 3}", "\"type\" string");
	BAD("{\"type\": \"bleu\"}", "unknown scorer type \"bleu\"");
	BAD("{\"type\": \"exact\", \"threshold\": 2}", "\"threshold\"");
	BAD("{\"type\": \"exact\", \"threshold\": \"high\"}", "\"threshold\"");
	BAD("{\"type\": \"contains\", \"case_sensitive\": \"yes\"}", "\"case_sensitive\"");
	BAD("{\"type\": \"regex\", \"flags\": \"g\"}", "\"flags\"");
	BAD("{\"type\": \"regex\", \"pattern\": 1}", "\"pattern\"");
	BAD("{\"type\": \"json_valid\", \"json_type\": \"map\"}", "\"json_type\"");
	BAD("{\"type\": \"json_schema\"}", "\"schema\" object");
	BAD("{\"type\": \"json_schema\", \"schema\": {\"type\": \"string\", \"pattern\": \"a\"}}", "pattern");
	BAD("{\"type\": \"json_match\", \"fields\": \"a\"}", "\"fields\"");
	BAD("{\"type\": \"json_match\", \"fields\": [\"a\", 1]}", "\"fields\"");
	BAD("{\"type\": \"json_match\", \"fields\": [\"/a~2\"]}", "not a valid JSON Pointer");
	BAD("{\"type\": \"numeric\", \"tolerance\": -1}", "\"tolerance\"");
	BAD("{\"type\": \"numeric\", \"extract\": 1}", "\"extract\"");
	BAD("{\"type\": \"similarity\", \"normalize\": \"no\"}", "\"normalize\"");
	BAD("{\"type\": \"judge\", \"model\": \"m\"}", "scorer \"judge\" is run by llm_eval_run, not by llm_eval_score");
	BAD("{\"type\": \"function\"}", "scorer \"function\" is run by llm_eval_run");
	BAD("{\"type\": \"regex\"}", "regular expressions");
	BAD("{\"type\": \"embedding_similarity\"}", "needs a \"model\"");
	BAD("{\"type\": \"embedding_similarity\", \"model\": \"\"}", "needs a \"model\"");
	BAD("{\"type\": \"embedding_similarity\", \"model\": 3}", "option \"model\" of an embedding_similarity scorer must be a string");
	BAD("{\"type\": \"embedding_similarity\", \"model\": \"e\", \"threshold\": \"x\"}", "\"threshold\"");
	/* a valid one is parsed here but embedded by the server */
	BAD("{\"type\": \"embedding_similarity\", \"model\": \"e\"}", "the server, which embeds the texts");
	/* a bad scorer is refused even without output */
	{
		cJSON	   *s = cJSON_Parse("{\"type\": \"nope\"}");

		CHECK(!llm_score(s, NULL, NULL, NULL, &sc, err, sizeof(err)));
		cJSON_Delete(s);
	}
	/* unknown options are ignored; null options are defaults */
	PASS("{\"type\": \"exact\", \"note\": [1], \"threshold\": null}", "a", "\"a\"");
	/* a long unknown type is cut in the message */
	{
		char		big[2000];

		memset(big, 'z', sizeof(big));
		memcpy(big, "{\"type\": \"", 10);
		memcpy(big + sizeof(big) - 3, "\"}", 3);
		CHECK(!run(big, "x", NULL));
		CHECK(strlen(err) < 120);
	}
}

static void
test_no_output(void)
{
	CHECK(run("{\"type\": \"exact\"}", NULL, "\"a\""));
	CHECK(!sc.has_score);
	CHECK_STR(sc.reason, "no output");
	CHECK(run("{\"type\": \"json_valid\"}", NULL, NULL));
	CHECK(!sc.has_score);
	CHECK_STR(sc.reason, "no output");
	CHECK(run("{\"type\": \"similarity\"}", NULL, NULL));
	CHECK(!sc.has_score);
	/* no expected answer: unknown, except for scorers that need none */
	CHECK(run("{\"type\": \"exact\"}", "a", NULL));
	CHECK(!sc.has_score);
	CHECK_STR(sc.reason, "no expected answer");
	PASS("{\"type\": \"json_valid\"}", "{}", NULL);
}

static void
test_exact(void)
{
	PASS("{\"type\": \"exact\"}", "Paris", "\"Paris\"");
	FAIL("{\"type\": \"exact\"}", "Paris ", "\"Paris\"");
	CHECK_STR(sc.reason, "expected \"Paris\", got \"Paris \"");
	CHECK(sc.score == 0);
	FAIL("{\"type\": \"exact\"}", "paris", "\"Paris\"");
	PASS("{\"type\": \"exact\"}", "", "\"\"");
	/* a non-string expected value: the same JSON value, however spelled */
	PASS("{\"type\": \"exact\"}", "42", "42");
	PASS("{\"type\": \"exact\"}", " 42.0 ", "42");
	PASS("{\"type\": \"exact\"}", "{ \"b\": [1, 2], \"a\": null }", "{\"a\": null, \"b\": [1, 2]}");
	FAIL("{\"type\": \"exact\"}", "{\"a\": 1}", "{\"a\": 2}");
	CHECK_STR(sc.reason, "expected {\"a\":2}, got \"{\"a\": 1}\"");
	FAIL("{\"type\": \"exact\"}", "forty-two", "42");
	PASS("{\"type\": \"exact\"}", "true", "true");
	PASS("{\"type\": \"exact\"}", "null", "null");
	/* a threshold of 0 passes anything that has a score */
	CHECK(run("{\"type\": \"exact\", \"threshold\": 0}", "no", "\"yes\""));
	CHECK(sc.has_score && sc.passed && sc.score == 0);
	/* a long difference is cut at a character boundary */
	{
		char		out[300];

		for (int i = 0; i < 299; i++)
			out[i] = "\xc3\xa9"[i % 2];	/* é */
		out[299] = '\0';
		out[298] = '\0';
		FAIL("{\"type\": \"exact\"}", out, "\"x\"");
		CHECK(valid_utf8(sc.reason));
		CHECK(strstr(sc.reason, "...") != NULL);
	}
}

static void
test_normalized(void)
{
	char	   *n;

	n = llm_score_normalize("  Hello,\t WORLD!!  It's  \n ok. ");
	CHECK_STR(n, "hello world its ok");
	cJSON_free(n);
	n = llm_score_normalize("\xc3\x89t\xc3\xa9 \xe2\x80\x94 OK");	/* Été — OK */
	CHECK_STR(n, "\xc3\x89t\xc3\xa9 \xe2\x80\x94 ok");	/* non-ASCII kept as is */
	cJSON_free(n);
	n = llm_score_normalize("...");
	CHECK_STR(n, "");
	cJSON_free(n);
	PASS("{\"type\": \"normalized\"}", " the  ANSWER is: Paris. ", "\"The answer is Paris\"");
	FAIL("{\"type\": \"normalized\"}", "Paris, France", "\"Paris\"");
	CHECK(strstr(sc.reason, "(normalized)") != NULL);
	PASS("{\"type\": \"normalized\"}", "42!", "42");
}

static void
test_contains(void)
{
	PASS("{\"type\": \"contains\"}", "The capital is PARIS.", "\"paris\"");
	FAIL("{\"type\": \"contains\", \"case_sensitive\": true}", "The capital is PARIS.", "\"paris\"");
	CHECK_STR(sc.reason, "missing \"paris\"");
	PASS("{\"type\": \"contains\"}", "red, green and blue", "[\"Blue\", \"red\"]");
	FAIL("{\"type\": \"contains\"}", "red, green", "[\"red\", \"blue\", \"green\", \"pink\"]");
	CHECK(sc.score == 0.5);
	CHECK_STR(sc.reason, "missing \"blue\" and 1 more");
	CHECK(run("{\"type\": \"contains\", \"threshold\": 0.5}", "red, green", "[\"red\", \"blue\", \"green\", \"pink\"]"));
	CHECK(sc.passed && sc.score == 0.5);
	PASS("{\"type\": \"contains\"}", "anything", "[]");
	PASS("{\"type\": \"contains\"}", "anything", "\"\"");
	PASS("{\"type\": \"contains\"}", "it costs 42 euros", "42");
	PASS("{\"type\": \"contains\"}", "\xc3\x89t\xc3\xa9", "\"\xc3\x89t\"");
	FAIL("{\"type\": \"contains\"}", "\xc3\xa9t\xc3\xa9", "\"\xc3\x89t\"");	/* no Unicode folding */
}

static void
test_json_scorers(void)
{
	PASS("{\"type\": \"json_valid\"}", " {\"a\": [1, 2]} ", NULL);
	PASS("{\"type\": \"json_valid\"}", "\"text\"", NULL);
	FAIL("{\"type\": \"json_valid\"}", "{\"a\": 1", NULL);
	CHECK_STR(sc.reason, "the output is not JSON");
	FAIL("{\"type\": \"json_valid\"}", "```json\n{}\n```", NULL);
	FAIL("{\"type\": \"json_valid\"}", "{} {}", NULL);
	FAIL("{\"type\": \"json_valid\"}", "", NULL);
	PASS("{\"type\": \"json_valid\", \"json_type\": \"array\"}", "[]", NULL);
	FAIL("{\"type\": \"json_valid\", \"json_type\": \"object\"}", "[]", NULL);
	CHECK_STR(sc.reason, "the output is JSON but not an object, it is an array");

	/* deep nesting is refused by the parser, not the stack */
	{
		char	   *deep = malloc(200001);

		for (int i = 0; i < 100000; i++)
			deep[i] = '[', deep[100000 + i] = ']';
		deep[200000] = '\0';
		FAIL("{\"type\": \"json_valid\"}", deep, NULL);
		FAIL("{\"type\": \"json_match\"}", deep, "{\"a\": 1}");
		free(deep);
	}

	/* json_schema */
	{
		const char *s = "{\"type\": \"json_schema\", \"schema\": {\"type\": \"object\", "
			"\"properties\": {\"label\": {\"enum\": [\"spam\", \"ham\"]}, \"n\": {\"type\": \"integer\"}}, "
			"\"required\": [\"label\"]}}";

		PASS(s, "{\"label\": \"spam\", \"n\": 3}", NULL);
		FAIL(s, "{\"n\": 3}", NULL);
		CHECK_STR(sc.reason, "$: missing required property \"label\"");
		FAIL(s, "{\"label\": \"eggs\"}", NULL);
		CHECK(strstr(sc.reason, "$.label") != NULL);
		FAIL(s, "{\"label\": \"ham\", \"n\": 1.5}", NULL);
		FAIL(s, "label: spam", NULL);
		CHECK_STR(sc.reason, "the output is not JSON");
	}

	/* json_match */
	{
		const char *all = "{\"type\": \"json_match\"}";
		const char *some = "{\"type\": \"json_match\", \"fields\": [\"a\", \"c\"]}";
		const char *exp = "{\"a\": 1, \"b\": \"x\", \"c\": {\"d\": [1, 2.0]}, \"e\": null}";

		PASS(all, "{\"e\": null, \"c\": {\"d\": [1.0, 2]}, \"b\": \"x\", \"a\": 1e0, \"extra\": 9}", exp);
		FAIL(all, "{\"a\": 1, \"b\": \"y\", \"c\": {\"d\": [1, 2]}}", exp);
		CHECK(sc.score == 0.5);
		CHECK_STR(sc.reason, "field \"b\" differs (and more fields)");
		PASS(some, "{\"a\": 1, \"c\": {\"d\": [1, 2]}, \"b\": 0}", exp);
		FAIL(some, "{\"c\": {\"d\": [1, 2]}}", exp);
		CHECK_STR(sc.reason, "field \"a\" is missing");
		CHECK(sc.score == 0.5);
		FAIL(all, "[1]", exp);
		CHECK_STR(sc.reason, "the output is not a JSON object");
		CHECK(sc.score == 0);
		FAIL(all, "nope", exp);
		CHECK_STR(sc.reason, "the output is not JSON");
		CHECK(run(all, "{}", "[1, 2]"));
		CHECK(!sc.has_score);
		CHECK_STR(sc.reason, "the expected answer is not a JSON object");
		PASS(all, "{\"z\": 1}", "{}");
		/* a field listed but absent from both */
		PASS("{\"type\": \"json_match\", \"fields\": [\"q\"]}", "{}", "{}");
		/* nested objects compare by value, both ways */
		FAIL(all, "{\"o\": {\"x\": 1, \"y\": 2}}", "{\"o\": {\"x\": 1}}");
		/* fields inside: JSON Pointers, "~1" for "/" and "~0" for "~", indices in arrays */
		{
			const char *deep = "{\"type\": \"json_match\", \"fields\": [\"/o/x\", \"/l/1\", \"/a~1b\", \"/t~0\", \"k\"]}";
			const char *want = "{\"o\": {\"x\": 1, \"y\": 2}, \"l\": [0, \"two\"], \"a/b\": true, \"t~\": null, \"k\": 5}";

			PASS(deep, "{\"o\": {\"x\": 1.0, \"y\": 99}, \"l\": [7, \"two\"], \"a/b\": true, \"t~\": null, \"k\": 5}", want);
			FAIL(deep, "{\"o\": {\"x\": 2}, \"l\": [0], \"a/b\": true, \"t~\": null, \"k\": 5}", want);
			CHECK(sc.score == 0.6);
			CHECK_STR(sc.reason, "field \"/o/x\" differs (and more fields)");
			/* a pointer into a value of the wrong type, or past an array, is missing */
			FAIL("{\"type\": \"json_match\", \"fields\": [\"/o/x\"]}", "{\"o\": [1]}", "{\"o\": {\"x\": 1}}");
			CHECK_STR(sc.reason, "field \"/o/x\" is missing");
			FAIL("{\"type\": \"json_match\", \"fields\": [\"/l/1\"]}", "{\"l\": [1]}", "{\"l\": [1, 2]}");
			CHECK_STR(sc.reason, "field \"/l/1\" is missing");
			/* "01" is no index: missing from both, so equal */
			PASS("{\"type\": \"json_match\", \"fields\": [\"/l/01\"]}", "{\"l\": [1, 2]}", "{\"l\": [3, 2]}");
		}
	}

	/* llm_json_equal */
	{
		cJSON	   *a = cJSON_Parse("{\"x\": [1, {\"y\": true}], \"z\": \"s\"}");
		cJSON	   *b = cJSON_Parse("{\"z\": \"s\", \"x\": [1.0, {\"y\": true}]}");
		cJSON	   *c = cJSON_Parse("{\"z\": \"s\", \"x\": [{\"y\": true}, 1]}");

		CHECK(llm_json_equal(a, b));
		CHECK(!llm_json_equal(a, c));
		CHECK(!llm_json_equal(a, NULL));
		CHECK(llm_json_equal(NULL, NULL));
		cJSON_Delete(a);
		cJSON_Delete(b);
		cJSON_Delete(c);
	}
}

static void
test_numeric(void)
{
	double		v = 0;

	CHECK(llm_score_parse_number(" 42 ", false, &v) && v == 42);
	CHECK(llm_score_parse_number("-3.5e2", false, &v) && v == -350);
	CHECK(llm_score_parse_number(".5", false, &v) && v == 0.5);
	CHECK(llm_score_parse_number("3.", false, &v) && v == 3);
	CHECK(!llm_score_parse_number("42 apples", false, &v));
	CHECK(!llm_score_parse_number("0x10", false, &v));
	CHECK(!llm_score_parse_number("inf", false, &v));
	CHECK(!llm_score_parse_number("nan", false, &v));
	CHECK(!llm_score_parse_number("1e999", false, &v));
	CHECK(!llm_score_parse_number("", false, &v));
	CHECK(!llm_score_parse_number("-", false, &v));
	CHECK(!llm_score_parse_number("1,000", false, &v));
	CHECK(llm_score_parse_number("The answer is 42 apples", true, &v) && v == 42);
	CHECK(llm_score_parse_number("It was -7.25 degrees", true, &v) && v == -7.25);
	CHECK(llm_score_parse_number("Model A-3 says 12", true, &v) && v == 3);	/* "A-3": 3, not -3 */
	CHECK(llm_score_parse_number("GPT4 says 12", true, &v) && v == 12);
	CHECK(!llm_score_parse_number("no digits here", true, &v));

	PASS("{\"type\": \"numeric\"}", "42", "42");
	PASS("{\"type\": \"numeric\"}", "42.000", "\"42\"");
	FAIL("{\"type\": \"numeric\"}", "41.9", "42");
	CHECK_STR(sc.reason, "expected 42, got 41.9");
	PASS("{\"type\": \"numeric\", \"tolerance\": 0.11}", "41.9", "42");
	PASS("{\"type\": \"numeric\", \"relative\": 0.01}", "100.9", "100");
	FAIL("{\"type\": \"numeric\", \"relative\": 0.01}", "101.1", "100");
	FAIL("{\"type\": \"numeric\"}", "about 42", "42");
	CHECK_STR(sc.reason, "the output \"about 42\" is not a number");
	PASS("{\"type\": \"numeric\", \"extract\": true}", "about 42.", "42");
	FAIL("{\"type\": \"numeric\", \"extract\": true}", "about forty", "42");
	CHECK(run("{\"type\": \"numeric\"}", "42", "\"forty-two\""));
	CHECK(!sc.has_score);
	CHECK(run("{\"type\": \"numeric\"}", "42", "[42]"));
	CHECK(!sc.has_score);
}

static void
test_similarity(void)
{
	CHECK(llm_similarity("", "") == 1);
	CHECK(llm_similarity("abc", "") == 0);
	CHECK(llm_similarity("kitten", "sitting") == 1 - 3.0 / 7);
	CHECK(llm_similarity("flaw", "lawn") == 0.5);
	CHECK(llm_similarity("same", "same") == 1);
	/* code points, not bytes: é vs e is one substitution */
	CHECK(llm_similarity("caf\xc3\xa9", "cafe") == 0.75);
	/* invalid bytes count one each */
	CHECK(llm_similarity("a\xff", "a\xfe") == 0.5);
	PASS("{\"type\": \"similarity\"}", "colour", "\"colour\"");
	CHECK(run("{\"type\": \"similarity\"}", "The cat sat on the mat", "\"The cat sat on a mat\""));
	CHECK(sc.has_score && sc.passed && fabs(sc.score - (1 - 3.0 / 22)) < 1e-12 && sc.reason[0] == '\0');
	FAIL("{\"type\": \"similarity\"}", "kitten", "\"sitting\"");
	CHECK_STR(sc.reason, "similarity 0.571 is below 0.8");
	CHECK(run("{\"type\": \"similarity\", \"normalize\": true}", "HELLO, World!", "\"hello world\""));
	CHECK(sc.score == 1);
	/* long texts are cut to LLM_SIMILARITY_MAX_CHARS code points */
	{
		size_t		n = 100000;
		char	   *a = malloc(n + 1);
		char	   *b = malloc(n + 1);

		memset(a, 'a', n);
		memset(b, 'a', n);
		a[n] = b[n] = '\0';
		b[n - 1] = 'b';			/* beyond the cut: unseen */
		CHECK(llm_similarity(a, b) == 1);
		for (size_t i = 0; i < n; i++)
			b[i] = "ab"[i % 2];
		CHECK(fabs(llm_similarity(a, b) - 0.5) < 1e-12);
		free(a);
		free(b);
	}
}

static void
test_embedding_similarity(void)
{
	static const float x[] = {1, 0, 0};
	static const float y[] = {0, 2, 0};
	static const float xy[] = {3, 3, 0};
	static const float minus_x[] = {-1, 0, 0};
	static const float zero[] = {0, 0, 0};
	static const float nan3[] = {NAN, 1, 0};
	LlmScorer	s;
	cJSON	   *json;

	/* the arithmetic: scale does not matter, the angle does */
	CHECK(llm_cosine_similarity(x, x, 3) == 1);
	CHECK(llm_cosine_similarity(x, y, 3) == 0);
	CHECK(fabs(llm_cosine_similarity(x, xy, 3) - sqrt(0.5)) < 1e-12);
	CHECK(llm_cosine_similarity(x, minus_x, 3) == -1);
	CHECK(llm_cosine_similarity(x, zero, 3) == 0);
	CHECK(llm_cosine_similarity(zero, zero, 3) == 0);
	CHECK(llm_cosine_similarity(nan3, x, 3) == 0);
	CHECK(llm_cosine_similarity(x, x, 0) == 0);

	/* options: threshold 0.8 by default, the model kept */
	json = cJSON_Parse("{\"type\": \"embedding_similarity\", \"model\": \"emb\"}");
	CHECK(llm_scorer_parse(json, &s, err, sizeof(err)));
	CHECK(s.type == LLM_SCORER_EMBEDDING_SIMILARITY);
	CHECK_STR(s.model, "emb");
	CHECK(s.threshold == 0.8);

	/* the score: the cosine clamped to [0, 1] against the threshold */
	llm_score_embedding(&s, x, x, 3, &sc);
	CHECK(sc.has_score && sc.passed && sc.score == 1 && sc.reason[0] == '\0');
	llm_score_embedding(&s, x, xy, 3, &sc);
	CHECK(sc.has_score && !sc.passed && fabs(sc.score - sqrt(0.5)) < 1e-12);
	CHECK_STR(sc.reason, "embedding similarity 0.707 is below 0.8");
	llm_score_embedding(&s, x, minus_x, 3, &sc);
	CHECK(sc.has_score && !sc.passed && sc.score == 0);
	CHECK_STR(sc.reason, "embedding similarity -1.000 is below 0.8");
	cJSON_Delete(json);

	json = cJSON_Parse("{\"type\": \"embedding_similarity\", \"model\": \"emb\", \"threshold\": 0.7}");
	CHECK(llm_scorer_parse(json, &s, err, sizeof(err)));
	llm_score_embedding(&s, x, xy, 3, &sc);
	CHECK(sc.passed && sc.reason[0] == '\0');
	cJSON_Delete(json);
}

void
test_score(void)
{
	test_scorer_parse();
	test_no_output();
	test_exact();
	test_normalized();
	test_contains();
	test_json_scorers();
	test_numeric();
	test_similarity();
	test_embedding_similarity();
}
