/*
 * stats.c — sign test, McNemar's exact test, bootstrap interval, mean
 * interval: see stats.h.
 */
#include "core/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* log of C(n, k) 2^-n */
static double
log_binom_half(double n, double k)
{
	return lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1) - n * M_LN2;
}

double
llm_sign_test(int64_t wins, int64_t losses)
{
	double		n;
	double		k;
	double		term;
	double		sum;
	double		p;

	if (wins < 0 || losses < 0)
		return NAN;
	if (wins == losses)
		return 1;				/* P(X <= n/2) >= 1/2 */
	n = (double) wins + (double) losses;
	k = (double) (wins < losses ? wins : losses);

	if (n <= 1000)
	{
		/*
		 * Exactly enough: from 2^-n (a normal double for n <= 1022) up by the
		 * ratio (n - i) / (i + 1), each step within half an ulp.
		 */
		term = ldexp(1, -(int) n);
		sum = 0;
		for (double i = 0; i <= k; i++)
		{
			sum += term;
			term = term * (n - i) / (i + 1);
		}
		p = 2 * sum;
		return p < 1 ? p : 1;
	}

	/*
	 * Large n: lgamma's log of the largest term (relative error about n *
	 * 1e-16 / 1e6, so 1e-9 for a million pairs).  P(X <= k) for k < n/2: the terms C(n, i) 2^-n fall as i goes down from
	 * k (the ratio of neighbours is i / (n - i + 1) < 1), so sum from k down
	 * and stop once a term no longer changes the sum.
	 */
	term = exp(log_binom_half(n, k));
	sum = 0;
	for (double i = k; i >= 0; i--)
	{
		sum += term;
		if (term < sum * 1e-17)
			break;
		term *= i / (n - i + 1);
	}
	p = 2 * sum;
	return p < 1 ? p : 1;
}

double
llm_mcnemar(int64_t b, int64_t c)
{
	return llm_sign_test(b, c);
}

uint64_t
llm_splitmix64(uint64_t *state)
{
	uint64_t	z = (*state += UINT64_C(0x9E3779B97F4A7C15));

	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* A uniform integer in [0, n), n > 0 (Lemire 2019, with rejection). */
static uint64_t
bounded(uint64_t *state, uint64_t n)
{
	__uint128_t m = (__uint128_t) llm_splitmix64(state) * n;
	uint64_t	low = (uint64_t) m;

	if (low < n)
	{
		uint64_t	threshold = -n % n;

		while (low < threshold)
		{
			m = (__uint128_t) llm_splitmix64(state) * n;
			low = (uint64_t) m;
		}
	}
	return (uint64_t) (m >> 64);
}

static int
compare_doubles(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* Type 7 quantile of sorted v[0..n-1]. */
static double
quantile(const double *v, size_t n, double q)
{
	double		h = (n - 1) * q;
	size_t		lo = (size_t) floor(h);

	if (lo + 1 >= n)
		return v[n - 1];
	return v[lo] + (h - lo) * (v[lo + 1] - v[lo]);
}

bool
llm_bootstrap_interval(const double *x, size_t n, int resamples, double *low, double *high,
					   void (*tick) (void))
{
	double	   *means;
	uint64_t	state = LLM_BOOTSTRAP_SEED ^ (uint64_t) n;

	if (n == 0 || resamples < 1)
		return false;
	means = cJSON_malloc(sizeof(double) * (size_t) resamples);
	if (means == NULL)
		return false;
	for (int r = 0; r < resamples; r++)
	{
		double		sum = 0;

		if (tick != NULL)
			tick();
		for (size_t i = 0; i < n; i++)
			sum += x[bounded(&state, n)];
		means[r] = sum / n;
	}
	qsort(means, (size_t) resamples, sizeof(double), compare_doubles);
	*low = quantile(means, (size_t) resamples, 0.025);
	*high = quantile(means, (size_t) resamples, 0.975);
	cJSON_free(means);
	return true;
}

static const double t975_table[30] = {
	12.7062047362, 4.3026527297, 3.1824463053, 2.7764451052, 2.5705818356,
	2.4469118511, 2.3646242516, 2.3060041352, 2.2621571628, 2.2281388520,
	2.2009851601, 2.1788128297, 2.1603686565, 2.1447866879, 2.1314495456,
	2.1199052992, 2.1098155778, 2.1009220402, 2.0930240544, 2.0859634473,
	2.0796138447, 2.0738730679, 2.0686576104, 2.0638985616, 2.0595385528,
	2.0555294386, 2.0518305165, 2.0484071418, 2.0452296421, 2.0422724563,
};

double
llm_t975(int64_t df)
{
	const double z = 1.959963984540054;
	double		z3 = z * z * z;
	double		z5 = z3 * z * z;
	double		z7 = z5 * z * z;
	double		d = (double) df;

	if (df < 1)
		return NAN;
	if (df <= 30)
		return t975_table[df - 1];
	return z + (z3 + z) / (4 * d) + (5 * z5 + 16 * z3 + 3 * z) / (96 * d * d) +
		(3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * d * d * d);
}

bool
llm_mean_interval(const double *x, size_t n, double *mean, double *low, double *high)
{
	double		sum = 0;
	double		ss = 0;
	double		m;
	double		half;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		sum += x[i];
	m = sum / n;
	*mean = m;
	if (n == 1)
	{
		*low = *high = NAN;
		return true;
	}
	for (size_t i = 0; i < n; i++)
		ss += (x[i] - m) * (x[i] - m);
	half = llm_t975((int64_t) n - 1) * sqrt(ss / (n - 1)) / sqrt((double) n);
	*low = m - half;
	*high = m + half;
	return true;
}
