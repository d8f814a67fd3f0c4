/*
 * bucket.h — token-bucket arithmetic for per-minute rate limits.  Pure code.
 *
 * A bucket holds up to `capacity` units (requests, or tokens) and refills at
 * capacity per minute.  A request is admitted when the bucket holds what it
 * needs; a need larger than the capacity is admitted from a full bucket, so
 * that one oversized request cannot wait forever.
 */
#ifndef LLMEXT_BUCKET_H
#define LLMEXT_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

typedef struct LlmBucket
{
	double		level;
	int64_t		refilled_ms;	/* when level was last brought up to date */
} LlmBucket;

/* Brings the bucket up to now_ms; a new bucket (refilled_ms 0) starts full. */
extern void llm_bucket_refill(LlmBucket *bucket, double capacity, int64_t now_ms);

/*
 * Milliseconds until need units are available (0: available now).  Call
 * after llm_bucket_refill.
 */
extern double llm_bucket_wait_ms(const LlmBucket *bucket, double capacity, double need);

#endif							/* LLMEXT_BUCKET_H */
