/*
 * prompt.c — stored prompts (see prompt.h).
 *
 * The choice of version is SQL (llm._prompt_choose), so that the rules live
 * next to the tables; the rendering is the pure template code.
 */
#include "llmext.h"

#include "store/prompt.h"

#include "core/template.h"
#include "providers/provider.h"
#include "store/catalog.h"
#include "store/spi_check.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/builtins.h"

typedef struct PromptVersion
{
	char	   *system;
	char	   *template;
	cJSON	   *examples;
	cJSON	   *response_schema;
	char	   *model;
	cJSON	   *params;
} PromptVersion;

static cJSON *
json_or_null(const char *text)
{
	return text ? cJSON_Parse(text) : NULL;
}

/* Runs the choice and loads the version, in the caller's own rights. */
static PromptVersion *
load_version(LlmRenderedPrompt *out, const int *version, const char *label, const char *ab_key)
{
	static SPIPlanPtr choose_plan = NULL;
	static SPIPlanPtr version_plan = NULL;
	MemoryContext caller = CurrentMemoryContext;
	PromptVersion *v = palloc0(sizeof(PromptVersion));
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;

	args[0] = CStringGetTextDatum(out->name);
	args[1] = version ? Int32GetDatum(*version) : (Datum) 0;
	nulls[1] = version ? ' ' : 'n';
	args[2] = label ? CStringGetTextDatum(label) : (Datum) 0;
	nulls[2] = label ? ' ' : 'n';
	args[3] = ab_key ? CStringGetTextDatum(ab_key) : (Datum) 0;
	nulls[3] = ab_key ? ' ' : 'n';

	llm_spi_connect();
	if (choose_plan == NULL)
	{
		Oid			types[4] = {TEXTOID, INT4OID, TEXTOID, TEXTOID};
		SPIPlanPtr	p = SPI_prepare("SELECT chosen_version, chosen_model, chosen_label"
									"  FROM llm._prompt_choose($1, $2, $3, $4)", 4, types);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		choose_plan = p;
	}
	if (version_plan == NULL)
	{
		Oid			types[2] = {TEXTOID, INT4OID};
		SPIPlanPtr	p = SPI_prepare("SELECT system, template, examples::pg_catalog.text,"
									"       response_schema::pg_catalog.text, model,"
									"       params::pg_catalog.text"
									"  FROM llm.prompts"
									" WHERE name OPERATOR(pg_catalog.=) $1"
									"   AND version OPERATOR(pg_catalog.=) $2", 2, types);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		version_plan = p;
	}

	if (SPI_execute_plan(choose_plan, args, nulls, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "prompt version choice failed");
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	out->version = DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull));
	{
		MemoryContext spi = MemoryContextSwitchTo(caller);

		out->model = SPI_getvalue(tuple, desc, 2);
		out->label = SPI_getvalue(tuple, desc, 3);
		MemoryContextSwitchTo(spi);
	}

	args[1] = Int32GetDatum(out->version);
	if (SPI_execute_plan(version_plan, args, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "prompt \"%s\" version %d vanished", out->name, out->version);
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	{
		MemoryContext spi = MemoryContextSwitchTo(caller);

		v->system = SPI_getvalue(tuple, desc, 1);
		v->template = SPI_getvalue(tuple, desc, 2);
		v->examples = json_or_null(SPI_getvalue(tuple, desc, 3));
		v->response_schema = json_or_null(SPI_getvalue(tuple, desc, 4));
		v->model = SPI_getvalue(tuple, desc, 5);
		v->params = json_or_null(SPI_getvalue(tuple, desc, 6));
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return v;
}

static char *
render_or_fail(const LlmTemplate *tmpl, const cJSON *vars, const LlmRenderedPrompt *out,
			   const char *what)
{
	char		err[256];
	LlmTemplateError kind;
	char	   *text = llm_template_render_kind(tmpl, vars, (size_t) llm_max_rendered_bytes,
												&kind, err, sizeof(err));

	if (text == NULL && kind == LLM_TEMPLATE_OUTPUT_TOO_LARGE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("prompt \"%s\" version %d: the rendered text is larger than llmext.max_rendered_bytes (%d bytes)",
						out->name, out->version, llm_max_rendered_bytes),
				 errdetail("While rendering %s.", what),
				 errhint("Pass shorter values in vars, or ask a superuser to raise llmext.max_rendered_bytes.")));
	if (text == NULL && kind == LLM_TEMPLATE_TOO_MANY_STEPS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("prompt \"%s\" version %d: %s", out->name, out->version, err),
				 errdetail("While rendering %s.", what),
				 errhint("Rendering may take 1000000 steps plus two per byte of llmext.max_rendered_bytes.")));
	if (text == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("prompt \"%s\" version %d: %s", out->name, out->version, err),
				 errdetail("While rendering %s.", what),
				 errhint("Pass every variable the template uses in vars, for example jsonb_build_object('name', ...).")));
	return text;
}

static cJSON *
message(const char *role, const char *content)
{
	cJSON	   *m = cJSON_CreateObject();

	cJSON_AddStringToObject(m, "role", role);
	cJSON_AddStringToObject(m, "content", content);
	return m;
}

/*
 * The provider kind whose request parameters ask for a response schema: the
 * kind of the model the prompt will call when it names a registered model
 * of a kind llmext implements, else the default kind.
 */
static const LlmProviderRoutine *
output_format_routine(const char *model_name)
{
	const LlmProviderRoutine *routine = NULL;

	if (model_name != NULL)
	{
		/* an unknown model is the call's error, not the rendering's */
		LlmModel   *model = llm_find_model(model_name, true);

		if (model != NULL)
			routine = model->routine;
	}
	return routine ? routine : llm_provider_routine(LLM_DEFAULT_PROVIDER_KIND);
}

LlmRenderedPrompt *
llm_prompt_render(const char *name, const cJSON *vars, const char *call_model,
				  const int *version, const char *label, const char *ab_key)
{
	LlmRenderedPrompt *out = palloc0(sizeof(LlmRenderedPrompt));
	PromptVersion *v;
	LlmTemplate *tmpl;
	LlmTemplateError kind;
	char		err[256];
	const cJSON *example;
	cJSON	   *empty = NULL;

	if (vars != NULL && !cJSON_IsObject(vars))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("vars must be a JSON object"),
				 errhint("For example jsonb_build_object('ticket', body).")));
	if (vars == NULL)
		vars = empty = cJSON_CreateObject();
	else
		out->vars = cJSON_Duplicate(vars, true);

	out->name = pstrdup(name);
	v = load_version(out, version, label, ab_key);
	if (call_model != NULL)
		out->model = pstrdup(call_model);
	else if (out->model == NULL)
		out->model = v->model;

	/* stored under the ceilings of its day: today's apply to its use */
	tmpl = llm_template_parse_limited(v->template, (size_t) llm_max_template_bytes,
									  (size_t) llm_max_template_nodes, &kind,
									  err, sizeof(err));
	if (tmpl == NULL && kind != LLM_TEMPLATE_SYNTAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("prompt \"%s\" version %d: %s", name, out->version, err),
				 errhint("A superuser may raise %s.",
						 kind == LLM_TEMPLATE_TOO_LARGE ? "llmext.max_template_bytes"
						 : "llmext.max_template_nodes")));
	if (tmpl == NULL)
		elog(ERROR, "stored template of prompt \"%s\" version %d does not parse: %s",
			 name, out->version, err);

	out->messages = cJSON_CreateArray();
	if (v->system != NULL)
		cJSON_AddItemToArray(out->messages, message("system", v->system));
	cJSON_ArrayForEach(example, v->examples)
	{
		const cJSON *input = cJSON_GetObjectItemCaseSensitive(example, "input");
		const cJSON *output = cJSON_GetObjectItemCaseSensitive(example, "output");

		cJSON_AddItemToArray(out->messages,
							 message("user", cJSON_IsString(input) ? input->valuestring
									 : render_or_fail(tmpl, input, out, "a few-shot example")));
		cJSON_AddItemToArray(out->messages,
							 message("assistant", cJSON_IsString(output) ? output->valuestring
									 : cJSON_PrintUnformatted(output)));
	}
	cJSON_AddItemToArray(out->messages, message("user", render_or_fail(tmpl, vars, out, "the user message")));
	llm_template_free(tmpl);

	out->params = v->params ? v->params : cJSON_CreateObject();
	out->response_schema = v->response_schema;
	if (v->response_schema != NULL)
	{
		const LlmProviderRoutine *routine = output_format_routine(out->model);

		if (!routine->has_output_format(out->params))
			routine->add_json_output(out->params, name, v->response_schema);
	}
	cJSON_Delete(empty);
	return out;
}

cJSON *
llm_rendered_prompt_json(const LlmRenderedPrompt *prompt)
{
	cJSON	   *json = cJSON_CreateObject();
	cJSON	   *params = cJSON_Duplicate(prompt->params, true);
	cJSON	   *format = cJSON_DetachItemFromObjectCaseSensitive(params, "response_format");

	cJSON_AddStringToObject(json, "prompt", prompt->name);
	cJSON_AddNumberToObject(json, "version", prompt->version);
	if (prompt->label)
		cJSON_AddStringToObject(json, "label", prompt->label);
	else
		cJSON_AddNullToObject(json, "label");
	if (prompt->model)
		cJSON_AddStringToObject(json, "model", prompt->model);
	else if (llm_default_model && llm_default_model[0])
		cJSON_AddStringToObject(json, "model", llm_default_model);
	else
		cJSON_AddNullToObject(json, "model");
	cJSON_AddItemToObject(json, "messages", cJSON_Duplicate(prompt->messages, true));
	cJSON_AddItemToObject(json, "params", params);
	cJSON_AddItemToObject(json, "response_format", format ? format : cJSON_CreateNull());
	return json;
}
