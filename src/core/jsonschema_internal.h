/*
 * jsonschema_internal.h — what the schema checker (jsonschema_check.c) and
 * the validator (jsonschema.c) share: JSON paths for messages, $ref
 * resolution, integers.  Pure code.
 */
#ifndef LLMEXT_JSONSCHEMA_INTERNAL_H
#define LLMEXT_JSONSCHEMA_INTERNAL_H

#include "core/jsonschema.h"

/*
 * A JSON path being walked, "$" then ".key", ["odd key"] and [index]
 * steps.  Every push returns the length to pop back to.
 */
typedef struct Path
{
	char	   *data;
	size_t		len;
	size_t		capacity;
} Path;

/* "$", owned by the path (cJSON_free path->data). */
extern void llm_path_init(Path *path);

/* Steps onto a key or an index: the length to pop back to. */
extern size_t llm_path_push_key(Path *path, const char *key);
extern size_t llm_path_push_index(Path *path, int index);
extern void llm_path_pop(Path *path, size_t len);

/*
 * Finds the definition a $ref names.  Only "#/$defs/name" and
 * "#/definitions/name" are understood (name may use JSON Pointer's ~0 and
 * ~1).  Returns 0 with *target set, 1 for a form we do not support, 2 for
 * a definition that does not exist.
 */
extern int	llm_schema_resolve_ref(const cJSON *root, const char *ref, const cJSON **target);

/* A finite number with no fractional part. */
extern bool llm_schema_is_integral(double d);

#endif							/* LLMEXT_JSONSCHEMA_INTERNAL_H */
