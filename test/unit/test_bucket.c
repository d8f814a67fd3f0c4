/* Unit tests of bucket.c: per-minute token buckets. */
#include "unit.h"

#include <math.h>

#include "core/bucket.h"

void
test_bucket(void)
{
	LlmBucket	b = {0, 0};

	/* a new bucket starts full */
	llm_bucket_refill(&b, 60, 1000);
	CHECK(b.level == 60);
	CHECK(llm_bucket_wait_ms(&b, 60, 1) == 0);
	/* spent: one unit comes back every second at 60 per minute */
	b.level = 0;
	CHECK(fabs(llm_bucket_wait_ms(&b, 60, 1) - 1000) < 1e-9);
	llm_bucket_refill(&b, 60, 1500);
	CHECK(fabs(b.level - 0.5) < 1e-9);
	CHECK(fabs(llm_bucket_wait_ms(&b, 60, 1) - 500) < 1e-9);
	/* never above capacity */
	llm_bucket_refill(&b, 60, 10000000);
	CHECK(b.level == 60);
	/* a need above capacity is admitted from a full bucket */
	CHECK(llm_bucket_wait_ms(&b, 60, 1000) == 0);
	b.level = 59;
	CHECK(llm_bucket_wait_ms(&b, 60, 1000) > 0);
	/* a debt (more used than estimated) is paid back before the next request */
	b.level = -30;
	CHECK(fabs(llm_bucket_wait_ms(&b, 60, 1) - 31000) < 1e-9);
	/* the clock going backwards changes nothing */
	b.level = 10;
	b.refilled_ms = 5000;
	llm_bucket_refill(&b, 60, 4000);
	CHECK(b.level == 10);
}
