-- Evaluation, third part: scoring one output, the statistics of
-- comparisons, and the reports over a run's results.

-- Scores one output: {"score": 0..1 or null, "passed": bool or null,
-- "reason": text or null}.  scorer is {"type": "exact" | "normalized" |
-- "contains" | "regex" | "json_valid" | "json_schema" | "json_match" |
-- "numeric" | "similarity" | "embedding_similarity", ...options}; "judge"
-- and "function" scorers are run by the evaluation itself (see
-- llm_eval_run).  Volatile: embedding_similarity calls an embedding model
-- (a request, a ledger row), which must happen once a call, as written.
CREATE FUNCTION llm_eval_score(scorer jsonb, output text, expected jsonb, vars jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_eval_score'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_score(jsonb, text, jsonb, jsonb) IS
	'score one output against the expected answer: {"score", "passed", "reason"}';
REVOKE ALL ON FUNCTION llm_eval_score(jsonb, text, jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_eval_score(jsonb, text, jsonb, jsonb) TO llm_user;

-- llm_eval_score acting for an evaluation run's submitter and login: what
-- the scorer process calls, so that a scorer that calls a model
-- (embedding_similarity) does so on the submitter's ledger and budgets.
CREATE FUNCTION llm._eval_score_for(submitter name, login name, scorer jsonb, output text,
									expected jsonb, vars jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_eval_score_for'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION llm._eval_score_for(name, name, jsonb, text, jsonb, jsonb) FROM PUBLIC;

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

-- The 97.5 % quantile of Student's t with df degrees of freedom.
CREATE FUNCTION llm.eval_t975(df bigint)
RETURNS double precision
AS 'MODULE_PATHNAME', 'llm_eval_t975'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION llm.eval_t975(bigint) IS
	'the 97.5 % quantile of Student''s t with df degrees of freedom (NULL below 1)';
REVOKE ALL ON FUNCTION llm.eval_t975(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.eval_t975(bigint) TO llm_user;

-- The mean of n values from their sum and sum of squares, with its 95 %
-- Student's t interval: {mean, low, high} (bounds NULL for one value).
CREATE FUNCTION llm._eval_mean_interval(n bigint, total numeric, squares numeric)
RETURNS double precision[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN coalesce(n, 0) < 1 THEN ARRAY[NULL, NULL, NULL]::double precision[]
				WHEN n = 1 THEN ARRAY[total::double precision, NULL, NULL]
				ELSE ARRAY[m, m - half, m + half] END
	  FROM (SELECT (total / nullif(n, 0))::double precision AS m,
				   CASE WHEN n > 1
						THEN llm.eval_t975(n - 1)
							 * sqrt(greatest((squares - total * total / n) / (n - 1), 0)::double precision / n)
				   END AS half) x
$$;
REVOKE ALL ON FUNCTION llm._eval_mean_interval(bigint, numeric, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._eval_mean_interval(bigint, numeric, numeric) TO llm_user;

-- The fraction-th latency of a run's variant (of n), interpolated as
-- percentile_cont does: two rows read from an index instead of a sort.
CREATE FUNCTION llm._eval_latency(run bigint, variant text, n bigint, fraction double precision)
RETURNS double precision
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN count(*) = 0 THEN NULL
				ELSE min(x.v) + (fraction * (n - 1) - floor(fraction * (n - 1))) * (max(x.v) - min(x.v)) END
	  FROM (SELECT res.latency_ms AS v
			  FROM llm.eval_results res
			 WHERE res.run = _eval_latency.run AND res.variant = _eval_latency.variant
			   AND res.latency_ms IS NOT NULL
			 ORDER BY res.latency_ms
			OFFSET floor(fraction * (greatest(n, 1) - 1))::bigint LIMIT 2) x
$$;
REVOKE ALL ON FUNCTION llm._eval_latency(bigint, text, bigint, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._eval_latency(bigint, text, bigint, double precision) TO llm_user;

-- Per run and variant, from the aggregates kept as answers are recorded
-- (llm.eval_variant_stats): a row per variant is read, not every result.
CREATE VIEW llm.eval_report WITH (security_invoker = true) AS
SELECT s.run, s.variant, s.cases, s.results, s.errors, s.pending,
	   i.mean[1] AS mean_score, i.mean[2] AS score_low, i.mean[3] AS score_high,
	   s.passed::numeric / nullif(s.pass_known, 0) AS pass_rate,
	   s.consistent_cases::double precision / nullif(s.repeated_cases, 0) AS consistency,
	   (s.agreement_sum / nullif(s.repeated_cases, 0))::double precision AS pairwise_agreement,
	   s.json_valid::numeric / nullif(s.answered, 0) AS json_valid_rate,
	   llm._eval_latency(s.run, s.variant, s.latencies, 0.5) AS latency_p50_ms,
	   llm._eval_latency(s.run, s.variant, s.latencies, 0.95) AS latency_p95_ms,
	   s.input_tokens / nullif(s.input_tokens_n, 0) AS input_tokens_per_case,
	   s.output_tokens / nullif(s.output_tokens_n, 0) AS output_tokens_per_case,
	   s.cost_answered / nullif(s.cost_answered_n, 0) AS cost_per_case,
	   s.cost_answered / nullif(s.cost_answered_n, 0) * 1000 AS cost_per_1000_cases,
	   CASE WHEN s.cost_n > 0 THEN s.cost_usd END AS cost_usd,
	   CASE WHEN s.judge_cost_n > 0 THEN s.judge_cost_usd END AS judge_cost_usd,
	   s.contaminated_cases,
	   (s.weighted_score_sum / nullif(s.weight_sum, 0))::double precision AS weighted_mean_score
  FROM llm.eval_variant_stats s,
	   LATERAL (SELECT llm._eval_mean_interval(s.scored_cases, s.score_sum, s.score_sumsq) AS mean) i;
COMMENT ON VIEW llm.eval_report IS
	'per run and variant: cases, errors, mean score with a 95% interval, pass rate, consistency, JSON validity, latency, tokens, cost, contamination';
GRANT SELECT ON llm.eval_report TO llm_user;

-- Paired per case (mean over repeats): a against b.
CREATE FUNCTION llm_eval_compare(run bigint, a text, b text)
RETURNS TABLE (cases bigint, wins bigint, ties bigint, losses bigint,
			   mean_diff double precision, diff_low double precision, diff_high double precision,
			   sign_test_p double precision, a_only_passed bigint, b_only_passed bigint,
			   mcnemar_p double precision, cost_diff_per_case numeric,
			   input_tokens_diff_per_case numeric, output_tokens_diff_per_case numeric,
			   latency_diff_ms double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	diffs double precision[];
	interval_ double precision[];
BEGIN
	IF run IS NULL OR a IS NULL OR b IS NULL THEN
		RAISE EXCEPTION 'the run and both variants must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT EXISTS (SELECT FROM llm.eval_runs r WHERE r.id = run) THEN
		RAISE EXCEPTION 'evaluation run % does not exist', run USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT EXISTS (SELECT FROM llm.eval_results res WHERE res.run = llm_eval_compare.run AND res.variant = a)
	   OR NOT EXISTS (SELECT FROM llm.eval_results res WHERE res.run = llm_eval_compare.run AND res.variant = b) THEN
		RAISE EXCEPTION 'run % has no results of variant "%" or "%"', run, a, b USING ERRCODE = 'undefined_object';
	END IF;
	RETURN QUERY
	WITH per_case AS (
		SELECT res.case_key, res.variant, avg(res.score) AS score,
			   avg(CASE WHEN res.passed THEN 1.0 ELSE 0.0 END) >= 0.5 AS passed,
			   avg(res.cost_usd) AS cost, avg(res.input_tokens) AS input_tokens,
			   avg(res.output_tokens) AS output_tokens, avg(res.latency_ms) AS latency
		  FROM llm.eval_results res
		 WHERE res.run = llm_eval_compare.run AND res.variant IN (a, b) AND res.score IS NOT NULL
		 GROUP BY res.case_key, res.variant),
	paired AS (
		SELECT x.score - y.score AS d, x.passed AS pa, y.passed AS pb,
			   x.cost - y.cost AS cost, x.input_tokens - y.input_tokens AS itok,
			   x.output_tokens - y.output_tokens AS otok, x.latency - y.latency AS lat
		  FROM per_case x JOIN per_case y ON x.case_key = y.case_key AND x.variant = a AND y.variant = b),
	summary AS (
		SELECT count(*) AS n,
			   count(*) FILTER (WHERE d > 0) AS w, count(*) FILTER (WHERE d = 0) AS t,
			   count(*) FILTER (WHERE d < 0) AS l, avg(d) AS mean_d, array_agg(d) AS ds,
			   count(*) FILTER (WHERE pa AND NOT pb) AS ab, count(*) FILTER (WHERE pb AND NOT pa) AS ba,
			   avg(cost) AS cost, avg(itok) AS itok, avg(otok) AS otok, avg(lat) AS lat
		  FROM paired)
	SELECT s.n, s.w, s.t, s.l, s.mean_d,
		   bs[1], bs[2],
		   CASE WHEN s.n > 0 THEN llm.eval_sign_test(s.w::integer, s.l::integer) END,
		   s.ab, s.ba,
		   CASE WHEN s.n > 0 THEN llm.eval_mcnemar(s.ab::integer, s.ba::integer) END,
		   s.cost, s.itok, s.otok, s.lat
	  FROM summary s,
		   LATERAL (SELECT CASE WHEN s.n > 0 THEN llm.eval_bootstrap(s.ds) END AS bs) b;
END
$$;
COMMENT ON FUNCTION llm_eval_compare(bigint, text, text) IS
	'variant a against b, paired per case: wins, ties, losses, mean difference with a bootstrap 95% interval, sign test, McNemar, cost, token and latency differences';

CREATE FUNCTION llm_eval_cases_diff(run bigint, a text, b text)
RETURNS TABLE (case_key text, input text, vars jsonb, expected jsonb,
			   a_score double precision, b_score double precision,
			   a_outputs text[], b_outputs text[])
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
	WITH per_case AS (
		SELECT res.case_key, res.variant, avg(res.score) AS score,
			   array_agg(res.output ORDER BY res.repeat) AS outputs
		  FROM llm.eval_results res
		 WHERE res.run = llm_eval_cases_diff.run AND res.variant IN (a, b)
		 GROUP BY res.case_key, res.variant)
	SELECT x.case_key, c.input, c.vars, c.expected, x.score, y.score, x.outputs, y.outputs
	  FROM per_case x
	  JOIN per_case y ON y.case_key = x.case_key AND y.variant = b
	  JOIN llm.eval_runs r ON r.id = llm_eval_cases_diff.run
	  JOIN llm.eval_cases c ON c.set_name = r.set_name AND c.case_key = x.case_key
	 WHERE x.variant = a AND x.score IS DISTINCT FROM y.score
	 ORDER BY x.case_key
$$;
COMMENT ON FUNCTION llm_eval_cases_diff(bigint, text, text) IS
	'the cases where two variants of a run score differently, with both outputs';

REVOKE ALL ON FUNCTION llm_eval_set_create(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_cases_add(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_cases_from_training(text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_run(text, jsonb, integer, jsonb, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_wait(bigint, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_compare(bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_cases_diff(bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_eval_set_create(text, text) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_cases_add(text, text) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_cases_from_training(text, text, integer) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_run(text, jsonb, integer, jsonb, jsonb) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_wait(bigint, interval) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_compare(bigint, text, text) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_cases_diff(bigint, text, text) TO llm_user;
