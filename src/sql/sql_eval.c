/*
 * sql_eval.c — the evaluation's C functions: llm_eval_score (one output
 * scored against the expected answer, core/score.c, the regex scorer with
 * the server's own regular expressions, and embedding_similarity with an
 * embedding request) and the statistics of
 * comparisons (core/stats.c): llm.eval_sign_test, llm.eval_mcnemar,
 * llm.eval_bootstrap, llm.eval_mean_interval, llm.eval_t975; and
 * llm._eval_output_json, an answer as jsonb when it is JSON.
 */
#include "llmext.h"

#include <math.h>

#include "call/call.h"
#include "core/json_checks.h"
#include "core/score.h"
#include "core/stats.h"
#include "store/caller.h"

#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "regex/regex.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

PG_FUNCTION_INFO_V1(llm_eval_score);
PG_FUNCTION_INFO_V1(llm_eval_score_for);
PG_FUNCTION_INFO_V1(llm_eval_sign_test);
PG_FUNCTION_INFO_V1(llm_eval_mcnemar);
PG_FUNCTION_INFO_V1(llm_eval_bootstrap);
PG_FUNCTION_INFO_V1(llm_eval_mean_interval);
PG_FUNCTION_INFO_V1(llm_eval_t975);
PG_FUNCTION_INFO_V1(llm_eval_output_json);

/* The regex scorer: the pattern (option "pattern", else the expected text) found in output. */
static void
score_regex(const LlmScorer *s, const char *output, const cJSON *expected, Oid collation,
			LlmScore *out)
{
	char	   *pattern;
	char		excerpt[80 + 4];
	bool		match;

	if (output == NULL)
	{
		llm_score_unknown(out, "no output");
		return;
	}
	if (s->pattern != NULL)
		pattern = pstrdup(s->pattern);
	else if (expected != NULL)
		pattern = llm_score_expected_text(expected);
	else
	{
		llm_score_unknown(out, "no expected answer");
		return;
	}
	/* an invalid pattern raises 2201B, as ~ does */
	match = RE_compile_and_execute(cstring_to_text(pattern), (char *) output, strlen(output),
								   REG_ADVANCED | (s->ignore_case ? REG_ICASE : 0),
								   OidIsValid(collation) ? collation : DEFAULT_COLLATION_OID,
								   0, NULL);
	if (match)
		llm_score_set(out, s, 1, NULL);
	else
		llm_score_set(out, s, 0, "no match for /%s/%s", llm_score_excerpt(excerpt, pattern, 80),
					  s->ignore_case ? "i" : "");
}

/*
 * The embedding model of an embedding_similarity scorer: it must exist
 * (42704) and be registered for embeddings (22023).  Checked before the
 * output is looked at, so that llm_eval_run can validate the scorer with a
 * NULL output, without a request.
 */
static void
check_embedding_model(const LlmScorer *s)
{
	LlmModel   *model = llm_lookup_model(s->model);

	if (strcmp(model->use, "embedding") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model \"%s\" of an embedding_similarity scorer is a %s model, not an embedding model",
						model->name, model->use),
				 errhint("Name a model registered with use => 'embedding'.")));
}

/*
 * The embedding_similarity scorer: one embedding request with both texts
 * (so one ledger row, and one cache entry for the pair), through the same
 * call path as llm_embed, then the cosine (core/similarity.c).  A failed
 * call raises its error: an evaluation records it as the result's error.
 */
static void
score_embedding(const LlmScorer *s, const char *output, const cJSON *expected, LlmScore *out)
{
	LlmCallRequest req = {0};
	LlmCallResult result;
	cJSON	   *inputs;
	char	   *want;

	if (output == NULL)
	{
		llm_score_unknown(out, "no output");
		return;
	}
	if (expected == NULL)
	{
		llm_score_unknown(out, "no expected answer");
		return;
	}
	want = llm_score_expected_text(expected);
	/* providers refuse empty inputs, and an empty text has no meaning to compare */
	if (output[0] == '\0' || want[0] == '\0')
	{
		if (output[0] == '\0' && want[0] == '\0')
			llm_score_set(out, s, 1, NULL);
		else
			llm_score_set(out, s, 0, output[0] == '\0' ? "the output is empty"
						  : "the expected answer is empty");
		return;
	}
	inputs = cJSON_CreateArray();
	cJSON_AddItemToArray(inputs, cJSON_CreateString(output));
	cJSON_AddItemToArray(inputs, cJSON_CreateString(want));
	req.model_name = s->model;
	req.inputs = inputs;
	req.keep_no_io = true;
	/* no "on_error": a failure raises, it never scores */
	llm_chat_call(&req, &result);
	if (result.embed.n != 2 || result.embed.dimensions < 1)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("model \"%s\" answered %d vectors for 2 inputs", s->model, result.embed.n)));
	llm_score_embedding(s, result.embed.vectors,
						result.embed.vectors + result.embed.dimensions,
						result.embed.dimensions, out);
}

/*
 * Scores one output: the arguments from first on are llm_eval_score's
 * (scorer, output, expected, vars).
 */
static Datum
eval_score(FunctionCallInfo fcinfo, int first)
{
	cJSON	   *scorer_json;
	char	   *output = PG_ARGISNULL(first + 1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(first + 1));
	cJSON	   *expected = PG_ARGISNULL(first + 2) ? NULL : llm_jsonb_to_cjson(PG_GETARG_DATUM(first + 2));
	cJSON	   *vars = PG_ARGISNULL(first + 3) ? NULL : llm_jsonb_to_cjson(PG_GETARG_DATUM(first + 3));
	LlmScorer	scorer;
	LlmScore	score;
	char		err[256];
	cJSON	   *result;

	if (PG_ARGISNULL(first))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("scorer must not be NULL"),
				 errhint("Pass a scorer such as '{\"type\": \"exact\"}'.")));
	scorer_json = llm_jsonb_to_cjson(PG_GETARG_DATUM(first));
	if (!llm_scorer_parse(scorer_json, &scorer, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", err),
				 errhint("Scorer types: " LLM_SCORER_TYPE_LIST
						 "; judge and function scorers are run by llm_eval_run.")));
	if (scorer.type == LLM_SCORER_REGEX)
		score_regex(&scorer, output, expected, PG_GET_COLLATION(), &score);
	else if (scorer.type == LLM_SCORER_EMBEDDING_SIMILARITY)
	{
		check_embedding_model(&scorer);
		score_embedding(&scorer, output, expected, &score);
	}
	else if (!llm_score_parsed(&scorer, output, expected, vars, &score, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", err)));

	result = cJSON_CreateObject();
	if (score.has_score)
	{
		char		number[32];

		/* 15 significant digits: 0.863636363636364, not ...36365 */
		snprintf(number, sizeof(number), "%.15g", score.score);
		cJSON_AddRawToObject(result, "score", number);
		cJSON_AddBoolToObject(result, "passed", score.passed);
	}
	else
	{
		cJSON_AddNullToObject(result, "score");
		cJSON_AddNullToObject(result, "passed");
	}
	if (score.reason[0] != '\0')
		cJSON_AddStringToObject(result, "reason", score.reason);
	else
		cJSON_AddNullToObject(result, "reason");
	return llm_cjson_to_jsonb(result);
}

/* llm_eval_score(scorer jsonb, output text, expected jsonb, vars jsonb) RETURNS jsonb */
Datum
llm_eval_score(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(eval_score(fcinfo, 0));
}

/*
 * llm._eval_score_for(submitter name, login name, scorer, output, expected,
 * vars) RETURNS jsonb: llm_eval_score acting for an evaluation run's roles.
 * The scorer process (a superuser) scores every run's answers; a scorer
 * that calls a model (embedding_similarity) must do so as the run's
 * submitter, so that the call is on their ledger and under their budgets
 * and limits, never the superuser's.  Executable by no role but the
 * extension's owner.
 */
Datum
llm_eval_score_for(PG_FUNCTION_ARGS)
{
	Oid			submitter;
	Oid			login;
	LlmActing	acting;
	Datum		volatile result = (Datum) 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the submitter must not be NULL")));
	submitter = get_role_oid(NameStr(*PG_GETARG_NAME(0)), false);
	login = PG_ARGISNULL(1) ? InvalidOid : get_role_oid(NameStr(*PG_GETARG_NAME(1)), true);
	llm_act_for(&acting, submitter, OidIsValid(login) ? login : submitter, 0);
	PG_TRY();
	{
		result = eval_score(fcinfo, 2);
	}
	PG_FINALLY();
	{
		llm_act_done(&acting);
	}
	PG_END_TRY();
	PG_RETURN_DATUM(result);
}

static int64
count_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	int32		n = PG_GETARG_INT32(argno);

	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", name)));
	return n;
}

/* llm.eval_sign_test(wins integer, losses integer) RETURNS double precision */
Datum
llm_eval_sign_test(PG_FUNCTION_ARGS)
{
	int64		wins = count_arg(fcinfo, 0, "wins");
	int64		losses = count_arg(fcinfo, 1, "losses");

	PG_RETURN_FLOAT8(llm_sign_test(wins, losses));
}

/* llm.eval_mcnemar(b integer, c integer) RETURNS double precision */
Datum
llm_eval_mcnemar(PG_FUNCTION_ARGS)
{
	int64		b = count_arg(fcinfo, 0, "b");
	int64		c = count_arg(fcinfo, 1, "c");

	PG_RETURN_FLOAT8(llm_mcnemar(b, c));
}

/* The array's non-NULL elements, each finite; *n their count. */
static double *
finite_values(ArrayType *array, const char *what, int *n)
{
	Datum	   *elements;
	bool	   *nulls;
	int			count;
	double	   *values;

	deconstruct_array(array, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elements, &nulls, &count);
	values = palloc(sizeof(double) * (count > 0 ? count : 1));
	*n = 0;
	for (int i = 0; i < count; i++)
	{
		double		v;

		if (nulls[i])
			continue;
		v = DatumGetFloat8(elements[i]);
		if (!isfinite(v))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must be finite numbers", what),
					 errdetail("Element %d is %g.", i + 1, v)));
		values[(*n)++] = v;
	}
	return values;
}

static Datum
float8_array(const double *values, const bool *nulls, int n)
{
	Datum	   *elements = palloc(sizeof(Datum) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
		elements[i] = Float8GetDatum(nulls[i] ? 0 : values[i]);
	return PointerGetDatum(construct_md_array(elements, (bool *) nulls, 1, dims, lbs, FLOAT8OID,
											  sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static void
check_interrupts(void)
{
	CHECK_FOR_INTERRUPTS();
}

/*
 * llm.eval_bootstrap(diffs double precision[], resamples integer DEFAULT 2000)
 * RETURNS double precision[]: {low, high}, NULLs for no values.
 */
Datum
llm_eval_bootstrap(PG_FUNCTION_ARGS)
{
	int			n;
	double	   *values = finite_values(PG_GETARG_ARRAYTYPE_P(0), "differences", &n);
	int32		resamples = PG_GETARG_INT32(1);
	double		bounds[2] = {0, 0};
	bool		nulls[2] = {true, true};

	if (resamples < 1 || resamples > LLM_BOOTSTRAP_MAX_RESAMPLES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("resamples must be between 1 and %d", LLM_BOOTSTRAP_MAX_RESAMPLES)));
	if (n > 0)
	{
		if (!llm_bootstrap_interval(values, n, resamples, &bounds[0], &bounds[1],
									check_interrupts))
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		nulls[0] = nulls[1] = false;
	}
	PG_RETURN_DATUM(float8_array(bounds, nulls, 2));
}

/*
 * llm.eval_mean_interval(scores double precision[]) RETURNS double
 * precision[]: {mean, low, high}; bounds NULL for one value, all NULL for none.
 */
Datum
llm_eval_mean_interval(PG_FUNCTION_ARGS)
{
	int			n;
	double	   *values = finite_values(PG_GETARG_ARRAYTYPE_P(0), "scores", &n);
	double		v[3] = {0, 0, 0};
	bool		nulls[3] = {true, true, true};

	if (llm_mean_interval(values, n, &v[0], &v[1], &v[2]))
	{
		nulls[0] = false;
		nulls[1] = nulls[2] = isnan(v[1]);
	}
	PG_RETURN_DATUM(float8_array(v, nulls, 3));
}

/* llm.eval_t975(df bigint) RETURNS double precision; NULL below 1. */
Datum
llm_eval_t975(PG_FUNCTION_ARGS)
{
	int64		df = PG_GETARG_INT64(0);

	if (df < 1)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(llm_t975(df));
}

/*
 * llm._eval_output_json(output text) RETURNS jsonb: the answer as jsonb, or
 * NULL when it is not JSON that jsonb holds.  Most answers are plain text
 * and are told apart by their first character or by cJSON; nesting deeper
 * than the parsers allow and \u0000 are refused before parsing; what is
 * left is parsed by jsonb_in in a subtransaction, whose errors (a number
 * numeric cannot hold, say) mean "not JSON".  Called for every answer an evaluation
 * records, in one statement: it must never fail it.
 */
Datum
llm_eval_output_json(PG_FUNCTION_ARGS)
{
	text	   *output = PG_GETARG_TEXT_PP(0);
	const char *p = VARDATA_ANY(output);
	const char *end = p + VARSIZE_ANY_EXHDR(output);
	char	   *cstring;
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Datum		volatile json = (Datum) 0;

	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	if (p == end || strchr("{[\"-0123456789tfn", *p) == NULL)
		PG_RETURN_NULL();
	cstring = text_to_cstring(output);
	if (llm_json_text_depth(cstring) > LLM_JSON_MAX_DEPTH ||
		llm_json_has_nul_escape(cstring, strlen(cstring)))
		PG_RETURN_NULL();
	{
		/* cJSON tells most text from JSON without a subtransaction */
		cJSON	   *parsed = cJSON_ParseWithLength(cstring, strlen(cstring));

		if (parsed == NULL)
			PG_RETURN_NULL();
		cJSON_Delete(parsed);
	}

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		json = DirectFunctionCall1(jsonb_in, CStringGetDatum(cstring));
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		json = (Datum) 0;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	CurrentResourceOwner = owner;
	if (json == (Datum) 0)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(json);
}
