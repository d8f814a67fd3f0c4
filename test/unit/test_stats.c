/*
 * Unit tests of stats.c.  The expected p-values were computed independently
 * with Python's exact integers: 2 * sum(math.comb(n, i) for i in
 * range(k + 1)) / 2**n as a fractions.Fraction, capped at 1.  The expected
 * bootstrap bounds come from a separate Python implementation of the same
 * generator (splitmix64, Lemire's bounded draw, type 7 quantiles), the t
 * quantiles from mpmath (betainc, findroot), the mean interval from
 * statistics.mean/stdev with t(4) = 2.7764451052.
 */
#include "unit.h"

#include <math.h>

#include "core/stats.h"

static int
close_rel(double a, double b, double rel)
{
	return fabs(a - b) <= rel * fabs(b) || (a == 0 && b == 0);
}

void
test_stats(void)
{
	double		lo,
				hi,
				mean;

	/* sign test */
	CHECK(llm_sign_test(0, 0) == 1);
	CHECK(llm_sign_test(1, 0) == 1);
	CHECK(llm_sign_test(5, 0) == 0.0625);
	CHECK(llm_sign_test(10, 2) == 0.03857421875);	/* 79 / 2048, exactly */
	CHECK(close_rel(llm_sign_test(7, 3), 0.34375, 1e-12));
	CHECK(close_rel(llm_sign_test(10, 2), 0.03857421875, 1e-12));
	CHECK(close_rel(llm_sign_test(3, 10), 0.09228515625, 1e-12));
	CHECK(close_rel(llm_sign_test(20, 5), 0.004077315330505371, 1e-12));
	CHECK(llm_sign_test(50, 50) == 1);
	CHECK(close_rel(llm_sign_test(60, 40), 0.05688793364098079, 1e-11));
	CHECK(close_rel(llm_sign_test(100, 0), 1.5777218104420236e-30, 1e-11));
	CHECK(close_rel(llm_sign_test(30, 70), 7.85013964559367e-05, 1e-11));
	CHECK(close_rel(llm_sign_test(500, 450), 0.11183864514157879, 1e-10));
	CHECK(close_rel(llm_sign_test(1000, 1100), 0.030720707864242296, 1e-9));
	CHECK(close_rel(llm_sign_test(600, 650), 0.16574252848396379, 1e-9));
	CHECK(close_rel(llm_sign_test(0, 1000), 1.8665272370064378e-301, 1e-9));
	CHECK(llm_sign_test(7, 3) == llm_sign_test(3, 7));
	CHECK(isnan(llm_sign_test(-1, 3)));
	/* huge counts stay fast and in [0, 1] */
	CHECK(llm_sign_test(1000000000, 1000000000) == 1);
	CHECK(llm_sign_test(1000000000, 1000010000) > 0.8 && llm_sign_test(1000000000, 1000010000) < 1);
	CHECK(llm_sign_test(2000000000, 1000000000) == 0);

	/* McNemar exact = the sign test of the discordant pairs */
	CHECK(close_rel(llm_mcnemar(10, 2), 0.03857421875, 1e-12));
	CHECK(llm_mcnemar(0, 0) == 1);

	/* splitmix64's published first outputs for seed 0 */
	{
		uint64_t	s = 0;

		CHECK(llm_splitmix64(&s) == UINT64_C(0xE220A8397B1DCDAF));
		CHECK(llm_splitmix64(&s) == UINT64_C(0x6E789E6AA1B965F4));
	}

	/* bootstrap: the same numbers as the Python implementation, every time */
	{
		double		d1[] = {1, 0, -1, 1, 1, 0, 1, -1, 0, 1};
		double		d2[] = {0.25, -0.5, 0.75, 0.1, 0.0, 0.3, -0.2};
		double		d3[] = {3.0};
		double		lo2,
					hi2;

		CHECK(llm_bootstrap_interval(d1, 10, 2000, &lo, &hi, NULL));
		CHECK(fabs(lo - -0.2) < 1e-12 && fabs(hi - 0.7) < 1e-12);
		CHECK(llm_bootstrap_interval(d1, 10, 2000, &lo2, &hi2, NULL));
		CHECK(lo2 == lo && hi2 == hi);
		CHECK(llm_bootstrap_interval(d2, 7, 500, &lo, &hi, NULL));
		CHECK(fabs(lo - -0.15714285714285717) < 1e-12 && fabs(hi - 0.36428571428571427) < 1e-12);
		CHECK(llm_bootstrap_interval(d3, 1, 10, &lo, &hi, NULL));
		CHECK(lo == 3.0 && hi == 3.0);
		CHECK(!llm_bootstrap_interval(d3, 0, 10, &lo, &hi, NULL));
		CHECK(!llm_bootstrap_interval(d3, 1, 0, &lo, &hi, NULL));
	}

	/* t quantiles */
	CHECK(fabs(llm_t975(1) - 12.7062047362) < 1e-9);
	CHECK(fabs(llm_t975(30) - 2.0422724563) < 1e-9);
	CHECK(fabs(llm_t975(31) - 2.0395134464) < 2e-6);
	CHECK(fabs(llm_t975(40) - 2.0210753903) < 1e-6);
	CHECK(fabs(llm_t975(100) - 1.9839715185) < 1e-7);
	CHECK(fabs(llm_t975(1000) - 1.9623390808) < 1e-9);
	CHECK(isnan(llm_t975(0)));

	/* mean interval */
	{
		double		x[] = {0.2, 0.5, 0.9, 1.0, 0.4};
		double		one[] = {0.7};
		double		same[] = {1, 1, 1};

		CHECK(llm_mean_interval(x, 5, &mean, &lo, &hi));
		CHECK(fabs(mean - 0.6) < 1e-12);
		CHECK(fabs(lo - 0.1789312518004359) < 1e-9 && fabs(hi - 1.0210687481995642) < 1e-9);
		CHECK(llm_mean_interval(one, 1, &mean, &lo, &hi));
		CHECK(mean == 0.7 && isnan(lo) && isnan(hi));
		CHECK(llm_mean_interval(same, 3, &mean, &lo, &hi));
		CHECK(mean == 1 && lo == 1 && hi == 1);
		CHECK(!llm_mean_interval(x, 0, &mean, &lo, &hi));
	}
}
