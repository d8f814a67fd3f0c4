/*
 * jsonschema.c — check that a JSON Schema stays within the supported subset,
 * and validate documents against it.
 *
 * Pure code (see request.h).  The subset is described in jsonschema.h.
 */
#include "jsonschema.h"
#include "request.h"

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

#define lengthof(array) (sizeof(array) / sizeof((array)[0]))

static bool
in_list(const char *key, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(key, list[i]) == 0)
			return true;
	return false;
}


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

static void
path_init(Path *path)
{
	path->capacity = 64;
	path->data = cJSON_malloc(path->capacity);
	strcpy(path->data, "$");
	path->len = 1;
}

static void
path_reserve(Path *path, size_t extra)
{
	char	   *data;
	size_t		capacity = path->capacity;

	if (path->len + extra < capacity)
		return;
	while (capacity <= path->len + extra)
		capacity *= 2;
	data = cJSON_malloc(capacity);
	memcpy(data, path->data, path->len + 1);
	cJSON_free(path->data);
	path->data = data;
	path->capacity = capacity;
}

static bool
plain_key(const char *key)
{
	if (key[0] == '\0')
		return false;
	for (const char *p = key; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '$'))
			return false;
	return true;
}

static size_t
path_push_key(Path *path, const char *key)
{
	size_t		old = path->len;
	char	   *o;

	if (key == NULL)
		key = "";
	/* the worst case is every byte written as \u00XX */
	path_reserve(path, 6 * strlen(key) + 5);
	o = path->data + path->len;
	if (plain_key(key))
		o += sprintf(o, ".%s", key);
	else
	{
		*o++ = '[';
		*o++ = '"';
		for (const unsigned char *p = (const unsigned char *) key; *p; p++)
		{
			if (*p == '"' || *p == '\\')
			{
				*o++ = '\\';
				*o++ = *p;
			}
			else if (*p < 0x20)
				o += sprintf(o, "\\u%04x", *p);
			else
				*o++ = *p;
		}
		*o++ = '"';
		*o++ = ']';
		*o = '\0';
	}
	path->len = o - path->data;
	return old;
}

static size_t
path_push_index(Path *path, int index)
{
	size_t		old = path->len;

	path_reserve(path, 16);
	path->len += sprintf(path->data + path->len, "[%d]", index);
	return old;
}

static void
path_pop(Path *path, size_t len)
{
	path->len = len;
	path->data[len] = '\0';
}

/*
 * Finds the definition a $ref names.  Only "#/$defs/name" and
 * "#/definitions/name" are understood (name may use JSON Pointer's ~0 and
 * ~1).  Returns 0 with *target set, 1 for a form we do not support, 2 for
 * a definition that does not exist.
 */
static int
resolve_ref(const cJSON *root, const char *ref, const cJSON **target)
{
	static const char defs_prefix[] = "#/$defs/";
	static const char definitions_prefix[] = "#/definitions/";
	const cJSON *defs;
	const char *name;
	char	   *decoded;
	char	   *o;
	int			result = 0;

	if (strncmp(ref, defs_prefix, sizeof(defs_prefix) - 1) == 0)
	{
		defs = cJSON_GetObjectItemCaseSensitive(root, "$defs");
		name = ref + sizeof(defs_prefix) - 1;
	}
	else if (strncmp(ref, definitions_prefix, sizeof(definitions_prefix) - 1) == 0)
	{
		defs = cJSON_GetObjectItemCaseSensitive(root, "definitions");
		name = ref + sizeof(definitions_prefix) - 1;
	}
	else
		return 1;
	if (name[0] == '\0')
		return 1;

	decoded = cJSON_malloc(strlen(name) + 1);
	o = decoded;
	for (const char *p = name; *p && result == 0; p++)
	{
		if (*p == '/')
			result = 1;			/* a pointer deeper than one definition */
		else if (*p == '~' && (p[1] == '0' || p[1] == '1'))
			*o++ = *++p == '0' ? '~' : '/';
		else if (*p == '~')
			result = 1;
		else
			*o++ = *p;
	}
	*o = '\0';
	if (result == 0)
	{
		*target = cJSON_IsObject(defs)
			? cJSON_GetObjectItemCaseSensitive(defs, decoded) : NULL;
		if (*target == NULL)
			result = 2;
	}
	cJSON_free(decoded);
	return result;
}

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
	size_t		old = path_push_key(&c->path, keyword);
	bool		ok;

	if (key != NULL)
		path_push_key(&c->path, key);
	ok = check_schema(c, schema);
	path_pop(&c->path, old);
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
		size_t		old = path_push_key(&c->path, keyword->string);
		bool		ok;

		path_push_index(&c->path, index++);
		ok = check_schema(c, item);
		path_pop(&c->path, old);
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
is_integral(double d)
{
	if (d != d || d - d != 0)
		return false;			/* NaN or infinite */
	if (d >= 9007199254740992.0 || d <= -9007199254740992.0)
		return true;			/* too large to hold a fraction */
	return d == (double) (int64_t) d;
}

static bool
check_type(Checker *c, const cJSON *type)
{
	const cJSON *name;

	if (cJSON_IsString(type))
	{
		if (!in_list(type->valuestring, type_names, lengthof(type_names)))
			return check_error(c, "unknown JSON Schema type \"%.40s\"", type->valuestring);
		return true;
	}
	if (!cJSON_IsArray(type) || type->child == NULL)
		return check_error(c, "\"type\" must be a type name or a non-empty array of type names");
	cJSON_ArrayForEach(name, type)
	{
		if (!cJSON_IsString(name))
			return check_error(c, "\"type\" must be a type name or a non-empty array of type names");
		if (!in_list(name->valuestring, type_names, lengthof(type_names)))
			return check_error(c, "unknown JSON Schema type \"%.40s\"", name->valuestring);
	}
	return true;
}

static bool
check_keyword(Checker *c, const cJSON *keyword)
{
	const char *name = keyword->string;

	if (in_list(name, unsupported_keywords, lengthof(unsupported_keywords)))
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
			!is_integral(keyword->valuedouble))
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
		switch (resolve_ref(c->root, keyword->valuestring, &target))
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
	path_init(&c.path);
	ok = check_schema(&c, schema);
	cJSON_free(c.path.data);
	return ok;
}

/*
 * Validating: the path walks the instance, and the errors read
 * "<path>: <what>".  A failure can be overturned by anyOf or oneOf; an
 * abort (too deep, too much work) cannot.
 */
typedef enum VResult
{
	V_OK,
	V_FAIL,
	V_ABORT,
} VResult;

/* Longer paths lose their middle in error messages. */
#define PATH_HEAD 40
#define PATH_TAIL 80

typedef struct Validator
{
	const cJSON *root;
	Path		path;
	int			depth;
	int			ref_depth;
	size_t		max_steps;
	size_t		steps_left;
	char	   *err;
	size_t		errlen;
} Validator;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static VResult report(Validator *v, VResult result, const char *format,...);

/*
 * Writes path into err, eliding the middle of a very long one, so that the
 * sentence after it survives a short err buffer.
 */
static void
write_path(const Path *path, char *err, size_t errlen)
{
	size_t		head = PATH_HEAD;
	size_t		tail = path->len - PATH_TAIL;

	if (path->len <= PATH_HEAD + PATH_TAIL + 3)
	{
		snprintf(err, errlen, "%s", path->data);
		return;
	}
	/* cut between steps where we can, else between characters */
	while (head > 1 && path->data[head] != '.' && path->data[head] != '[')
		head--;
	if (head == 1)
		for (head = PATH_HEAD; ((unsigned char) path->data[head] & 0xC0) == 0x80; head--)
			;
	while (tail < path->len && path->data[tail] != '.' && path->data[tail] != '[')
		tail++;
	if (tail == path->len)
		for (tail = path->len - PATH_TAIL; ((unsigned char) path->data[tail] & 0xC0) == 0x80; tail++)
			;
	else if (path->data[tail] == '.')
		tail++;
	snprintf(err, errlen, "%.*s...%s", (int) head, path->data, path->data + tail);
}

static VResult
report(Validator *v, VResult result, const char *format,...)
{
	va_list		args;
	size_t		used;

	if (v->err == NULL || v->errlen == 0)
		return result;
	write_path(&v->path, v->err, v->errlen);
	used = strlen(v->err);
	snprintf(v->err + used, v->errlen - used, ": ");
	used = strlen(v->err);
	va_start(args, format);
	vsnprintf(v->err + used, v->errlen - used, format, args);
	va_end(args);
	llm_trim_partial_utf8(v->err, v->errlen);
	return result;
}

static const char *
type_of(const cJSON *value)
{
	if (cJSON_IsObject(value))
		return "object";
	if (cJSON_IsArray(value))
		return "array";
	if (cJSON_IsString(value))
		return "string";
	if (cJSON_IsNumber(value))
		return "number";
	if (cJSON_IsBool(value))
		return "boolean";
	if (cJSON_IsNull(value))
		return "null";
	return "an unknown kind of value";
}

static bool
has_type(const cJSON *value, const char *type)
{
	if (strcmp(type, "integer") == 0)
		return cJSON_IsNumber(value) && is_integral(value->valuedouble);
	return strcmp(type, type_of(value)) == 0;
}

static VResult
validate_type(Validator *v, const cJSON *instance, const cJSON *type)
{
	char		expected[200];
	size_t		used = 0;
	int			count;
	int			index = 0;
	const cJSON *name;

	if (cJSON_IsString(type))
	{
		if (has_type(instance, type->valuestring))
			return V_OK;
		return report(v, V_FAIL, "expected %s, got %s",
					  type->valuestring, type_of(instance));
	}
	cJSON_ArrayForEach(name, type)
	{
		if (cJSON_IsString(name) && has_type(instance, name->valuestring))
			return V_OK;
	}
	/* "expected string, number or null" */
	count = cJSON_GetArraySize(type);
	expected[0] = '\0';
	cJSON_ArrayForEach(name, type)
	{
		const char *sep = index == 0 ? "" : index == count - 1 ? " or " : ", ";

		if (cJSON_IsString(name) && used < sizeof(expected))
		{
			snprintf(expected + used, sizeof(expected) - used, "%s%s", sep,
					 name->valuestring);
			used += strlen(expected + used);
		}
		index++;
	}
	return report(v, V_FAIL, "expected %s, got %s", expected, type_of(instance));
}

/* Numbers in messages: integers without exponent, others in full. */
static const char *
format_number(char *buf, size_t size, double d)
{
	if (is_integral(d) && d < 1e15 && d > -1e15)
		snprintf(buf, size, "%.0f", d);
	else
	{
		snprintf(buf, size, "%.15g", d);
		if (strtod(buf, NULL) != d)
			snprintf(buf, size, "%.17g", d);
	}
	return buf;
}

static size_t
utf8_length(const char *s)
{
	size_t		count = 0;

	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
		if ((*p & 0xC0) != 0x80)
			count++;
	return count;
}

static VResult validate(Validator *v, const cJSON *instance, const cJSON *schema);

static VResult
validate_object(Validator *v, const cJSON *instance, const cJSON *schema)
{
	const cJSON *required = cJSON_GetObjectItemCaseSensitive(schema, "required");
	const cJSON *properties = cJSON_GetObjectItemCaseSensitive(schema, "properties");
	const cJSON *additional = cJSON_GetObjectItemCaseSensitive(schema, "additionalProperties");
	const cJSON *item;

	cJSON_ArrayForEach(item, required)
	{
		if (cJSON_IsString(item) &&
			cJSON_GetObjectItemCaseSensitive(instance, item->valuestring) == NULL)
			return report(v, V_FAIL, "missing required property \"%s\"", item->valuestring);
	}
	cJSON_ArrayForEach(item, instance)
	{
		const cJSON *sub = NULL;
		size_t		old;
		VResult		result;

		if (item->string == NULL)
			continue;
		if (cJSON_IsObject(properties))
			sub = cJSON_GetObjectItemCaseSensitive(properties, item->string);
		if (sub == NULL && additional == NULL)
			continue;
		if (sub == NULL && cJSON_IsFalse(additional))
			return report(v, V_FAIL, "additional property \"%s\" is not allowed", item->string);
		old = path_push_key(&v->path, item->string);
		result = validate(v, item, sub != NULL ? sub : additional);
		path_pop(&v->path, old);
		if (result != V_OK)
			return result;
	}
	return V_OK;
}

static VResult
validate_array(Validator *v, const cJSON *instance, const cJSON *schema)
{
	const cJSON *min_items = cJSON_GetObjectItemCaseSensitive(schema, "minItems");
	const cJSON *max_items = cJSON_GetObjectItemCaseSensitive(schema, "maxItems");
	const cJSON *items = cJSON_GetObjectItemCaseSensitive(schema, "items");
	int			count = cJSON_GetArraySize(instance);
	char		bound[64];

	if (cJSON_IsNumber(min_items) && count < min_items->valuedouble)
		return report(v, V_FAIL, "expected at least %s item%s, got %d",
					  format_number(bound, sizeof(bound), min_items->valuedouble),
					  min_items->valuedouble == 1 ? "" : "s", count);
	if (cJSON_IsNumber(max_items) && count > max_items->valuedouble)
		return report(v, V_FAIL, "expected at most %s item%s, got %d",
					  format_number(bound, sizeof(bound), max_items->valuedouble),
					  max_items->valuedouble == 1 ? "" : "s", count);
	if (items != NULL && !cJSON_IsArray(items))
	{
		const cJSON *element;
		int			index = 0;

		cJSON_ArrayForEach(element, instance)
		{
			size_t		old = path_push_index(&v->path, index++);
			VResult		result = validate(v, element, items);

			path_pop(&v->path, old);
			if (result != V_OK)
				return result;
		}
	}
	return V_OK;
}

static VResult
validate_string(Validator *v, const cJSON *instance, const cJSON *schema)
{
	const cJSON *min_length = cJSON_GetObjectItemCaseSensitive(schema, "minLength");
	const cJSON *max_length = cJSON_GetObjectItemCaseSensitive(schema, "maxLength");
	size_t		length;
	char		bound[64];

	if (!cJSON_IsNumber(min_length) && !cJSON_IsNumber(max_length))
		return V_OK;
	length = instance->valuestring ? utf8_length(instance->valuestring) : 0;
	if (cJSON_IsNumber(min_length) && (double) length < min_length->valuedouble)
		return report(v, V_FAIL, "expected a string of at least %s character%s, got %zu",
					  format_number(bound, sizeof(bound), min_length->valuedouble),
					  min_length->valuedouble == 1 ? "" : "s", length);
	if (cJSON_IsNumber(max_length) && (double) length > max_length->valuedouble)
		return report(v, V_FAIL, "expected a string of at most %s character%s, got %zu",
					  format_number(bound, sizeof(bound), max_length->valuedouble),
					  max_length->valuedouble == 1 ? "" : "s", length);
	return V_OK;
}

static VResult
validate_number(Validator *v, const cJSON *instance, const cJSON *schema)
{
	const cJSON *minimum = cJSON_GetObjectItemCaseSensitive(schema, "minimum");
	const cJSON *maximum = cJSON_GetObjectItemCaseSensitive(schema, "maximum");
	char		bound[64];
	char		value[64];

	if (cJSON_IsNumber(minimum) && instance->valuedouble < minimum->valuedouble)
		return report(v, V_FAIL, "expected a number >= %s, got %s",
					  format_number(bound, sizeof(bound), minimum->valuedouble),
					  format_number(value, sizeof(value), instance->valuedouble));
	if (cJSON_IsNumber(maximum) && instance->valuedouble > maximum->valuedouble)
		return report(v, V_FAIL, "expected a number <= %s, got %s",
					  format_number(bound, sizeof(bound), maximum->valuedouble),
					  format_number(value, sizeof(value), instance->valuedouble));
	return V_OK;
}

static VResult
validate_combinators(Validator *v, const cJSON *instance, const cJSON *schema)
{
	const cJSON *all_of = cJSON_GetObjectItemCaseSensitive(schema, "allOf");
	const cJSON *any_of = cJSON_GetObjectItemCaseSensitive(schema, "anyOf");
	const cJSON *one_of = cJSON_GetObjectItemCaseSensitive(schema, "oneOf");
	const cJSON *sub;
	VResult		result;

	/* allOf: the first failing schema's own error says most */
	cJSON_ArrayForEach(sub, all_of)
	{
		if ((result = validate(v, instance, sub)) != V_OK)
			return result;
	}

	if (cJSON_IsArray(any_of))
	{
		bool		matched = false;

		cJSON_ArrayForEach(sub, any_of)
		{
			result = validate(v, instance, sub);
			if (result == V_ABORT)
				return result;
			if (result == V_OK)
			{
				matched = true;
				break;
			}
		}
		if (!matched)
			return report(v, V_FAIL, "value matches none of the anyOf schemas");
	}

	if (cJSON_IsArray(one_of))
	{
		int			first = -1;
		int			index = 0;

		cJSON_ArrayForEach(sub, one_of)
		{
			result = validate(v, instance, sub);
			if (result == V_ABORT)
				return result;
			if (result == V_OK)
			{
				if (first >= 0)
					return report(v, V_FAIL,
								  "value matches more than one oneOf schema (oneOf[%d] and oneOf[%d])",
								  first, index);
				first = index;
			}
			index++;
		}
		if (first < 0)
			return report(v, V_FAIL, "value matches none of the oneOf schemas");
	}
	return V_OK;
}

static VResult
validate_keywords(Validator *v, const cJSON *instance, const cJSON *schema)
{
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(schema, "type");
	const cJSON *constant = cJSON_GetObjectItemCaseSensitive(schema, "const");
	const cJSON *enumeration = cJSON_GetObjectItemCaseSensitive(schema, "enum");
	const cJSON *ref = cJSON_GetObjectItemCaseSensitive(schema, "$ref");
	VResult		result = V_OK;

	if (type != NULL && (result = validate_type(v, instance, type)) != V_OK)
		return result;
	if (constant != NULL && !cJSON_Compare(instance, constant, true))
		return report(v, V_FAIL, "value does not equal the const value");
	if (enumeration != NULL)
	{
		const cJSON *option;
		bool		found = false;

		cJSON_ArrayForEach(option, enumeration)
		{
			if (cJSON_Compare(instance, option, true))
			{
				found = true;
				break;
			}
		}
		if (!found)
			return report(v, V_FAIL, "value is not one of the enum values");
	}

	if (cJSON_IsObject(instance))
		result = validate_object(v, instance, schema);
	else if (cJSON_IsArray(instance))
		result = validate_array(v, instance, schema);
	else if (cJSON_IsString(instance))
		result = validate_string(v, instance, schema);
	else if (cJSON_IsNumber(instance))
		result = validate_number(v, instance, schema);
	if (result != V_OK)
		return result;

	if ((result = validate_combinators(v, instance, schema)) != V_OK)
		return result;

	if (cJSON_IsString(ref))
	{
		const cJSON *target;

		if (v->ref_depth >= LLM_JSON_SCHEMA_MAX_REF_DEPTH)
			return report(v, V_ABORT, "$ref nesting deeper than %d levels",
						  LLM_JSON_SCHEMA_MAX_REF_DEPTH);
		if (resolve_ref(v->root, ref->valuestring, &target) != 0)
			return report(v, V_ABORT, "cannot resolve $ref \"%.60s\"", ref->valuestring);
		v->ref_depth++;
		result = validate(v, instance, target);
		v->ref_depth--;
	}
	return result;
}

static VResult
validate(Validator *v, const cJSON *instance, const cJSON *schema)
{
	VResult		result;

	if (v->steps_left == 0)
		return report(v, V_ABORT, "schema too complex to validate (more than %zu steps)",
					  v->max_steps);
	v->steps_left--;
	if (cJSON_IsBool(schema))
		return cJSON_IsTrue(schema) ? V_OK
			: report(v, V_FAIL, "no value is allowed here");
	if (!cJSON_IsObject(schema))
		return V_OK;			/* llm_json_schema_check refused it already */
	if (v->depth >= LLM_JSON_SCHEMA_MAX_DEPTH)
		return report(v, V_ABORT, "nested deeper than %d levels", LLM_JSON_SCHEMA_MAX_DEPTH);
	v->depth++;
	result = validate_keywords(v, instance, schema);
	v->depth--;
	return result;
}

/*
 * How many values the document holds, itself included, down to the depth
 * that validation could reach.
 */
static size_t
count_values(const cJSON *value, int depth)
{
	size_t		count = 1;
	const cJSON *child;

	if (depth < LLM_JSON_SCHEMA_MAX_DEPTH)
		for (child = value->child; child != NULL; child = child->next)
			count += count_values(child, depth + 1);
	return count;
}

bool
llm_json_validate(const cJSON *instance, const cJSON *schema,
				  char *err, size_t errlen)
{
	Validator	v;
	VResult		result;

	if (!llm_json_schema_check(schema, err, errlen))
		return false;
	if (instance == NULL)
	{
		snprintf(err, errlen, "$: no value to validate");
		return false;
	}
	memset(&v, 0, sizeof(v));
	v.root = schema;
	v.max_steps = LLM_JSON_SCHEMA_BASE_STEPS +
		LLM_JSON_SCHEMA_STEPS_PER_VALUE * count_values(instance, 0);
	v.steps_left = v.max_steps;
	v.err = err;
	v.errlen = errlen;
	path_init(&v.path);
	result = validate(&v, instance, schema);
	cJSON_free(v.path.data);
	return result == V_OK;
}
