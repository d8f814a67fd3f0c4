/*
 * jsonschema.c — validate documents against a JSON Schema of the supported
 * subset (jsonschema.h); jsonschema_check.c checks the schema itself.
 *
 * Pure code (see request.h).
 */
#include "core/jsonschema_internal.h"

#include "core/request.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		return cJSON_IsNumber(value) && llm_schema_is_integral(value->valuedouble);
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
	if (llm_schema_is_integral(d) && d < 1e15 && d > -1e15)
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
		old = llm_path_push_key(&v->path, item->string);
		result = validate(v, item, sub != NULL ? sub : additional);
		llm_path_pop(&v->path, old);
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
			size_t		old = llm_path_push_index(&v->path, index++);
			VResult		result = validate(v, element, items);

			llm_path_pop(&v->path, old);
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
		if (llm_schema_resolve_ref(v->root, ref->valuestring, &target) != 0)
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
	llm_path_init(&v.path);
	result = validate(&v, instance, schema);
	cJSON_free(v.path.data);
	return result == V_OK;
}
