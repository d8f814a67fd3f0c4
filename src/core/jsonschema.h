/*
 * jsonschema.h — a validator for the subset of JSON Schema that structured
 * model output uses.
 *
 * Pure code, like request.h: no PostgreSQL headers, and every allocation
 * goes through cJSON_malloc/cJSON_free.
 *
 * Supported keywords:
 *	type (a name or an array of names: object, array, string, number,
 *	integer, boolean, null; an integer is a number with no fractional part),
 *	properties, required, additionalProperties (a boolean or a schema), enum,
 *	const, items (one schema for every element), minItems, maxItems,
 *	minLength, maxLength (counted in Unicode code points), minimum, maximum,
 *	anyOf, allOf, oneOf, $defs, definitions, and $ref to "#/$defs/name" or
 *	"#/definitions/name" (resolved against the root schema; keywords beside
 *	a $ref apply too, as in draft 2020-12).
 *
 * Keywords that only annotate (title, description, $schema, $id, default,
 * examples, format, strict...) and unknown keywords are ignored.  Keywords
 * that would constrain the value but are not implemented are refused by
 * llm_json_schema_check, so that nobody believes they are enforced:
 *	pattern, patternProperties, if, then, else, not, dependentRequired,
 *	dependentSchemas, prefixItems, contains, uniqueItems, multipleOf,
 *	exclusiveMinimum, exclusiveMaximum, propertyNames, minProperties,
 *	maxProperties, unevaluatedProperties, unevaluatedItems, and the older
 *	drafts' dependencies and additionalItems, and $dynamicRef/$recursiveRef.
 *
 * Keywords apply only to values of their type, as in JSON Schema: minLength
 * says nothing about a number, required nothing about an array.
 */
#ifndef LLMEXT_JSONSCHEMA_H
#define LLMEXT_JSONSCHEMA_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

/* Nested $ref resolutions allowed on one path, against ref cycles. */
#define LLM_JSON_SCHEMA_MAX_REF_DEPTH 64

/* Schema nesting plus document nesting, to bound the C stack. */
#define LLM_JSON_SCHEMA_MAX_DEPTH 1000

/*
 * Schema applications allowed in one validation: this many, plus
 * LLM_JSON_SCHEMA_STEPS_PER_VALUE for each value in the document, against
 * anyOf/oneOf over recursive $refs that would take exponential time.
 */
#define LLM_JSON_SCHEMA_BASE_STEPS 100000
#define LLM_JSON_SCHEMA_STEPS_PER_VALUE 64

/*
 * Is schema one this validator can enforce in full?  On failure returns
 * false with a sentence naming the place in the schema as a JSON path, as
 * in: unsupported JSON Schema keyword "pattern" at $.properties.x
 */
extern bool llm_json_schema_check(const cJSON *schema, char *err, size_t errlen);

/*
 * Does instance conform to schema?  The schema is checked first, so an
 * unsupported schema fails with llm_json_schema_check's sentence.  Otherwise
 * a failure names the first offending place in instance as a JSON path:
 *	$.items[2].name: expected string, got number
 *	$: missing required property "label"
 * Property names that are not plain words are written as ["odd name"].
 */
extern bool llm_json_validate(const cJSON *instance, const cJSON *schema,
							  char *err, size_t errlen);

#endif							/* LLMEXT_JSONSCHEMA_H */
