/*
 * sql_eval.c — llm_eval_score: one output scored against the expected
 * answer.  (A first version: only the exact scorer.)
 */
#include "llmext.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(llm_eval_score);

Datum
llm_eval_score(PG_FUNCTION_ARGS)
{
	char	   *output = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	Jsonb	   *expected = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	char	   *want = NULL;
	const char *result;

	if (expected != NULL)
	{
		JsonbValue	v;

		if (JB_ROOT_IS_SCALAR(expected) && getIthJsonbValueFromContainer(&expected->root, 0) != NULL &&
			getIthJsonbValueFromContainer(&expected->root, 0)->type == jbvString)
		{
			v = *getIthJsonbValueFromContainer(&expected->root, 0);
			want = pnstrdup(v.val.string.val, v.val.string.len);
		}
		else
			want = JsonbToCString(NULL, &expected->root, VARSIZE(expected));
	}
	if (output == NULL)
		result = "{\"score\": null, \"passed\": null, \"reason\": \"no output\"}";
	else if (want != NULL && strcmp(output, want) == 0)
		result = "{\"score\": 1, \"passed\": true, \"reason\": null}";
	else
		result = "{\"score\": 0, \"passed\": false, \"reason\": null}";
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(result)));
}
