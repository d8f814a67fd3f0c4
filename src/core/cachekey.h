/*
 * cachekey.h — the canonical text of a request, whose SHA-256 is its cache
 * key and ledger fingerprint.  Pure code (see request.h).
 */
#ifndef LLMEXT_CACHEKEY_H
#define LLMEXT_CACHEKEY_H

#include "core/request.h"

/*
 * JSON text with object keys sorted (byte order) at every depth and no
 * white space, so that key order and spacing never change a key.
 */
extern char *llm_canonical_json(const cJSON *item);

/*
 * The canonical request: provider, remote model, messages and the
 * parameters that change the answer (those that only label or route a
 * request, such as user or metadata, are left out).
 */
extern char *llm_canonical_request(const char *provider, const char *remote_model,
								   const cJSON *messages, const cJSON *params);

/*
 * Is the answer determined by the request?  By default only such requests
 * are cached: temperature 0, or a seed.
 */
extern bool llm_request_is_deterministic(const cJSON *params);

#endif							/* LLMEXT_CACHEKEY_H */
