/*
 * fuzz_template.c — libFuzzer target for template.c and jsonschema.c.
 *
 * The input is split at its first NUL byte: before it, the template text;
 * after it, the vars as JSON (when there is no NUL, a fixed vars object with
 * a string, a number, a nested object and an array of objects).  The
 * template is parsed, rendered with a 1 MB limit, asked for its variables
 * and freed.  Whatever parses as JSON also goes through the JSON Schema
 * checker and validator: the template text as a schema for the vars, and
 * the vars as a schema for themselves.
 *
 * Build and run with test/fuzz/run.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/jsonschema.h"
#include "core/template.h"

static const char default_vars[] =
	"{\"name\":\"Ada\",\"n\":42,\"pi\":3.5,\"flag\":false,\"yes\":true,\"nil\":null,"
	"\"user\":{\"name\":\"Grace\",\"tags\":[\"a\",\"b\"],\"address\":{\"city\":\"Zürich\"}},"
	"\"items\":[{\"name\":\"x\",\"ok\":true,\"sub\":[1,2]},{\"name\":\"y\",\"ok\":false,\"sub\":[]}],"
	"\"empty\":[],\"obj\":{}}";

#define MAX_OUTPUT (1024 * 1024)

static void
fuzz_template(const char *text, const cJSON *vars, size_t errlen)
{
	char		err[512];
	LlmTemplate *tmpl;
	char	   *out;
	cJSON	   *names;

	tmpl = llm_template_parse(text, err, errlen);
	if (tmpl == NULL)
	{
		/* a failure always says something, NUL-terminated within errlen */
		if (errlen > 0 && strnlen(err, errlen) == errlen)
			abort();
		return;
	}
	out = llm_template_render(tmpl, vars, MAX_OUTPUT, err, errlen);
	if (out != NULL && strlen(out) > MAX_OUTPUT)
		abort();
	cJSON_free(out);
	/* rendering twice gives the same answer */
	out = llm_template_render(tmpl, vars, MAX_OUTPUT, err, errlen);
	cJSON_free(out);
	names = llm_template_variables(tmpl);
	if (!cJSON_IsArray(names))
		abort();
	cJSON_Delete(names);
	llm_template_free(tmpl);
}

static void
fuzz_schema(const cJSON *schema, const cJSON *instance, size_t errlen)
{
	char		err[512];
	bool		checked = llm_json_schema_check(schema, err, errlen);
	bool		valid = llm_json_validate(instance, schema, err, errlen);

	/* a schema the checker refuses never validates anything */
	if (!checked && valid)
		abort();
	if (!valid && errlen > 0 && strnlen(err, errlen) == errlen)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t		text_len = nul != NULL ? (size_t) (nul - data) : size;
	char	   *text = malloc(text_len + 1);
	cJSON	   *vars;
	cJSON	   *text_json;
	/* small error buffers too, to exercise cutting messages short */
	size_t		errlen = size % 3 == 0 ? 1 + size % 40 : 512;

	memcpy(text, data, text_len);
	text[text_len] = '\0';
	if (nul != NULL)
		vars = cJSON_ParseWithLength((const char *) nul + 1, size - text_len - 1);
	else
		vars = cJSON_Parse(default_vars);

	/* vars that are not JSON are rendered as NULL: an empty object */
	fuzz_template(text, vars, errlen);

	text_json = cJSON_Parse(text);
	if (text_json != NULL)
	{
		fuzz_schema(text_json, vars, errlen);
		fuzz_schema(text_json, text_json, errlen);
	}
	if (vars != NULL)
		fuzz_schema(vars, vars, errlen);

	cJSON_Delete(text_json);
	cJSON_Delete(vars);
	free(text);
	return 0;
}
