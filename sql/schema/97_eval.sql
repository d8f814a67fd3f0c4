-- Evaluation: sets of labelled cases, runs of variants (a stored prompt
-- version or label with a model, or a model with a plain system prompt) over
-- them through the queue, one result row per case x variant x repeat, and
-- reports over those rows.

CREATE TABLE llm.eval_sets (
	name			text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
	description		text,
	owner			name NOT NULL,
	login_role		name NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE llm.eval_sets IS 'evaluation sets: named collections of labelled cases';

CREATE TABLE llm.eval_cases (
	set_name		text NOT NULL REFERENCES llm.eval_sets ON DELETE CASCADE,
	case_key		text NOT NULL,
	vars			jsonb CHECK (vars IS NULL OR jsonb_typeof(vars) = 'object'),
	input			text,
	expected		jsonb,
	tags			text[] NOT NULL DEFAULT '{}',
	weight			numeric NOT NULL DEFAULT 1 CHECK (weight >= 0),
	source			text,			-- e.g. 'training:<set>/<version>' for held-out examples
	created_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (set_name, case_key),
	CHECK (vars IS NOT NULL OR input IS NOT NULL)
);
COMMENT ON TABLE llm.eval_cases IS 'the cases of an evaluation set: what to ask (vars for a prompt, or input) and what is expected';

CREATE TABLE llm.eval_runs (
	id				bigserial PRIMARY KEY,
	set_name		text NOT NULL REFERENCES llm.eval_sets,
	variants		jsonb NOT NULL CHECK (jsonb_typeof(variants) = 'array'),	-- as given, checked
	repeats			integer NOT NULL DEFAULT 1 CHECK (repeats BETWEEN 1 AND 100),
	scorer			jsonb NOT NULL DEFAULT '{"type": "exact"}' CHECK (jsonb_typeof(scorer) = 'object'),
	options			jsonb CHECK (options IS NULL OR jsonb_typeof(options) = 'object'),
	tag				text NOT NULL UNIQUE,	-- the queue batch: 'eval-<id>'
	state			text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'cancelled')),
	submitted_by	name NOT NULL,
	login_role		name NOT NULL,
	cases			integer NOT NULL,		-- cases x variants x repeats requests queued
	requests		integer NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now(),
	finished_at		timestamptz
);
COMMENT ON TABLE llm.eval_runs IS 'evaluation runs: a set, its variants, repeats and scorer; progress is the queue batch tag';

CREATE TABLE llm.eval_results (
	run				bigint NOT NULL REFERENCES llm.eval_runs ON DELETE CASCADE,
	case_key		text NOT NULL,
	variant			text NOT NULL,
	repeat			integer NOT NULL,
	request_id		bigint,				-- llm.requests.id
	call_entry_id	text,				-- llm.calls.entry_id of the answer, when there was one
	output			text,
	output_json		jsonb,				-- the output parsed as JSON, when it is JSON
	score			double precision,	-- 0..1; NULL when there is no output
	passed			boolean,
	reason			text,				-- a judge's reason, or why the scorer gave 0
	input_tokens	bigint,
	output_tokens	bigint,
	cost_usd		numeric,
	judge_cost_usd	numeric,
	latency_ms		double precision,
	temperature		double precision,	-- what the request was sent with (NULL: the provider's default)
	seed			bigint,
	contaminated	boolean NOT NULL DEFAULT false,	-- the case's input is in the variant model's training set
	error			text,
	created_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (run, case_key, variant, repeat)
);
COMMENT ON TABLE llm.eval_results IS 'one row per case x variant x repeat of a run: output, score, tokens, cost, latency, error';

-- Scores one output: {"score": 0..1 or null, "passed": bool or null,
-- "reason": text or null}.  scorer is {"type": "exact" | "normalized" |
-- "contains" | "regex" | "json_valid" | "json_schema" | "json_match" |
-- "numeric" | "similarity", ...options}; "judge" and "function" scorers are
-- run by the evaluation itself (see llm_eval_run).
CREATE FUNCTION llm_eval_score(scorer jsonb, output text, expected jsonb, vars jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_eval_score'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION llm_eval_score(jsonb, text, jsonb, jsonb) IS
	'score one output against the expected answer: {"score", "passed", "reason"}';
REVOKE ALL ON FUNCTION llm_eval_score(jsonb, text, jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_eval_score(jsonb, text, jsonb, jsonb) TO llm_user;

-- Statistics of comparisons (src/core/stats.c), for llm_eval_compare and
-- for analysts: exact sign test and McNemar's exact test (p-values), the
-- percentile bootstrap 95 % interval of a mean difference (a fixed seed:
-- the same input gives the same interval), and a mean with its 95 %
-- Student's t interval.
CREATE FUNCTION llm.eval_sign_test(wins integer, losses integer)
RETURNS double precision
AS 'MODULE_PATHNAME', 'llm_eval_sign_test'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION llm.eval_sign_test(integer, integer) IS
	'exact two-sided sign test p-value of wins against losses (ties dropped)';

CREATE FUNCTION llm.eval_mcnemar(b integer, c integer)
RETURNS double precision
AS 'MODULE_PATHNAME', 'llm_eval_mcnemar'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION llm.eval_mcnemar(integer, integer) IS
	'McNemar''s exact test p-value of paired pass/fail: b passed with the first only, c with the second only';

CREATE FUNCTION llm.eval_bootstrap(diffs double precision[], resamples integer DEFAULT 2000)
RETURNS double precision[]
AS 'MODULE_PATHNAME', 'llm_eval_bootstrap'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION llm.eval_bootstrap(double precision[], integer) IS
	'percentile bootstrap 95 % interval {low, high} of the mean of paired differences (NULLs skipped; fixed seed)';

CREATE FUNCTION llm.eval_mean_interval(scores double precision[])
RETURNS double precision[]
AS 'MODULE_PATHNAME', 'llm_eval_mean_interval'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION llm.eval_mean_interval(double precision[]) IS
	'the mean of scores and its 95 % Student''s t interval: {mean, low, high} (NULLs skipped)';

REVOKE ALL ON FUNCTION llm.eval_sign_test(integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.eval_mcnemar(integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.eval_bootstrap(double precision[], integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.eval_mean_interval(double precision[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.eval_sign_test(integer, integer) TO llm_user;
GRANT EXECUTE ON FUNCTION llm.eval_mcnemar(integer, integer) TO llm_user;
GRANT EXECUTE ON FUNCTION llm.eval_bootstrap(double precision[], integer) TO llm_user;
GRANT EXECUTE ON FUNCTION llm.eval_mean_interval(double precision[]) TO llm_user;
