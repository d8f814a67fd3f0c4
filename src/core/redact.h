/*
 * redact.h — keeping a provider's key out of what llmext shows and stores.
 *
 * Pure code (no PostgreSQL headers), unit-tested in test/unit.  Strings
 * are allocated with cJSON_malloc, which the server routes to palloc.
 */
#ifndef LLMEXT_REDACT_H
#define LLMEXT_REDACT_H

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

/*
 * Replaces every occurrence of secret in text by "[redacted]".  Returns a
 * new cJSON_malloc'd string (or NULL when text is NULL).
 */
extern char *llm_redact(const char *text, const char *secret);

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

#endif							/* LLMEXT_REDACT_H */
