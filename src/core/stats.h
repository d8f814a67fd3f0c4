/*
 * stats.h — the statistics of llm_eval_compare: exact sign and McNemar
 * tests, a bootstrap interval of a mean difference, and a mean with its
 * 95 % interval.
 *
 * Pure code: no PostgreSQL headers; allocations through cJSON_malloc.
 */
#ifndef LLMEXT_STATS_H
#define LLMEXT_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Resamples of llm_bootstrap_interval by default, and at most. */
#define LLM_BOOTSTRAP_DEFAULT_RESAMPLES 2000
#define LLM_BOOTSTRAP_MAX_RESAMPLES 1000000

/*
 * The exact two-sided sign test of wins against losses (ties dropped):
 * p = min(1, 2 P(X <= min(wins, losses))), X ~ Binomial(wins + losses, 1/2),
 * as scipy.stats.binomtest(k, n, 0.5).pvalue.  1 for no pairs; NaN for a
 * negative count.
 */
extern double llm_sign_test(int64_t wins, int64_t losses);

/*
 * McNemar's exact test of paired pass/fail: the sign test on the discordant
 * pairs, b (passed with A only) and c (passed with B only), as statsmodels'
 * mcnemar(table, exact=True).pvalue.
 */
extern double llm_mcnemar(int64_t b, int64_t c);

/*
 * splitmix64 (Steele, Lea, Flood 2014): the generator of the bootstrap, so
 * that the same input always gives the same interval.
 */
extern uint64_t llm_splitmix64(uint64_t *state);

/* The bootstrap's seed for n values: this constant ("llmeval1") XOR n. */
#define LLM_BOOTSTRAP_SEED UINT64_C(0x6C6C6D6576616C31)

/*
 * The percentile bootstrap 95 % interval of the mean of x[0..n-1]:
 * resamples means of n values drawn with replacement (splitmix64 seeded
 * with LLM_BOOTSTRAP_SEED ^ n, an index drawn by Lemire's unbiased
 * multiply-shift), sorted, and their 2.5 % and 97.5 % quantiles by linear
 * interpolation (numpy's default, Hyndman and Fan's type 7).  tick, when
 * not NULL, is called before each resample (the server checks for a cancel
 * there).  False for n == 0, resamples < 1 or out of memory.
 */
extern bool llm_bootstrap_interval(const double *x, size_t n, int resamples,
								   double *low, double *high, void (*tick) (void));

/*
 * The two-sided 97.5 % quantile of Student's t with df degrees of freedom:
 * a table for df <= 30 (computed with mpmath to 10 decimals), beyond that
 * the Cornish-Fisher expansion around 1.959964 (error below 2e-6).
 */
extern double llm_t975(int64_t df);

/*
 * The mean of x[0..n-1] and its 95 % interval mean -+ t(n-1) * s / sqrt(n),
 * s the sample standard deviation (n - 1): Student's t, which is right for
 * the small sets evaluations often have.  For n == 1 the bounds are NaN
 * (unknown); false for n == 0.
 */
extern bool llm_mean_interval(const double *x, size_t n, double *mean, double *low,
							  double *high);

#endif							/* LLMEXT_STATS_H */
