/*
 * sql_call.c — llm_complete and llm_chat: one synchronous call from SQL.
 */
#include "llmext.h"

#include "call/call.h"
#include "store/ledger.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(llm_complete);
PG_FUNCTION_INFO_V1(llm_chat);

static char *
optional_text(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

static cJSON *
optional_json(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : llm_jsonb_to_cjson(PG_GETARG_DATUM(argno));
}

/* llm_complete(prompt, model, system, options) RETURNS text */
Datum
llm_complete(PG_FUNCTION_ARGS)
{
	char	   *prompt;
	LlmCallRequest req = {0};
	LlmCallResult result;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	llm_check_text_size(PG_GETARG_DATUM(0), "a prompt");
	if (!PG_ARGISNULL(2))
		llm_check_text_size(PG_GETARG_DATUM(2), "a system message");
	prompt = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (prompt[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("prompt must not be empty"),
				 errhint("A NULL prompt gives NULL without calling the model.")));

	req.model_name = optional_text(fcinfo, 1);
	req.messages = llm_messages_from_prompt(prompt, optional_text(fcinfo, 2));
	req.options = optional_json(fcinfo, 3);
	if (!llm_chat_call(&req, &result))
		PG_RETURN_NULL();
	if (result.chat.content == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(result.chat.content));
}

/* llm_chat(messages, model, options) RETURNS jsonb */
Datum
llm_chat(PG_FUNCTION_ARGS)
{
	LlmCallRequest req = {0};
	LlmCallResult result;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	req.model_name = optional_text(fcinfo, 1);
	req.messages = optional_json(fcinfo, 0);
	req.options = optional_json(fcinfo, 2);
	if (!llm_chat_call(&req, &result))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(llm_cjson_to_jsonb(llm_call_result_json(&result)));
}

PG_FUNCTION_INFO_V1(llm_last_call_id);

/*
 * llm_last_call_id() RETURNS text: the call_id of this session's last call
 * (of a batch, its last), for the calls that return only text.
 */
Datum
llm_last_call_id(PG_FUNCTION_ARGS)
{
	const char *id = llm_ledger_last_entry_id();

	if (id == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(id));
}

PG_FUNCTION_INFO_V1(llm_flush);

/* llm_flush(timeout interval) RETURNS boolean */
Datum
llm_flush(PG_FUNCTION_ARGS)
{
	long		timeout_ms = 10000;

	if (!PG_ARGISNULL(0))
	{
		Interval   *interval = PG_GETARG_INTERVAL_P(0);
		double		seconds = DatumGetFloat8(DirectFunctionCall2(interval_part,
																 CStringGetTextDatum("epoch"),
																 IntervalPGetDatum(interval)));

		timeout_ms = (long) Max(0, Min(seconds, 3600) * 1000);
	}
	PG_RETURN_BOOL(llm_pending_wait_written(timeout_ms));
}
