/*
 * similarity.c — the similarity scorer: 1 - d / max(len a, len b), d the
 * Levenshtein distance (insertions, deletions, substitutions) between the
 * two texts' code points.
 *
 * Bounded cost: each text is cut to LLM_SIMILARITY_MAX_CHARS code points
 * first, so one score takes at most 4,000 x 4,000 cell updates (some
 * milliseconds) and two rows of 4,001 ints.  Texts longer than that are
 * compared on their beginnings only.
 *
 * And the embedding_similarity scorer's arithmetic: the cosine of two
 * vectors the server got from an embedding model.
 */
#include "core/score.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/score_internal.h"

/* Decodes at most max code points of text into cp; returns how many. */
static size_t
decode(const char *text, uint32_t *cp, size_t max)
{
	const unsigned char *p = (const unsigned char *) text;
	size_t		n = 0;

	while (*p != '\0' && n < max)
	{
		int			len = *p < 0x80 ? 1 : (*p & 0xE0) == 0xC0 ? 2 : (*p & 0xF0) == 0xE0 ? 3 :
			(*p & 0xF8) == 0xF0 ? 4 : 0;
		uint32_t	c = len == 1 ? *p : len == 2 ? *p & 0x1F : len == 3 ? *p & 0x0F : *p & 0x07;
		int			i;

		for (i = 1; i < len; i++)
		{
			if ((p[i] & 0xC0) != 0x80)
				break;
			c = (c << 6) | (p[i] & 0x3F);
		}
		if (len == 0 || i < len)
		{
			/* an invalid byte stands for itself, above the code points */
			cp[n++] = 0x110000 + *p;
			p++;
			continue;
		}
		cp[n++] = c;
		p += len;
	}
	return n;
}

double
llm_similarity(const char *a, const char *b)
{
	/* room for every byte up to the cut: a stray byte is one character */
	size_t		la = strlen(a);
	size_t		lb = strlen(b);
	size_t		ra = la < LLM_SIMILARITY_MAX_CHARS ? la : LLM_SIMILARITY_MAX_CHARS;
	size_t		rb = lb < LLM_SIMILARITY_MAX_CHARS ? lb : LLM_SIMILARITY_MAX_CHARS;
	uint32_t   *mem = cJSON_malloc(sizeof(uint32_t) * (ra + rb + rb + 3));
	uint32_t   *ca;
	uint32_t   *cb;
	uint32_t   *row;
	size_t		na,
				nb,
				longer;
	double		result;

	if (mem == NULL)
		return -1;
	ca = mem;
	cb = ca + ra + 1;
	row = cb + rb + 1;
	na = decode(a, ca, LLM_SIMILARITY_MAX_CHARS);
	nb = decode(b, cb, LLM_SIMILARITY_MAX_CHARS);
	longer = na > nb ? na : nb;
	/* a common prefix and suffix cost nothing */
	while (na > 0 && nb > 0 && ca[0] == cb[0])
		ca++, cb++, na--, nb--;
	while (na > 0 && nb > 0 && ca[na - 1] == cb[nb - 1])
		na--, nb--;
	if (longer == 0)
		result = 1;
	else if (na == 0 || nb == 0)
		result = 1 - (double) (na + nb) / longer;
	else
	{
		/* one row of the distance matrix over b, updated for each char of a */
		for (size_t j = 0; j <= nb; j++)
			row[j] = (uint32_t) j;
		for (size_t i = 1; i <= na; i++)
		{
			uint32_t	diag = row[0];
			uint32_t	ci = ca[i - 1];

			row[0] = (uint32_t) i;
			for (size_t j = 1; j <= nb; j++)
			{
				uint32_t	up = row[j];
				uint32_t	best = diag + (ci != cb[j - 1]);

				if (up + 1 < best)
					best = up + 1;
				if (row[j - 1] + 1 < best)
					best = row[j - 1] + 1;
				row[j] = best;
				diag = up;
			}
		}
		result = 1 - (double) row[nb] / longer;
	}
	cJSON_free(mem);
	return result;
}

bool
llm_score_similarity(const LlmScorer *s, const char *output, const cJSON *expected,
					 LlmScore *out, char *err, size_t errlen)
{
	char	   *want = llm_score_expected_text(expected);
	char	   *a = want;
	char	   *b = (char *) output;
	double		sim;

	if (want != NULL && s->normalize)
	{
		a = llm_score_normalize(want);
		b = a ? llm_score_normalize(output) : NULL;
	}
	sim = b != NULL ? llm_similarity(a, b) : -1;
	if (a != want)
		cJSON_free(a);
	if (b != output)
		cJSON_free(b);
	cJSON_free(want);
	if (sim < 0)
	{
		snprintf(err, errlen, "out of memory");
		return false;
	}
	llm_score_set(out, s, sim, NULL);
	if (!out->passed)
		snprintf(out->reason, sizeof(out->reason), "similarity %.3f is below %.3g",
				 sim, s->threshold);
	return true;
}

double
llm_cosine_similarity(const float *a, const float *b, int n)
{
	double		dot = 0;
	double		na = 0;
	double		nb = 0;
	double		cosine;

	for (int i = 0; i < n; i++)
	{
		dot += (double) a[i] * b[i];
		na += (double) a[i] * a[i];
		nb += (double) b[i] * b[i];
	}
	/* a zero vector has no direction; NaN and infinities mean no answer */
	if (!(na > 0 && nb > 0) || !isfinite(dot) || !isfinite(na) || !isfinite(nb))
		return 0;
	cosine = dot / (sqrt(na) * sqrt(nb));
	/* rounding may overshoot by an ulp or so */
	return cosine > 1 ? 1 : cosine < -1 ? -1 : cosine;
}

void
llm_score_embedding(const LlmScorer *s, const float *output_vector,
					const float *expected_vector, int n, LlmScore *out)
{
	double		cosine = llm_cosine_similarity(output_vector, expected_vector, n);

	/* opposite directions are no more wrong than unrelated ones: both score 0 */
	llm_score_set(out, s, cosine, NULL);
	if (!out->passed)
		snprintf(out->reason, sizeof(out->reason), "embedding similarity %.3f is below %.3g",
				 cosine, s->threshold);
}
