/* Unit tests of jsonschema.c: which schemas are accepted, and validation. */
#include "unit.h"

#include <stdlib.h>
#include <time.h>

#include "core/jsonschema.h"

/* "ok", or the error llm_json_schema_check gives for schema_json. */
static const char *
check(const char *schema_json)
{
	static char err[512];
	cJSON	   *schema = cJSON_Parse(schema_json);
	bool		ok;

	if (schema == NULL)
		return "BAD TEST: schema is not JSON";
	strcpy(err, "(no message)");
	ok = llm_json_schema_check(schema, err, sizeof(err));
	cJSON_Delete(schema);
	return ok ? "ok" : err;
}

/* "ok", or the error llm_json_validate gives. */
static const char *
validate(const char *instance_json, const char *schema_json)
{
	static char err[512];
	cJSON	   *instance = cJSON_Parse(instance_json);
	cJSON	   *schema = cJSON_Parse(schema_json);
	bool		ok;

	if (instance == NULL || schema == NULL)
	{
		cJSON_Delete(instance);
		cJSON_Delete(schema);
		return "BAD TEST: not JSON";
	}
	strcpy(err, "(no message)");
	ok = llm_json_validate(instance, schema, err, sizeof(err));
	cJSON_Delete(instance);
	cJSON_Delete(schema);
	return ok ? "ok" : err;
}

static const char *const rejected[] = {
	"pattern", "patternProperties", "if", "then", "else", "not",
	"dependentRequired", "dependentSchemas", "prefixItems", "contains",
	"uniqueItems", "multipleOf", "exclusiveMinimum", "exclusiveMaximum",
	"propertyNames", "minProperties", "maxProperties",
	"unevaluatedProperties", "unevaluatedItems",
	"dependencies", "additionalItems", "$dynamicRef", "$recursiveRef",
};

static void
test_check_accepts(void)
{
	CHECK_STR(check("{}"), "ok");
	CHECK_STR(check("true"), "ok");
	CHECK_STR(check("false"), "ok");
	/* what structured outputs send, annotations and all */
	CHECK_STR(check("{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\","
					"\"$id\":\"x\",\"title\":\"T\",\"description\":\"D\",\"strict\":true,"
					"\"type\":\"object\",\"additionalProperties\":false,"
					"\"required\":[\"label\",\"score\",\"tags\"],"
					"\"properties\":{"
					"\"label\":{\"type\":\"string\",\"enum\":[\"a\",\"b\"],\"description\":\"x\"},"
					"\"score\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1,\"default\":0.5},"
					"\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"format\":\"email\","
					"\"minLength\":1,\"maxLength\":20},\"minItems\":0,\"maxItems\":5,\"examples\":[[]]},"
					"\"kind\":{\"const\":\"k\"},"
					"\"extra\":{\"anyOf\":[{\"type\":\"null\"},{\"$ref\":\"#/$defs/node\"}]},"
					"\"old\":{\"$ref\":\"#/definitions/thing\"},"
					"\"both\":{\"allOf\":[true,{}],\"oneOf\":[{\"type\":\"integer\"},{\"type\":[\"string\",\"null\"]}]}},"
					"\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"next\":{\"$ref\":\"#/$defs/node\"}}}},"
					"\"definitions\":{\"thing\":{\"type\":\"boolean\"}}}"), "ok");
	/* unknown keywords are ignored, and so is what they hold */
	CHECK_STR(check("{\"x-vendor\":{\"pattern\":\"a\"},\"format\":\"date\",\"nullable\":true}"), "ok");
	/* a property may be named after a keyword; enum and const are data */
	CHECK_STR(check("{\"properties\":{\"pattern\":{\"type\":\"string\"},\"not\":true},"
					"\"required\":[\"if\"],\"enum\":[{\"pattern\":1}],\"const\":{\"not\":2}}"), "ok");
	/* JSON Pointer escapes in a definition's name */
	CHECK_STR(check("{\"$ref\":\"#/$defs/a~1b~0c\",\"$defs\":{\"a/b~c\":{}}}"), "ok");
	CHECK_STR(check("{\"type\":[\"integer\",\"null\"],\"minLength\":0,\"maxItems\":3.0,\"minimum\":-1.5}"), "ok");
}

static void
test_check_rejects(void)
{
	char		schema[256];
	char		expected[256];

	for (size_t i = 0; i < sizeof(rejected) / sizeof(rejected[0]); i++)
	{
		snprintf(schema, sizeof(schema), "{\"properties\":{\"x\":{\"%s\":{}}}}", rejected[i]);
		snprintf(expected, sizeof(expected),
				 "unsupported JSON Schema keyword \"%s\" at $.properties.x", rejected[i]);
		CHECK_STR(check(schema), expected);
	}
	CHECK_STR(check("{\"type\":\"string\",\"pattern\":\"^a\"}"),
			  "unsupported JSON Schema keyword \"pattern\" at $");
	CHECK_STR(check("{\"items\":{\"uniqueItems\":true}}"),
			  "unsupported JSON Schema keyword \"uniqueItems\" at $.items");
	CHECK_STR(check("{\"anyOf\":[{},{\"not\":{}}]}"),
			  "unsupported JSON Schema keyword \"not\" at $.anyOf[1]");
	CHECK_STR(check("{\"$defs\":{\"d\":{\"if\":{}}}}"),
			  "unsupported JSON Schema keyword \"if\" at $.$defs.d");
	CHECK_STR(check("{\"definitions\":{\"d\":{\"additionalProperties\":{\"minProperties\":1}}}}"),
			  "unsupported JSON Schema keyword \"minProperties\" at $.definitions.d.additionalProperties");
	CHECK_STR(check("{\"properties\":{\"a b\":{\"properties\":{\"q\\\"\":{\"contains\":{}}}}}}"),
			  "unsupported JSON Schema keyword \"contains\" at $.properties[\"a b\"].properties[\"q\\\"\"]");

	/* not a schema */
	CHECK_STR(check("\"string\""), "schema must be an object or a boolean at $");
	CHECK_STR(check("[]"), "schema must be an object or a boolean at $");
	CHECK_STR(check("null"), "schema must be an object or a boolean at $");
	CHECK_STR(check("{\"properties\":{\"x\":1}}"), "schema must be an object or a boolean at $.properties.x");
	CHECK_STR(check("{\"additionalProperties\":\"no\"}"),
			  "schema must be an object or a boolean at $.additionalProperties");
	CHECK_STR(check("{\"items\":null}"), "schema must be an object or a boolean at $.items");
	CHECK_STR(check("{\"allOf\":[{},3]}"), "schema must be an object or a boolean at $.allOf[1]");

	/* type */
	CHECK_STR(check("{\"type\":\"str\"}"), "unknown JSON Schema type \"str\" at $");
	CHECK_STR(check("{\"type\":[\"string\",\"float\"]}"), "unknown JSON Schema type \"float\" at $");
	CHECK_STR(check("{\"type\":[]}"), "\"type\" must be a type name or a non-empty array of type names at $");
	CHECK_STR(check("{\"type\":[\"string\",1]}"), "\"type\" must be a type name or a non-empty array of type names at $");
	CHECK_STR(check("{\"type\":{}}"), "\"type\" must be a type name or a non-empty array of type names at $");
	CHECK_STR(check("{\"type\":\"Object\"}"), "unknown JSON Schema type \"Object\" at $");

	/* the other keywords' shapes */
	CHECK_STR(check("{\"properties\":[]}"), "\"properties\" must be an object of schemas at $");
	CHECK_STR(check("{\"$defs\":true}"), "\"$defs\" must be an object of schemas at $");
	CHECK_STR(check("{\"required\":\"a\"}"), "\"required\" must be an array of strings at $");
	CHECK_STR(check("{\"required\":[\"a\",1]}"), "\"required\" must be an array of strings at $");
	CHECK_STR(check("{\"enum\":\"a\"}"), "\"enum\" must be an array at $");
	CHECK_STR(check("{\"items\":[{}]}"), "\"items\" must be a schema (an array of schemas is not supported) at $");
	CHECK_STR(check("{\"minItems\":-1}"), "\"minItems\" must be a non-negative integer at $");
	CHECK_STR(check("{\"maxLength\":1.5}"), "\"maxLength\" must be a non-negative integer at $");
	CHECK_STR(check("{\"minLength\":\"3\"}"), "\"minLength\" must be a non-negative integer at $");
	CHECK_STR(check("{\"maxItems\":null}"), "\"maxItems\" must be a non-negative integer at $");
	CHECK_STR(check("{\"minimum\":\"0\"}"), "\"minimum\" must be a number at $");
	CHECK_STR(check("{\"maximum\":true}"), "\"maximum\" must be a number at $");
	CHECK_STR(check("{\"anyOf\":[]}"), "\"anyOf\" must be a non-empty array of schemas at $");
	CHECK_STR(check("{\"oneOf\":{}}"), "\"oneOf\" must be a non-empty array of schemas at $");

	/* $ref */
	CHECK_STR(check("{\"$ref\":1}"), "\"$ref\" must be a string at $");
	CHECK_STR(check("{\"$ref\":\"https://example.com/s.json\"}"),
			  "unsupported $ref \"https://example.com/s.json\" (only \"#/$defs/name\" and \"#/definitions/name\" are supported) at $");
	CHECK(strncmp(check("{\"$ref\":\"#\"}"), "unsupported $ref \"#\"", 19) == 0);
	CHECK(strncmp(check("{\"$ref\":\"#/properties/a\"}"), "unsupported $ref", 16) == 0);
	CHECK(strncmp(check("{\"$ref\":\"#/$defs/\"}"), "unsupported $ref", 16) == 0);
	CHECK(strncmp(check("{\"$ref\":\"#/$defs/a/b\",\"$defs\":{\"a\":{\"b\":{}}}}"), "unsupported $ref", 16) == 0);
	CHECK(strncmp(check("{\"$ref\":\"#/$defs/a~2\",\"$defs\":{\"a~2\":{}}}"), "unsupported $ref", 16) == 0);
	CHECK_STR(check("{\"properties\":{\"p\":{\"$ref\":\"#/$defs/missing\"}},\"$defs\":{}}"),
			  "$ref \"#/$defs/missing\" names no definition at $.properties.p");
	CHECK_STR(check("{\"$ref\":\"#/definitions/x\",\"$defs\":{\"x\":{}}}"),
			  "$ref \"#/definitions/x\" names no definition at $");
	/* refs resolve against the root, not a nested $defs */
	CHECK_STR(check("{\"properties\":{\"p\":{\"$defs\":{\"x\":{}},\"$ref\":\"#/$defs/x\"}}}"),
			  "$ref \"#/$defs/x\" names no definition at $.properties.p");
	CHECK_STR(check("{\"$defs\":{\"x\":{}}}"), "ok");

	/* validate refuses what check refuses */
	CHECK_STR(validate("\"a\"", "{\"type\":\"string\",\"pattern\":\"a\"}"),
			  "unsupported JSON Schema keyword \"pattern\" at $");
}

static void
test_types(void)
{
	static const char *const values[] = {"{}", "[]", "\"s\"", "1.5", "2", "true", "null"};
	static const char *const names[] = {"object", "array", "string", "number", "number", "boolean", "null"};
	char		schema[64];
	char		expected[128];

	for (int v = 0; v < 7; v++)
	{
		for (int t = 0; t < 7; t++)
		{
			const char *type = t == 4 ? "integer" : names[t];
			bool		ok = v == t || (t == 3 && v == 4);

			snprintf(schema, sizeof(schema), "{\"type\":\"%s\"}", type);
			snprintf(expected, sizeof(expected), "$: expected %s, got %s", type, names[v]);
			CHECK_STR(validate(values[v], schema), ok ? "ok" : expected);
		}
	}
	/* integer: a number with no fractional part, however written */
	CHECK_STR(validate("1.0", "{\"type\":\"integer\"}"), "ok");
	CHECK_STR(validate("-7", "{\"type\":\"integer\"}"), "ok");
	CHECK_STR(validate("1e3", "{\"type\":\"integer\"}"), "ok");
	CHECK_STR(validate("1e300", "{\"type\":\"integer\"}"), "ok");
	CHECK_STR(validate("0.1", "{\"type\":\"integer\"}"), "$: expected integer, got number");
	/* several types */
	CHECK_STR(validate("null", "{\"type\":[\"string\",\"null\"]}"), "ok");
	CHECK_STR(validate("3", "{\"type\":[\"string\",\"null\"]}"), "$: expected string or null, got number");
	CHECK_STR(validate("true", "{\"type\":[\"string\",\"integer\",\"null\"]}"),
			  "$: expected string, integer or null, got boolean");
	CHECK_STR(validate("2", "{\"type\":[\"string\",\"integer\"]}"), "ok");
	/* boolean schemas */
	CHECK_STR(validate("{\"a\":[1]}", "true"), "ok");
	CHECK_STR(validate("1", "false"), "$: no value is allowed here");
	CHECK_STR(validate("{\"x\":1}", "{\"properties\":{\"x\":false}}"), "$.x: no value is allowed here");
	CHECK_STR(validate("{}", "{\"properties\":{\"x\":false}}"), "ok");
}

static const char *const label_schema =
	"{\"type\":\"object\",\"required\":[\"label\"],\"additionalProperties\":false,"
	"\"properties\":{\"label\":{\"enum\":[\"spam\",\"ham\"]},\"why\":{\"type\":\"string\"}}}";

static void
test_objects(void)
{
	CHECK_STR(validate("{\"label\":\"spam\"}", label_schema), "ok");
	CHECK_STR(validate("{\"label\":\"ham\",\"why\":\"because\"}", label_schema), "ok");
	CHECK_STR(validate("{}", label_schema), "$: missing required property \"label\"");
	CHECK_STR(validate("{\"why\":\"x\"}", label_schema), "$: missing required property \"label\"");
	CHECK_STR(validate("{\"label\":\"eggs\"}", label_schema), "$.label: value is not one of the enum values");
	CHECK_STR(validate("{\"label\":\"spam\",\"extra\":1}", label_schema),
			  "$: additional property \"extra\" is not allowed");
	CHECK_STR(validate("{\"label\":\"spam\",\"why\":5}", label_schema), "$.why: expected string, got number");
	CHECK_STR(validate("[]", label_schema), "$: expected object, got array");
	/* property names are case-sensitive */
	CHECK_STR(validate("{\"Label\":\"spam\"}", label_schema), "$: missing required property \"label\"");

	/* additionalProperties as a schema; absent means anything goes */
	CHECK_STR(validate("{\"a\":1,\"b\":\"x\"}", "{\"properties\":{\"a\":{}},\"additionalProperties\":{\"type\":\"integer\"}}"),
			  "$.b: expected integer, got string");
	CHECK_STR(validate("{\"a\":\"x\",\"b\":2}", "{\"properties\":{\"a\":{}},\"additionalProperties\":{\"type\":\"integer\"}}"),
			  "ok");
	CHECK_STR(validate("{\"z\":1}", "{\"additionalProperties\":true}"), "ok");
	CHECK_STR(validate("{\"z\":1}", "{\"properties\":{\"a\":{}}}"), "ok");
	CHECK_STR(validate("{\"z\":1}", "{\"additionalProperties\":false}"), "$: additional property \"z\" is not allowed");

	/* nested paths, odd names quoted */
	CHECK_STR(validate("{\"user\":{\"address\":{\"zip\":123}}}",
					   "{\"properties\":{\"user\":{\"properties\":{\"address\":{\"properties\":{\"zip\":{\"type\":\"string\"}}}}}}}"),
			  "$.user.address.zip: expected string, got number");
	CHECK_STR(validate("{\"first name\":1}", "{\"properties\":{\"first name\":{\"type\":\"string\"}}}"),
			  "$[\"first name\"]: expected string, got number");
	CHECK_STR(validate("{\"a\\\"b\\\\\":1}", "{\"additionalProperties\":{\"type\":\"string\"}}"),
			  "$[\"a\\\"b\\\\\"]: expected string, got number");
	CHECK_STR(validate("{\"é\":1}", "{\"additionalProperties\":{\"type\":\"string\"}}"),
			  "$[\"é\"]: expected string, got number");
	CHECK_STR(validate("{\"\\n\":1}", "{\"additionalProperties\":{\"type\":\"string\"}}"),
			  "$[\"\\u000a\"]: expected string, got number");
	CHECK_STR(validate("{\"\":1}", "{\"additionalProperties\":{\"type\":\"string\"}}"),
			  "$[\"\"]: expected string, got number");

	/* object keywords say nothing about other types */
	CHECK_STR(validate("5", "{\"required\":[\"a\"],\"properties\":{\"a\":false},\"additionalProperties\":false}"), "ok");
}

static void
test_arrays(void)
{
	const char *schema = "{\"properties\":{\"items\":{\"type\":\"array\",\"minItems\":1,\"maxItems\":3,"
		"\"items\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"}}}}}}";

	CHECK_STR(validate("{\"items\":[{\"name\":\"a\"},{\"name\":\"b\"},{}]}", schema), "ok");
	CHECK_STR(validate("{\"items\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":5}]}", schema),
			  "$.items[2].name: expected string, got number");
	CHECK_STR(validate("{\"items\":[]}", schema), "$.items: expected at least 1 item, got 0");
	CHECK_STR(validate("{\"items\":[{},{},{},{}]}", schema), "$.items: expected at most 3 items, got 4");
	CHECK_STR(validate("[1,2]", "{\"minItems\":3}"), "$: expected at least 3 items, got 2");
	CHECK_STR(validate("[1,2]", "{\"maxItems\":1}"), "$: expected at most 1 item, got 2");
	CHECK_STR(validate("[]", "{\"maxItems\":0}"), "ok");
	CHECK_STR(validate("[[1,[2,\"x\"]]]", "{\"items\":{\"items\":{\"type\":[\"integer\",\"array\"],\"items\":{\"type\":\"integer\"}}}}"),
			  "$[0][1][1]: expected integer, got string");
	CHECK_STR(validate("[1,\"a\",null]", "{\"items\":true}"), "ok");
	CHECK_STR(validate("[1]", "{\"items\":false}"), "$[0]: no value is allowed here");
	CHECK_STR(validate("[]", "{\"items\":false}"), "ok");
	CHECK_STR(validate("\"abc\"", "{\"minItems\":5,\"items\":false}"), "ok");
}

static void
test_strings_and_numbers(void)
{
	CHECK_STR(validate("\"abc\"", "{\"minLength\":3,\"maxLength\":3}"), "ok");
	CHECK_STR(validate("\"ab\"", "{\"minLength\":3}"), "$: expected a string of at least 3 characters, got 2");
	CHECK_STR(validate("\"abcd\"", "{\"maxLength\":3}"), "$: expected a string of at most 3 characters, got 4");
	CHECK_STR(validate("\"\"", "{\"minLength\":1}"), "$: expected a string of at least 1 character, got 0");
	/* code points, not bytes: é is 2 bytes, 日 3, 🌍 4 */
	CHECK_STR(validate("\"héllo\"", "{\"maxLength\":5}"), "ok");
	CHECK_STR(validate("\"日本語\"", "{\"minLength\":3,\"maxLength\":3}"), "ok");
	CHECK_STR(validate("\"日本語\"", "{\"minLength\":4}"), "$: expected a string of at least 4 characters, got 3");
	CHECK_STR(validate("\"🌍🌍\"", "{\"maxLength\":1}"), "$: expected a string of at most 1 character, got 2");
	CHECK_STR(validate("\"\\u00e9\\ud83c\\udf0d\"", "{\"maxLength\":2,\"minLength\":2}"), "ok");

	CHECK_STR(validate("0", "{\"minimum\":0,\"maximum\":1}"), "ok");
	CHECK_STR(validate("1", "{\"minimum\":0,\"maximum\":1}"), "ok");
	CHECK_STR(validate("0.5", "{\"minimum\":0,\"maximum\":1}"), "ok");
	CHECK_STR(validate("-1", "{\"minimum\":0}"), "$: expected a number >= 0, got -1");
	CHECK_STR(validate("2.25", "{\"maximum\":1.5}"), "$: expected a number <= 1.5, got 2.25");
	CHECK_STR(validate("0.1", "{\"minimum\":0.2}"), "$: expected a number >= 0.2, got 0.1");
	CHECK_STR(validate("1e20", "{\"maximum\":100}"), "$: expected a number <= 100, got 1e+20");
	CHECK_STR(validate("0.3", "{\"minimum\":0.30000000000000004}"),
			  "$: expected a number >= 0.30000000000000004, got 0.3");
	/* string and number keywords say nothing about other types */
	CHECK_STR(validate("5", "{\"minLength\":10}"), "ok");
	CHECK_STR(validate("\"5\"", "{\"minimum\":10}"), "ok");
}

static void
test_enum_and_const(void)
{
	CHECK_STR(validate("2", "{\"enum\":[1,2,3]}"), "ok");
	CHECK_STR(validate("2.0", "{\"enum\":[1,2,3]}"), "ok");
	CHECK_STR(validate("4", "{\"enum\":[1,2,3]}"), "$: value is not one of the enum values");
	CHECK_STR(validate("\"2\"", "{\"enum\":[1,2,3]}"), "$: value is not one of the enum values");
	CHECK_STR(validate("null", "{\"enum\":[null,\"x\"]}"), "ok");
	CHECK_STR(validate("{\"b\":[1],\"a\":true}", "{\"enum\":[{\"a\":true,\"b\":[1]}]}"), "ok");
	CHECK_STR(validate("{\"a\":true}", "{\"enum\":[{\"a\":true,\"b\":[1]}]}"), "$: value is not one of the enum values");
	CHECK_STR(validate("\"X\"", "{\"enum\":[\"x\"]}"), "$: value is not one of the enum values");
	CHECK_STR(validate("1", "{\"enum\":[]}"), "$: value is not one of the enum values");
	CHECK_STR(validate("\"k\"", "{\"const\":\"k\"}"), "ok");
	CHECK_STR(validate("[1,{\"x\":null}]", "{\"const\":[1,{\"x\":null}]}"), "ok");
	CHECK_STR(validate("[{\"x\":null},1]", "{\"const\":[1,{\"x\":null}]}"), "$: value does not equal the const value");
	CHECK_STR(validate("false", "{\"const\":true}"), "$: value does not equal the const value");
	CHECK_STR(validate("null", "{\"const\":null}"), "ok");
}

static void
test_combinators(void)
{
	const char *nullable = "{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]}";
	const char *one = "{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"},{\"type\":\"string\"}]}";

	CHECK_STR(validate("\"a\"", nullable), "ok");
	CHECK_STR(validate("null", nullable), "ok");
	CHECK_STR(validate("1", nullable), "$: value matches none of the anyOf schemas");
	CHECK_STR(validate("{\"v\":[1]}", "{\"properties\":{\"v\":{\"items\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]}}}}"),
			  "$.v[0]: value matches none of the anyOf schemas");

	CHECK_STR(validate("\"s\"", one), "ok");
	CHECK_STR(validate("1.5", one), "ok");
	CHECK_STR(validate("1", one), "$: value matches more than one oneOf schema (oneOf[0] and oneOf[1])");
	CHECK_STR(validate("true", one), "$: value matches none of the oneOf schemas");

	CHECK_STR(validate("5", "{\"allOf\":[{\"type\":\"integer\"},{\"minimum\":1},{\"maximum\":10}]}"), "ok");
	CHECK_STR(validate("50", "{\"allOf\":[{\"type\":\"integer\"},{\"minimum\":1},{\"maximum\":10}]}"),
			  "$: expected a number <= 10, got 50");
	CHECK_STR(validate("{\"a\":1}", "{\"allOf\":[{\"required\":[\"a\"]},{\"required\":[\"b\"]}]}"),
			  "$: missing required property \"b\"");
	/* all keywords apply together */
	CHECK_STR(validate("\"abc\"", "{\"type\":\"string\",\"maxLength\":2,\"anyOf\":[true]}"),
			  "$: expected a string of at most 2 characters, got 3");
	CHECK_STR(validate("3", "{\"minimum\":0,\"anyOf\":[{\"type\":\"string\"},{\"maximum\":2}]}"),
			  "$: value matches none of the anyOf schemas");
}

static void
test_refs(void)
{
	const char *tree =
		"{\"$ref\":\"#/$defs/node\",\"$defs\":{\"node\":{\"type\":\"object\",\"required\":[\"v\"],"
		"\"properties\":{\"v\":{\"type\":\"integer\"},"
		"\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}}}}}";
	const char *loop = "{\"$ref\":\"#/$defs/a\",\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}}}";
	const char *bomb = "{\"$ref\":\"#/$defs/a\",\"$defs\":{\"a\":{\"anyOf\":["
		"{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/a\"}},"
		"{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/a\"}}]}}}";
	char		deep[4096];
	char	   *o;
	clock_t		start;

	CHECK_STR(validate("{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[{\"v\":4}]}]}", tree), "ok");
	CHECK_STR(validate("{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[{\"v\":\"x\"}]}]}", tree),
			  "$.kids[1].kids[0].v: expected integer, got string");
	CHECK_STR(validate("{\"v\":1,\"kids\":[{}]}", tree), "$.kids[0]: missing required property \"v\"");
	CHECK_STR(validate("true", "{\"definitions\":{\"b\":{\"type\":\"boolean\"}},\"$ref\":\"#/definitions/b\"}"), "ok");
	CHECK_STR(validate("1", "{\"definitions\":{\"b\":{\"type\":\"boolean\"}},\"$ref\":\"#/definitions/b\"}"),
			  "$: expected boolean, got number");
	CHECK_STR(validate("1", "{\"$defs\":{\"a/b\":{\"type\":\"string\"}},\"$ref\":\"#/$defs/a~1b\"}"),
			  "$: expected string, got number");
	/* keywords beside $ref apply too */
	CHECK_STR(validate("\"abcd\"", "{\"$defs\":{\"s\":{\"type\":\"string\"}},\"$ref\":\"#/$defs/s\",\"maxLength\":3}"),
			  "$: expected a string of at most 3 characters, got 4");
	CHECK_STR(validate("5", "{\"$defs\":{\"s\":{\"type\":\"string\"}},\"$ref\":\"#/$defs/s\",\"maxLength\":3}"),
			  "$: expected string, got number");

	/* a cycle that consumes nothing stops at the depth limit, at once */
	CHECK_STR(validate("1", "{\"$ref\":\"#/$defs/a\",\"$defs\":{\"a\":"
					   "{\"anyOf\":[{\"$ref\":\"#/$defs/a\"},{\"$ref\":\"#/$defs/a\"}]}}}"),
			  "$: $ref nesting deeper than 64 levels");
	CHECK_STR(validate("1", loop), "$: $ref nesting deeper than 64 levels");
	/* ...and is not taken as a mere anyOf failure */
	CHECK_STR(validate("1", "{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/a\"}},\"anyOf\":[{\"$ref\":\"#/$defs/a\"},true]}"),
			  "$: $ref nesting deeper than 64 levels");

	/* even recursion that consumes the document stops at 64 nested $refs */
	for (int depth = 63; depth <= 64; depth++)
	{
		o = deep;
		for (int i = 0; i < depth; i++)
			o += sprintf(o, "{\"v\":%d,\"kids\":[", i);
		o += sprintf(o, "{\"v\":%d}", depth);
		for (int i = 0; i < depth; i++)
			o += sprintf(o, "]}");
		if (depth == 63)
			CHECK_STR(validate(deep, tree), "ok");
		else
			CHECK_STR(validate(deep, tree),
					  "$.kids[0].kids[0].kids[0].kids[0].kids..."
					  "kids[0].kids[0].kids[0].kids[0].kids[0].kids[0].kids[0].kids[0].kids[0].kids[0]: "
					  "$ref nesting deeper than 64 levels");
	}

	/* 2^40 ways to fail: stopped by the step budget, quickly */
	o = deep;
	for (int i = 0; i < 40; i++)
		*o++ = '[';
	o += sprintf(o, "\"x\"");
	for (int i = 0; i < 40; i++)
		*o++ = ']';
	*o = '\0';
	start = clock();
	CHECK(strstr(validate(deep, bomb), "[0]: schema too complex to validate (more than 102624 steps)") != NULL);
	CHECK((double) (clock() - start) / CLOCKS_PER_SEC < 60);
}

static void
test_depth_limit(void)
{
	char		err[128];
	cJSON	   *schema = cJSON_CreateObject();
	cJSON	   *at = schema;
	cJSON	   *instance = cJSON_CreateArray();

	/* deeper than the parser would let a text be */
	for (int i = 0; i < LLM_JSON_SCHEMA_MAX_DEPTH + 5; i++)
	{
		cJSON	   *inner = cJSON_CreateObject();

		cJSON_AddItemToObject(at, "items", inner);
		at = inner;
	}
	CHECK(!llm_json_schema_check(schema, err, sizeof(err)));
	CHECK(strncmp(err, "schema nested deeper than 1000 levels at $.items.items.", 55) == 0);
	CHECK(!llm_json_validate(instance, schema, err, sizeof(err)));
	CHECK(strncmp(err, "schema nested deeper than 1000 levels", 37) == 0);
	cJSON_Delete(schema);
	cJSON_Delete(instance);
}

static void
test_validate_edges(void)
{
	char		err[16];
	char		tiny[1];
	cJSON	   *schema = cJSON_Parse("{\"properties\":{\"ééééé\":{\"type\":\"string\"}}}");
	cJSON	   *instance = cJSON_Parse("{\"ééééé\":1}");

	CHECK(!llm_json_validate(NULL, schema, err, sizeof(err)));
	CHECK_STR(err, "$: no value to ");
	CHECK(!llm_json_validate(instance, NULL, err, sizeof(err)));
	CHECK_STR(err, "schema must be ");
	CHECK(!llm_json_schema_check(NULL, err, sizeof(err)));

	/* cut messages end on a whole character: $[" is 3 bytes, each é 2 */
	CHECK(!llm_json_validate(instance, schema, err, sizeof(err)));
	CHECK_STR(err, "$[\"ééééé\"]");
	{
		char		err13[13];

		CHECK(!llm_json_validate(instance, schema, err13, sizeof(err13)));
		CHECK_STR(err13, "$[\"éééé");
	}
	/* a long key loses its middle between characters, not the message */
	{
		char		key[256];
		char		json[1024];
		char		expected[512];
		const char *got;

		memset(key, 'k', 100);
		strcpy(key + 100, "ééééé");
		memset(key + 110, 'z', 100);
		key[210] = '\0';
		snprintf(json, sizeof(json), "{\"%s\":1}", key);
		got = validate(json, "{\"additionalProperties\":false}");
		snprintf(expected, sizeof(expected), "$: additional property \"%s\" is not allowed", key);
		CHECK_STR(got, expected);
		snprintf(json, sizeof(json), "{\"%s\":{\"%s\":1}}", key, key);
		got = validate(json, "{\"additionalProperties\":{\"additionalProperties\":{\"type\":\"string\"}}}");
		CHECK(strncmp(got, "$[\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...", 43) == 0);
		CHECK(strstr(got, "zzzzzz\"]: expected string, got number") != NULL);
		CHECK(strlen(got) < 200);
	}
	CHECK(!llm_json_validate(instance, schema, tiny, sizeof(tiny)));
	CHECK(tiny[0] == '\0');
	CHECK(!llm_json_validate(instance, schema, NULL, 0));

	/* validating the same thing twice gives the same answer */
	CHECK(!llm_json_validate(instance, schema, err, sizeof(err)));
	CHECK_STR(err, "$[\"ééééé\"]");
	cJSON_Delete(schema);
	cJSON_Delete(instance);
}

void
test_jsonschema(void)
{
	test_check_accepts();
	test_check_rejects();
	test_types();
	test_objects();
	test_arrays();
	test_strings_and_numbers();
	test_enum_and_const();
	test_combinators();
	test_refs();
	test_depth_limit();
	test_validate_edges();
}
