/*
 * request.h — the provider-neutral shape of a chat call: messages, parameters,
 * the normalised result and its cost.
 *
 * Pure code: no PostgreSQL headers, so it can be unit-tested and fuzzed
 * outside the server.  Every allocation goes through cJSON_malloc/cJSON_free,
 * which the server routes to palloc (see llmext.c), so nothing leaks when an
 * ERROR unwinds.
 */
#ifndef LLMEXT_REQUEST_H
#define LLMEXT_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

typedef struct LlmUsage
{
	bool		present;		/* the provider reported usage at all */
	int64_t		input_tokens;	/* includes cached and cache write tokens */
	int64_t		cached_input_tokens;	/* read from the provider's prompt cache */
	int64_t		cache_write_tokens; /* written to it (Anthropic's cache creation) */
	int64_t		output_tokens;	/* includes reasoning_tokens */
	int64_t		reasoning_tokens;
} LlmUsage;

typedef struct LlmChatResult
{
	char	   *content;		/* NULL when the model sent no text */
	char	   *finish_reason;
	char	   *remote_model;	/* the model id the provider reported */
	char	   *response_id;	/* the id in the response body */
	char	   *refusal;
	cJSON	   *tool_calls;		/* owned by the result, or NULL */
	LlmUsage	usage;
} LlmChatResult;

/*
 * The answer to an embedding request: one vector per input, in input order
 * (whatever order the provider listed them in), all of one length.
 */
typedef struct LlmEmbedResult
{
	int			n;				/* inputs, and so vectors */
	int			dimensions;		/* each vector's length */
	float	   *vectors;		/* n * dimensions numbers, input i's from i * dimensions */
	char	   *remote_model;	/* the model id the provider reported */
	LlmUsage	usage;			/* input tokens only */
} LlmEmbedResult;

typedef struct LlmPrices
{
	double		input;			/* USD per million tokens */
	double		cached_input;
	double		cache_write;	/* input tokens written to the prompt cache */
	double		output;
} LlmPrices;

/* Option keys that steer llmext itself and are never sent to a provider. */
extern bool llm_is_reserved_option(const char *key);

/*
 * Checks that messages is a non-empty array of {role, content} objects.
 * On failure returns false and writes a sentence into err.
 */
extern bool llm_validate_messages(const cJSON *messages, char *err, size_t errlen);

/* Builds [{"role":"system",...}?, {"role":"user",...}]; system may be NULL. */
extern cJSON *llm_messages_from_prompt(const char *prompt, const char *system);

/*
 * Merges provider parameters: defaults (a model's params) overridden by
 * overrides (a call's options), dropping llmext's reserved keys.  Keys that
 * a caller may not set (model, messages, stream) are refused.
 */
extern cJSON *llm_merge_params(const cJSON *defaults, const cJSON *overrides,
							   char *err, size_t errlen);

/*
 * Cost in USD; cached input tokens are billed at the cached price, tokens
 * written to the cache at the cache write price.
 */
extern double llm_cost_usd(const LlmUsage *usage, const LlmPrices *prices);

extern void llm_chat_result_free(LlmChatResult *result);
extern void llm_embed_result_free(LlmEmbedResult *result);


/* The number of elements of an array. */
#define LLM_LENGTHOF(array) (sizeof(array) / sizeof((array)[0]))

/* Is key one of the n strings of list? */
extern bool llm_str_in_list(const char *key, const char *const *list, size_t n);

/*
 * Is id (a file's, a job's or a batch's, as a provider named it) safe to
 * put in a URL path: 1 to 200 letters, digits, "_", ".", ":" and "-", not
 * starting with a dot (so never "..")?
 */
extern bool llm_is_plain_id(const char *id);

/*
 * A message cut short by a buffer may end inside a UTF-8 sequence: drops
 * the partial character, so the server never reports invalid UTF-8.
 */
extern void llm_trim_partial_utf8(char *err, size_t errlen);

/* cJSON_malloc'd copy of s (NULL stays NULL). */
extern char *llm_strdup(const char *s);

#endif							/* LLMEXT_REQUEST_H */
