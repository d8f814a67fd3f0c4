/*
 * json_checks.h — checks on JSON that comes in (nesting, numbers) or goes
 * out (NUL characters).
 *
 * Pure code (no PostgreSQL headers), unit-tested in test/unit.  Strings
 * are allocated with cJSON_malloc, which the server routes to palloc.
 */
#ifndef LLMEXT_JSON_CHECKS_H
#define LLMEXT_JSON_CHECKS_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

/* The deepest JSON llmext reads: cJSON's own limit. */
#define LLM_JSON_MAX_DEPTH CJSON_NESTING_LIMIT

/* The deepest nesting of arrays and objects in a JSON text (strings skipped). */
extern int	llm_json_text_depth(const char *text);

/* The first number of json that is not finite (it overflowed a double), or NULL. */
extern const cJSON *llm_json_find_nonfinite(const cJSON *json);

/*
 * Does the JSON text hold a \u0000 escape in a string?  (A literal NUL byte
 * is not valid UTF-8 for PostgreSQL; an escape would silently end the
 * string that cJSON decodes.)
 */
extern bool llm_json_has_nul_escape(const char *text, size_t len);

/*
 * Checks the parameters that are sent to a provider: every number finite,
 * and the whole-number parameters (seed, max_tokens, max_completion_tokens,
 * n, top_logprobs) whole numbers within range, or null.  On failure writes
 * a sentence into err.
 */
extern bool llm_check_param_numbers(const cJSON *params, char *err, size_t errlen);

#endif							/* LLMEXT_JSON_CHECKS_H */
