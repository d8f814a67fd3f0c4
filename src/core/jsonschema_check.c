/*
 * jsonschema_check.c — check that a JSON Schema stays within the subset the
 * validator enforces (see jsonschema.h).  Pure code (see request.h).
 */
#include "core/jsonschema_internal.h"

#include "core/request.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[] = {
	"object", "array", "string", "number", "integer", "boolean", "null",
};

static const char *const unsupported_keywords[] = {
	"pattern", "patternProperties", "if", "then", "else", "not",
	"dependentRequired", "dependentSchemas", "prefixItems", "contains",
	"uniqueItems", "multipleOf", "exclusiveMinimum", "exclusiveMaximum",
	"propertyNames", "minProperties", "maxProperties",
	"unevaluatedProperties", "unevaluatedItems",
	/* older drafts' and dynamic forms of the same ideas */
	"dependencies", "additionalItems", "$dynamicRef", "$recursiveRef",
};


/*
 * Checking a schema: the path walks the schema document itself, and the
 * errors read "<what> at <path>".
 */
typedef struct Checker
{
	const cJSON *root;
	Path		path;
	int			depth;
	char	   *err;
	size_t		errlen;
} Checker;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static bool check_error(Checker *c, const char *format,...);

static bool
check_error(Checker *c, const char *format,...)
{
	va_list		args;
	size_t		used;

	if (c->err == NULL || c->errlen == 0)
		return false;
	va_start(args, format);
	vsnprintf(c->err, c->errlen, format, args);
	va_end(args);
	used = strlen(c->err);
	snprintf(c->err + used, c->errlen - used, " at %s", c->path.data);
	llm_trim_partial_utf8(c->err, c->errlen);
	return false;
}

static bool check_schema(Checker *c, const cJSON *schema);

/* Checks schema found under keyword (and key, when not NULL). */
static bool
check_subschema(Checker *c, const char *keyword, const char *key,
				const cJSON *schema)
{
	size_t		old = llm_path_push_key(&c->path, keyword);
	bool		ok;

	if (key != NULL)
		llm_path_push_key(&c->path, key);
	ok = check_schema(c, schema);
	llm_path_pop(&c->path, old);
	return ok;
}

static bool
check_schema_array(Checker *c, const cJSON *keyword)
{
	const cJSON *item;
	int			index = 0;

	if (!cJSON_IsArray(keyword) || keyword->child == NULL)
		return check_error(c, "\"%s\" must be a non-empty array of schemas", keyword->string);
	cJSON_ArrayForEach(item, keyword)
	{
		size_t		old = llm_path_push_key(&c->path, keyword->string);
		bool		ok;

		llm_path_push_index(&c->path, index++);
		ok = check_schema(c, item);
		llm_path_pop(&c->path, old);
		if (!ok)
			return false;
	}
	return true;
}

static bool
check_schema_object(Checker *c, const cJSON *keyword)
{
	const cJSON *item;

	if (!cJSON_IsObject(keyword))
		return check_error(c, "\"%s\" must be an object of schemas", keyword->string);
	cJSON_ArrayForEach(item, keyword)
	{
		if (!check_subschema(c, keyword->string, item->string, item))
			return false;
	}
	return true;
}

static bool
check_type(Checker *c, const cJSON *type)
{
	const cJSON *name;

	if (cJSON_IsString(type))
	{
		if (!llm_str_in_list(type->valuestring, type_names, LLM_LENGTHOF(type_names)))
			return check_error(c, "unknown JSON Schema type \"%.40s\"", type->valuestring);
		return true;
	}
	if (!cJSON_IsArray(type) || type->child == NULL)
		return check_error(c, "\"type\" must be a type name or a non-empty array of type names");
	cJSON_ArrayForEach(name, type)
	{
		if (!cJSON_IsString(name))
			return check_error(c, "\"type\" must be a type name or a non-empty array of type names");
		if (!llm_str_in_list(name->valuestring, type_names, LLM_LENGTHOF(type_names)))
			return check_error(c, "unknown JSON Schema type \"%.40s\"", name->valuestring);
	}
	return true;
}

static bool
check_keyword(Checker *c, const cJSON *keyword)
{
	const char *name = keyword->string;

	if (llm_str_in_list(name, unsupported_keywords, LLM_LENGTHOF(unsupported_keywords)))
		return check_error(c, "unsupported JSON Schema keyword \"%s\"", name);

	if (strcmp(name, "type") == 0)
		return check_type(c, keyword);
	if (strcmp(name, "properties") == 0 || strcmp(name, "$defs") == 0 ||
		strcmp(name, "definitions") == 0)
		return check_schema_object(c, keyword);
	if (strcmp(name, "additionalProperties") == 0)
		return check_subschema(c, name, NULL, keyword);
	if (strcmp(name, "items") == 0)
	{
		if (cJSON_IsArray(keyword))
			return check_error(c, "\"items\" must be a schema (an array of schemas is not supported)");
		return check_subschema(c, name, NULL, keyword);
	}
	if (strcmp(name, "anyOf") == 0 || strcmp(name, "allOf") == 0 ||
		strcmp(name, "oneOf") == 0)
		return check_schema_array(c, keyword);
	if (strcmp(name, "required") == 0)
	{
		const cJSON *item;

		if (!cJSON_IsArray(keyword))
			return check_error(c, "\"required\" must be an array of strings");
		cJSON_ArrayForEach(item, keyword)
		{
			if (!cJSON_IsString(item))
				return check_error(c, "\"required\" must be an array of strings");
		}
		return true;
	}
	if (strcmp(name, "enum") == 0)
	{
		if (!cJSON_IsArray(keyword))
			return check_error(c, "\"enum\" must be an array");
		return true;
	}
	if (strcmp(name, "minItems") == 0 || strcmp(name, "maxItems") == 0 ||
		strcmp(name, "minLength") == 0 || strcmp(name, "maxLength") == 0)
	{
		if (!cJSON_IsNumber(keyword) || keyword->valuedouble < 0 ||
			!llm_schema_is_integral(keyword->valuedouble))
			return check_error(c, "\"%s\" must be a non-negative integer", name);
		return true;
	}
	if (strcmp(name, "minimum") == 0 || strcmp(name, "maximum") == 0)
	{
		if (!cJSON_IsNumber(keyword))
			return check_error(c, "\"%s\" must be a number", name);
		return true;
	}
	if (strcmp(name, "$ref") == 0)
	{
		const cJSON *target;

		if (!cJSON_IsString(keyword))
			return check_error(c, "\"$ref\" must be a string");
		switch (llm_schema_resolve_ref(c->root, keyword->valuestring, &target))
		{
			case 1:
				return check_error(c, "unsupported $ref \"%.60s\" (only \"#/$defs/name\" and \"#/definitions/name\" are supported)",
								   keyword->valuestring);
			case 2:
				return check_error(c, "$ref \"%.60s\" names no definition",
								   keyword->valuestring);
		}
		return true;
	}
	/* const, annotations and unknown keywords constrain nothing we check */
	return true;
}

static bool
check_schema(Checker *c, const cJSON *schema)
{
	const cJSON *keyword;
	bool		ok = true;

	if (cJSON_IsBool(schema))
		return true;
	if (!cJSON_IsObject(schema))
		return check_error(c, "schema must be an object or a boolean");
	if (c->depth >= LLM_JSON_SCHEMA_MAX_DEPTH)
		return check_error(c, "schema nested deeper than %d levels", LLM_JSON_SCHEMA_MAX_DEPTH);
	c->depth++;
	cJSON_ArrayForEach(keyword, schema)
	{
		if (keyword->string != NULL && !check_keyword(c, keyword))
		{
			ok = false;
			break;
		}
	}
	c->depth--;
	return ok;
}

bool
llm_json_schema_check(const cJSON *schema, char *err, size_t errlen)
{
	Checker		c;
	bool		ok;

	memset(&c, 0, sizeof(c));
	c.root = schema;
	c.err = err;
	c.errlen = errlen;
	llm_path_init(&c.path);
	ok = check_schema(&c, schema);
	cJSON_free(c.path.data);
	return ok;
}
