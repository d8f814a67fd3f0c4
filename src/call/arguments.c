/*
 * arguments.c — SQL values into and out of llmext's JSON: the bounds on a
 * text or jsonb argument, and jsonb to cJSON and back.  Every entry point
 * converts its arguments here, so that one set of limits (size, nesting,
 * numbers that a double cannot hold) guards them all.
 */
#include "llmext.h"

#include "call/call.h"

#include "core/json_checks.h"

#include "access/detoast.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

void
llm_check_text_size(Datum text, const char *what)
{
	Size		size = toast_raw_datum_size(text) - VARHDRSZ;

	if (size > (Size) llm_max_request_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s of %zu bytes is larger than llmext.max_request_bytes (%d bytes)",
						what, (size_t) size, llm_max_request_bytes),
				 errhint("Send a shorter prompt, or ask a superuser to raise llmext.max_request_bytes.")));
}

cJSON *
llm_jsonb_to_cjson(Datum jsonb)
{
	Jsonb	   *jb;
	char	   *text;
	cJSON	   *json;
	const cJSON *number;

	/*
	 * Checked before it is detoasted: its text and its cJSON tree take a
	 * multiple of its size, and every jsonb argument ends up in a request.
	 */
	if (toast_raw_datum_size(jsonb) > (Size) llm_max_request_bytes + VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a jsonb argument of %zu bytes is larger than llmext.max_request_bytes (%d bytes)",
						(size_t) (toast_raw_datum_size(jsonb) - VARHDRSZ), llm_max_request_bytes),
				 errhint("Pass less data, or ask a superuser to raise llmext.max_request_bytes.")));
	jb = DatumGetJsonbP(jsonb);
	text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	json = cJSON_Parse(text);

	if (json == NULL)
	{
		/* valid jsonb: only cJSON's nesting limit refuses it */
		int			depth = llm_json_text_depth(text);

		if (depth > LLM_JSON_MAX_DEPTH)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("JSON argument is nested too deeply"),
					 errdetail("It nests %d arrays or objects; llmext reads at most %d levels.",
							   depth, LLM_JSON_MAX_DEPTH)));
		elog(ERROR, "llmext: could not convert jsonb to cJSON");
	}
	pfree(text);

	/*
	 * jsonb numbers are numeric; llmext's are double precision.  One that
	 * overflows would be sent (and cached) as null: refused.  (Tiny ones
	 * become 0, and long ones lose digits, as in any double.)
	 */
	number = llm_json_find_nonfinite(json);
	if (number != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 number->string
				 ? errmsg("JSON number in \"%s\" is out of range", number->string)
				 : errmsg("JSON number is out of range"),
				 errdetail("llmext reads JSON numbers as double precision values: at most about 1.8e308 in size.")));
	return json;
}

Datum
llm_cjson_to_jsonb(const cJSON *json)
{
	char	   *text = cJSON_PrintUnformatted(json);

	return DirectFunctionCall1(jsonb_in, CStringGetDatum(text));
}
