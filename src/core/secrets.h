/*
 * secrets.h — keeping a provider's key out of what llmext shows and stores,
 * and the superuser's limits on where keys come from and where they go:
 * redaction, excerpts, llmext.key_env_allowed and llmext.allowed_hosts
 * patterns, the host of a base URL; plus the checks on JSON that comes in
 * (nesting, numbers) or goes out (NUL characters).
 *
 * Pure code (no PostgreSQL headers), unit-tested in test/unit.  Strings
 * are allocated with cJSON_malloc, which the server routes to palloc.
 */
#ifndef LLMEXT_SECRETS_H
#define LLMEXT_SECRETS_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "core/request.h"

/*
 * A text cut short may end with the first bytes of the key: from this many
 * on, they are masked too (fewer say too little, and would mask ordinary
 * words that happen to start a key).
 */
#define LLM_REDACT_MIN_PREFIX 4

/* The deepest JSON llmext reads: cJSON's own limit. */
#define LLM_JSON_MAX_DEPTH CJSON_NESTING_LIMIT

/*
 * Redacts secret from text[0..len), then keeps at most max_bytes bytes of
 * the result (SIZE_MAX: all of it) and adds "..." when it cut.  A mask is
 * never cut, and a trailing prefix of the secret of LLM_REDACT_MIN_PREFIX
 * bytes or more is masked as well: the provider, a buffer or this cut may
 * have ended the text inside the key.  With printable, every byte outside
 * printable ASCII becomes a space (excerpts of bodies of unknown encoding);
 * otherwise a cut never splits a UTF-8 character.  NULL stays NULL.
 */
extern char *llm_redact_cut(const char *text, size_t len, const char *secret,
							size_t max_bytes, bool printable);

/*
 * Redacts secret from every string of a normalised chat result: the
 * answer, refusal and tool calls (whole-text redaction: they are the
 * caller's data) and the ids and names the provider chose (with
 * llm_redact_cut's trailing-prefix rule).
 */
extern void llm_chat_result_redact(LlmChatResult *result, const char *secret);

/* Redacts secret from every string (keys included) of a JSON tree, in place. */
extern void llm_json_redact(cJSON *json, const char *secret);

/*
 * Does name match one of the comma-separated patterns of list?  Blanks
 * around a pattern are ignored; "*" in a pattern matches any run of
 * characters (none included); everything else matches itself, ignoring
 * case when ignore_case.  An empty list matches nothing.
 */
extern bool llm_pattern_list_match(const char *list, const char *name, bool ignore_case);

/*
 * Reads the host (lower case, without a trailing dot or the brackets of an
 * IPv6 address) and port (explicit, or 80 for http and 443 for https) of an
 * http:// or https:// URL.  Refuses (false) credentials, an empty host, a
 * port out of range and any character a host name cannot hold, so that
 * the host read here is the one libcurl would connect to.
 */
extern bool llm_url_host(const char *url, char *host, size_t hostlen, int *port);

/*
 * Does llmext.allowed_hosts (list) allow url?  Patterns are host patterns
 * as for llm_pattern_list_match (case ignored), each optionally followed by
 * ":port" (digits or "*"); without a port any port matches.  An IPv6
 * address is written in brackets: "[::1]:8080".  A pattern "*" alone allows
 * every URL, even one llm_url_host cannot read.
 */
extern bool llm_host_allowed(const char *list, const char *url);

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

#endif							/* LLMEXT_SECRETS_H */
