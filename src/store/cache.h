/*
 * cache.h — the response cache: policy, keys, look-up and storing.
 */
#ifndef LLMEXT_CACHE_H
#define LLMEXT_CACHE_H

#include "postgres.h"

#include "core/request.h"
#include "utils/guc.h"

typedef enum LlmCacheMode
{
	LLM_CACHE_OFF,
	LLM_CACHE_ON,
	LLM_CACHE_READ_ONLY
} LlmCacheMode;

/* GUCs (see llmext.c) */
extern int	llm_cache_mode;
extern int	llm_cache_ttl_s;
extern const struct config_enum_entry llm_cache_mode_options[];

typedef struct LlmCachePolicy
{
	bool		read;			/* look for a cached answer */
	bool		write;			/* store a fresh answer */
	int			ttl_s;			/* 0: never expires */
} LlmCachePolicy;

/*
 * What a call may do with the cache: llmext.cache and llmext.cache_ttl,
 * overridden by the options "cache" and "cache_ttl".  Only deterministic
 * requests (temperature 0, or a seed) use the cache.
 */
extern void llm_cache_policy(const cJSON *options, const cJSON *params, LlmCachePolicy *policy);
/* The same for a request whose answer is known to be determined (embeddings). */
extern void llm_cache_policy_for(const cJSON *options, bool deterministic,
								 LlmCachePolicy *policy);

/* Hex SHA-256 of text. */
extern char *llm_sha256_hex(const char *text);

/* The cached normalised result for key, or NULL (missing or expired). */
extern cJSON *llm_cache_get(const char *key);

/* Queues result (the normalised result JSON) for storing under key. */
extern void llm_cache_put(const char *key, const char *model, const char *provider,
						  const char *remote_model, const cJSON *result, double cost_usd,
						  int ttl_s);

#endif							/* LLMEXT_CACHE_H */
