/*
 * sql_prompt.c — llm_render, llm_complete_prompt, llm_complete_json, and the
 * checks llm_prompt_create runs on templates and schemas.
 */
#include "llmext.h"

#include "call/call.h"
#include "core/jsonschema.h"
#include "core/template.h"
#include "store/prompt.h"

#include "access/detoast.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(llm_render);
PG_FUNCTION_INFO_V1(llm_complete_prompt);
PG_FUNCTION_INFO_V1(llm_complete_json);
PG_FUNCTION_INFO_V1(llm_template_check);
PG_FUNCTION_INFO_V1(llm_schema_check);

static char *
text_arg(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

static cJSON *
json_arg(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : llm_jsonb_to_cjson(PG_GETARG_DATUM(argno));
}

/* (name, vars, version, label, ab_key) at the given argument positions. */
static LlmRenderedPrompt *
render_from_args(FunctionCallInfo fcinfo, const char *call_model,
				 int version_arg, int label_arg, int ab_key_arg)
{
	int			version;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("prompt name must not be NULL")));
	if (!PG_ARGISNULL(version_arg))
		version = PG_GETARG_INT32(version_arg);
	return llm_prompt_render(text_arg(fcinfo, 0), json_arg(fcinfo, 1), call_model,
							 PG_ARGISNULL(version_arg) ? NULL : &version,
							 text_arg(fcinfo, label_arg), text_arg(fcinfo, ab_key_arg));
}

/* llm_render(name, vars, version, label, ab_key) RETURNS jsonb */
Datum
llm_render(PG_FUNCTION_ARGS)
{
	LlmRenderedPrompt *prompt = render_from_args(fcinfo, NULL, 2, 3, 4);

	PG_RETURN_DATUM(llm_cjson_to_jsonb(llm_rendered_prompt_json(prompt)));
}

/*
 * Calls a stored prompt (arguments name, vars, model, version, label,
 * ab_key, options); false when the call failed quietly.
 */
static bool
call_prompt(FunctionCallInfo fcinfo, bool expect_json, LlmCallResult *result)
{
	LlmRenderedPrompt *prompt = render_from_args(fcinfo, text_arg(fcinfo, 2), 3, 4, 5);
	cJSON	   *options = json_arg(fcinfo, 6);
	cJSON	   *merged = cJSON_Duplicate(prompt->params, true);
	const cJSON *item;
	LlmCallRequest req = {0};

	if (options != NULL && !cJSON_IsObject(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object")));
	/* the version's parameters, then the call's options over them */
	cJSON_ArrayForEach(item, options)
	{
		cJSON_DeleteItemFromObjectCaseSensitive(merged, item->string);
		cJSON_AddItemToObject(merged, item->string, cJSON_Duplicate(item, true));
	}
	req.model_name = prompt->model;
	req.messages = prompt->messages;
	req.options = merged;
	req.prompt_name = prompt->name;
	req.prompt_version = prompt->version;
	req.vars = prompt->vars;
	req.expect_json = expect_json;
	req.response_schema = prompt->response_schema;
	return llm_chat_call(&req, result);
}

/* llm_complete_prompt(name, vars, model, version, label, ab_key, options) RETURNS text */
Datum
llm_complete_prompt(PG_FUNCTION_ARGS)
{
	LlmCallResult result;

	if (!call_prompt(fcinfo, false, &result) || result.chat.content == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(result.chat.content));
}

/* llm_complete_json(...) RETURNS jsonb: the answer parsed, checked against the schema */
Datum
llm_complete_json(PG_FUNCTION_ARGS)
{
	LlmCallResult result;

	if (!call_prompt(fcinfo, true, &result))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(llm_cjson_to_jsonb(result.output_json));
}

/* llm._template_check(template text) */
Datum
llm_template_check(PG_FUNCTION_ARGS)
{
	char		err[256];
	LlmTemplateError kind;
	LlmTemplate *tmpl;
	Size		size = toast_raw_datum_size(PG_GETARG_DATUM(0)) - VARHDRSZ;

	/* before it is detoasted and copied */
	if (size > (Size) llm_max_template_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the template of %zu bytes is larger than llmext.max_template_bytes (%d bytes)",
						(size_t) size, llm_max_template_bytes),
				 errhint("Shorten the template, or ask a superuser to raise llmext.max_template_bytes.")));
	tmpl = llm_template_parse_limited(text_to_cstring(PG_GETARG_TEXT_PP(0)),
									  (size_t) llm_max_template_bytes,
									  (size_t) llm_max_template_nodes, &kind,
									  err, sizeof(err));
	if (tmpl == NULL && kind == LLM_TEMPLATE_TOO_MANY_NODES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("invalid prompt template: %s", err),
				 errdetail("llmext.max_template_nodes is %d.", llm_max_template_nodes),
				 errhint("Use fewer variables and sections, or ask a superuser to raise llmext.max_template_nodes.")));
	if (tmpl == NULL && kind == LLM_TEMPLATE_TOO_LARGE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("invalid prompt template: %s", err),
				 errhint("Shorten the template, or ask a superuser to raise llmext.max_template_bytes.")));
	if (tmpl == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("invalid prompt template: %s", err),
				 errhint("Variables are {{name}}, sections {{#list}}...{{/list}}; write \\{{ for a literal \"{{\".")));
	llm_template_free(tmpl);
	PG_RETURN_VOID();
}

/* llm._schema_check(schema jsonb) */
Datum
llm_schema_check(PG_FUNCTION_ARGS)
{
	char		err[256];
	cJSON	   *schema = llm_jsonb_to_cjson(PG_GETARG_DATUM(0));

	if (!llm_json_schema_check(schema, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid response schema: %s", err),
				 errhint("llmext checks type, properties, required, enum, const, items, additionalProperties, min/max, anyOf, allOf, oneOf and $ref.")));
	PG_RETURN_VOID();
}
