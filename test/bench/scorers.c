/*
 * scorers.c — unit benchmark of the scorers (src/core/score*.c,
 * similarity.c) and the statistics (stats.c) on one core, without the
 * server: built and run by test/bench/scorers.sh.  Prints scores per second
 * for each scorer on a typical short answer, and the cost of the long and
 * the statistical cases.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/score.h"
#include "core/stats.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Scores per second over about `seconds`; the scorer is parsed on each call, as SQL does. */
static void
bench(const char *label, const char *scorer_text, const char *output, const char *expected_text,
	  double seconds)
{
	cJSON	   *scorer = cJSON_Parse(scorer_text);
	cJSON	   *expected = expected_text ? cJSON_Parse(expected_text) : NULL;
	LlmScore	score;
	char		err[256];
	long		n = 0;
	double		start = now();
	double		elapsed;

	if (scorer == NULL || (expected_text != NULL && expected == NULL))
	{
		fprintf(stderr, "bad JSON in %s\n", label);
		exit(1);
	}
	do
	{
		for (int i = 0; i < 100; i++)
			if (!llm_score(scorer, output, expected, NULL, &score, err, sizeof(err)))
			{
				fprintf(stderr, "%s: %s\n", label, err);
				exit(1);
			}
		n += 100;
		elapsed = now() - start;
	} while (elapsed < seconds);
	printf("%-34s %12.0f /s   (score %.3f)\n", label, n / elapsed, score.score);
	cJSON_Delete(scorer);
	cJSON_Delete(expected);
}

int
main(int argc, char **argv)
{
	double		seconds = argc > 1 ? atof(argv[1]) : 1.0;
	char	   *long_a = malloc(4001);
	char	   *long_b = malloc(4001);
	char	   *long_expected = malloc(4010);
	double	   *diffs = malloc(sizeof(double) * 1000);
	double		lo,
				hi,
				start;
	int			reps;

	for (int i = 0; i < 4000; i++)
	{
		long_a[i] = "abcdefghij klmnop"[i % 17];
		long_b[i] = "abcdefgxij klmnoq"[i % 17];
	}
	long_a[4000] = long_b[4000] = '\0';
	snprintf(long_expected, 4010, "\"%s\"", long_b);
	for (int i = 0; i < 1000; i++)
		diffs[i] = (i % 7) / 7.0 - 0.4;

	printf("one core, scorer parsed on every call (as llm_eval_score does)\n");
	bench("exact", "{\"type\": \"exact\"}", "The capital of France is Paris.",
		  "\"The capital of France is Paris.\"", seconds);
	bench("normalized", "{\"type\": \"normalized\"}", "  the Capital of France is PARIS! ",
		  "\"The capital of France is Paris.\"", seconds);
	bench("contains (3 texts)", "{\"type\": \"contains\"}",
		  "The capital of France is Paris, on the Seine, in Europe.",
		  "[\"paris\", \"seine\", \"europe\"]", seconds);
	bench("json_valid", "{\"type\": \"json_valid\", \"json_type\": \"object\"}",
		  "{\"label\": \"spam\", \"confidence\": 0.93, \"tags\": [\"promo\", \"link\"]}", NULL, seconds);
	bench("json_schema", "{\"type\": \"json_schema\", \"schema\": {\"type\": \"object\", "
		  "\"properties\": {\"label\": {\"enum\": [\"spam\", \"ham\"]}, \"confidence\": {\"type\": \"number\"}, "
		  "\"tags\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}}}, \"required\": [\"label\"]}}",
		  "{\"label\": \"spam\", \"confidence\": 0.93, \"tags\": [\"promo\", \"link\"]}", NULL, seconds);
	bench("json_match", "{\"type\": \"json_match\"}",
		  "{\"label\": \"spam\", \"confidence\": 0.93, \"tags\": [\"promo\", \"link\"]}",
		  "{\"label\": \"spam\", \"tags\": [\"promo\", \"link\"]}", seconds);
	bench("numeric (extract)", "{\"type\": \"numeric\", \"extract\": true, \"tolerance\": 0.01}",
		  "The total is 1234.50 euros.", "1234.5", seconds);
	bench("similarity (31 chars)", "{\"type\": \"similarity\"}", "The capital of France is Paris.",
		  "\"The capital of france is Paris!\"", seconds);
	bench("similarity (4,000 chars, the cap)", "{\"type\": \"similarity\"}", long_a, long_expected,
		  seconds);

	start = now();
	reps = 0;
	do
	{
		llm_bootstrap_interval(diffs, 1000, 2000, &lo, &hi, NULL);
		reps++;
	} while (now() - start < seconds);
	printf("%-34s %12.1f ms\n", "bootstrap, 1,000 diffs x 2,000", (now() - start) * 1000 / reps);
	start = now();
	reps = 0;
	do
	{
		volatile double p = llm_sign_test(480 + reps % 7, 520);

		(void) p;
		reps++;
	} while (now() - start < seconds / 4);
	printf("%-34s %12.0f /s\n", "sign test, 1,000 pairs", reps / (now() - start));
	free(long_a);
	free(long_b);
	free(long_expected);
	free(diffs);
	return 0;
}
