/*
 * fuzz_score.c — libFuzzer target for the scorers (src/core/score*.c,
 * similarity.c): the scorer, the output and the expected answer all come
 * from SQL, so arbitrary.
 *
 * The input is split at its first two NUL bytes into scorer JSON, output
 * text and expected JSON (a missing part is NULL: no output, no expected
 * answer).  A scorer that does not parse as JSON is replaced by
 * {"type": T} for a T picked by the input's length, so that every scorer
 * sees arbitrary outputs.  Checked:
 *  - llm_score returns, and when it fails err holds a sentence;
 *  - a score is in [0, 1], passed is score >= the threshold, and an unknown
 *    score has a reason;
 *  - the reason is NUL-terminated and, when the inputs are valid UTF-8,
 *    valid UTF-8 itself (it is put into jsonb);
 *  - the same call twice gives the same result (no hidden state);
 *  - nothing leaks (AddressSanitizer).
 *
 * Build and run with test/fuzz/run.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/score.h"

static const char *const types[] = {
	"exact", "normalized", "contains", "json_valid", "json_match", "numeric", "similarity",
};

static bool
valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;

	while (*p)
	{
		int			n = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2 :
			(*p & 0xF8) == 0xF0 ? 3 : -1;

		if (n < 0)
			return false;
		p++;
		for (int i = 0; i < n; i++, p++)
			if ((*p & 0xC0) != 0x80)
				return false;
	}
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *copy = malloc(size + 1);
	char	   *parts[3] = {NULL, NULL, NULL};
	size_t		nparts = 0;
	cJSON	   *scorer;
	cJSON	   *expected = NULL;
	LlmScorer	parsed;
	LlmScore	a,
				b;
	char		err[256];
	char		err2[256];
	bool		ok;
	bool		utf8;

	memcpy(copy, data, size);
	copy[size] = '\0';
	parts[nparts++] = copy;
	for (size_t i = 0; i < size && nparts < 3; i++)
		if (copy[i] == '\0')
			parts[nparts++] = copy + i + 1;

	scorer = cJSON_Parse(parts[0]);
	if (scorer == NULL)
	{
		scorer = cJSON_CreateObject();
		cJSON_AddStringToObject(scorer, "type", types[size % (sizeof(types) / sizeof(types[0]))]);
	}
	if (parts[2] != NULL)
		expected = cJSON_Parse(parts[2]);
	utf8 = valid_utf8(parts[0]) && (parts[1] == NULL || valid_utf8(parts[1])) &&
		(parts[2] == NULL || valid_utf8(parts[2]));

	err[0] = '\0';
	ok = llm_score(scorer, parts[1], expected, NULL, &a, err, sizeof(err));
	if (!ok)
	{
		if (err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL)
			abort();
	}
	else
	{
		if (memchr(a.reason, '\0', sizeof(a.reason)) == NULL)
			abort();
		if (utf8 && !valid_utf8(a.reason))
			abort();
		if (!llm_scorer_parse(scorer, &parsed, err2, sizeof(err2)))
			abort();
		if (a.has_score)
		{
			if (!(a.score >= 0 && a.score <= 1))
				abort();
			if (a.passed != (a.score >= parsed.threshold))
				abort();
		}
		else if (a.reason[0] == '\0')
			abort();
		if (!llm_score(scorer, parts[1], expected, NULL, &b, err2, sizeof(err2)))
			abort();
		if (a.has_score != b.has_score || a.score != b.score || a.passed != b.passed ||
			strcmp(a.reason, b.reason) != 0)
			abort();
	}
	cJSON_Delete(scorer);
	cJSON_Delete(expected);
	free(copy);
	return 0;
}
