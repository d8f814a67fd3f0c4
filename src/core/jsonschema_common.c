/*
 * jsonschema_common.c — JSON paths and $ref resolution for the schema
 * checker and the validator (see jsonschema_internal.h).  Pure code.
 */
#include "core/jsonschema_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
llm_path_init(Path *path)
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

size_t
llm_path_push_key(Path *path, const char *key)
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

size_t
llm_path_push_index(Path *path, int index)
{
	size_t		old = path->len;

	path_reserve(path, 16);
	path->len += sprintf(path->data + path->len, "[%d]", index);
	return old;
}

void
llm_path_pop(Path *path, size_t len)
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
int
llm_schema_resolve_ref(const cJSON *root, const char *ref, const cJSON **target)
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

bool
llm_schema_is_integral(double d)
{
	if (d != d || d - d != 0)
		return false;			/* NaN or infinite */
	if (d >= 9007199254740992.0 || d <= -9007199254740992.0)
		return true;			/* too large to hold a fraction */
	return d == (double) (int64_t) d;
}
