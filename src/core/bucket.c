/*
 * bucket.c — token buckets (see bucket.h).
 */
#include "core/bucket.h"

void
llm_bucket_refill(LlmBucket *bucket, double capacity, int64_t now_ms)
{
	if (bucket->refilled_ms == 0)
		bucket->level = capacity;
	else if (now_ms > bucket->refilled_ms)
	{
		bucket->level += (double) (now_ms - bucket->refilled_ms) * capacity / 60000.0;
		if (bucket->level > capacity)
			bucket->level = capacity;
	}
	bucket->refilled_ms = now_ms;
}

double
llm_bucket_wait_ms(const LlmBucket *bucket, double capacity, double need)
{
	if (need > capacity)
		need = capacity;
	if (bucket->level >= need)
		return 0;
	return (need - bucket->level) * 60000.0 / capacity;
}
