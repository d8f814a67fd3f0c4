-- Evaluation, second part: what an answer becomes.  The worker scores a
-- turn's answers in sets, in the transaction that writes them
-- (llm._eval_collect); a judge scorer's answers come back the same way;
-- a run ends when nothing of it is pending.  The report's aggregates are
-- kept per case and per variant by triggers on llm.eval_results, so that
-- llm.eval_report reads a row per variant instead of every result.
--
-- Who writes a run's results: llm_eval_run inserts them; while any of its
-- requests is queued or running only the worker changes them (and the
-- callback of a "function" scorer, which the worker runs); a session
-- changes them only to end a run the worker is done with.  So the rows and
-- aggregates of a running run are never locked by a session that a user
-- could keep open.

-- Per case of a run and variant (its repeats).
CREATE TABLE llm.eval_case_stats (
	run				bigint NOT NULL REFERENCES llm.eval_runs ON DELETE CASCADE,
	variant			text NOT NULL,
	case_key		text NOT NULL,
	weight			numeric NOT NULL,	-- the case's weight in its set
	results			integer NOT NULL,	-- result rows (repeats)
	answers			integer NOT NULL,	-- with an output
	scored			integer NOT NULL,	-- with a score
	mean_score		numeric,			-- the mean of its scores (15 decimals); NULL: none
	distinct_outputs integer NOT NULL,
	agreement		numeric,			-- share of pairs of answers that agree (15 decimals); NULL: fewer than 2
	contaminated	boolean NOT NULL,
	PRIMARY KEY (run, variant, case_key)
);
COMMENT ON TABLE llm.eval_case_stats IS 'per run, variant and case: its repeats summed up (kept by triggers on llm.eval_results)';

-- Per run and variant: sums of the rows, and of the per-case rows.
CREATE TABLE llm.eval_variant_stats (
	run				bigint NOT NULL REFERENCES llm.eval_runs ON DELETE CASCADE,
	variant			text NOT NULL,
	results			bigint NOT NULL DEFAULT 0,
	errors			bigint NOT NULL DEFAULT 0,
	pending			bigint NOT NULL DEFAULT 0,
	answered		bigint NOT NULL DEFAULT 0,	-- rows with an output
	passed			bigint NOT NULL DEFAULT 0,
	pass_known		bigint NOT NULL DEFAULT 0,	-- rows with passed not NULL
	json_valid		bigint NOT NULL DEFAULT 0,	-- answered rows whose output is JSON
	input_tokens	numeric NOT NULL DEFAULT 0,	-- of answered rows
	input_tokens_n	bigint NOT NULL DEFAULT 0,
	output_tokens	numeric NOT NULL DEFAULT 0,
	output_tokens_n	bigint NOT NULL DEFAULT 0,
	cost_answered	numeric NOT NULL DEFAULT 0,
	cost_answered_n	bigint NOT NULL DEFAULT 0,
	cost_usd		numeric NOT NULL DEFAULT 0,	-- of every row
	cost_n			bigint NOT NULL DEFAULT 0,
	judge_cost_usd	numeric NOT NULL DEFAULT 0,
	judge_cost_n	bigint NOT NULL DEFAULT 0,
	latencies		bigint NOT NULL DEFAULT 0,	-- rows with a latency (the percentiles' n)
	cases			bigint NOT NULL DEFAULT 0,
	scored_cases	bigint NOT NULL DEFAULT 0,
	score_sum		numeric NOT NULL DEFAULT 0,	-- of the cases' mean scores
	score_sumsq		numeric NOT NULL DEFAULT 0,
	weight_sum		numeric NOT NULL DEFAULT 0,	-- of scored cases
	weighted_score_sum numeric NOT NULL DEFAULT 0,
	repeated_cases	bigint NOT NULL DEFAULT 0,	-- cases with 2 answers or more
	consistent_cases bigint NOT NULL DEFAULT 0,	-- of those, all answers alike
	agreement_sum	numeric NOT NULL DEFAULT 0,
	contaminated_cases bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (run, variant)
);
COMMENT ON TABLE llm.eval_variant_stats IS 'per run and variant: the sums llm.eval_report is computed from (kept by triggers on llm.eval_results)';

-- Derived data: not dumped; restoring llm.eval_results fills them again.
ALTER TABLE llm.eval_case_stats ENABLE ROW LEVEL SECURITY;
CREATE POLICY eval_case_stats_own_rows ON llm.eval_case_stats FOR SELECT
	USING (run IN (SELECT r.id FROM llm.eval_runs r));
ALTER TABLE llm.eval_variant_stats ENABLE ROW LEVEL SECURITY;
CREATE POLICY eval_variant_stats_own_rows ON llm.eval_variant_stats FOR SELECT
	USING (run IN (SELECT r.id FROM llm.eval_runs r));
GRANT SELECT ON llm.eval_case_stats, llm.eval_variant_stats TO llm_user;

-- The latencies of a run and variant in order, for the report's percentiles.
CREATE INDEX eval_results_latency_idx ON llm.eval_results (run, variant, latency_ms)
	WHERE latency_ms IS NOT NULL;

-- The statement that applies changes of llm.eval_results to the
-- aggregates; changes is a query of (sign, the result row's columns): +1
-- for a row added, -1 for a row removed (an update is both).  The rows'
-- own sums change by their signs; each case touched is summed up again
-- from its rows, and its variant changes by the new case row less the old.
-- Exact: numeric sums of stored values, so that any order of changes ends
-- where summing up from scratch does.  One statement, planned for its sets
-- (a trigger's transition tables, or a whole run): a run's million rows
-- are joined, not looked up one case at a time.
CREATE FUNCTION llm._eval_stats_statement(changes text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $outer$
SELECT format($$
WITH d AS (
	SELECT x.* FROM (%s) x
	 WHERE x.run IN (SELECT r.id FROM llm.eval_runs r)),	-- a run being dropped takes its aggregates along
touched AS (
	SELECT DISTINCT d.run, d.variant, d.case_key FROM d),
-- each case touched, before and after: looked up by its keys (LATERAL ...
-- OFFSET 0), never joined by a plan that guesses a trigger's sets
cases AS (
	-- (old is a row of llm.eval_case_stats, NULL when the case is new: test
	-- (old).run, as a row with some NULL field is not IS NOT NULL)
	SELECT t.run, t.variant, t.case_key, b.old, c.*,
		   coalesce((b.old).weight,
					(SELECT ec.weight FROM llm.eval_cases ec
					  WHERE ec.set_name = (SELECT er.set_name FROM llm.eval_runs er WHERE er.id = t.run)
						AND ec.case_key = t.case_key),
					1) AS weight
	  FROM touched t
	  LEFT JOIN LATERAL (
		SELECT s AS old FROM llm.eval_case_stats s
		 WHERE s.run = t.run AND s.variant = t.variant AND s.case_key = t.case_key OFFSET 0) b ON true
	 CROSS JOIN LATERAL (
		SELECT sum(o.n)::integer AS results,
			   coalesce(sum(o.n) FILTER (WHERE o.output IS NOT NULL), 0)::integer AS answers,
			   sum(o.scored)::integer AS scored,
			   round(sum(o.score_sum) / nullif(sum(o.scored), 0), 15) AS mean_score,
			   count(*) FILTER (WHERE o.output IS NOT NULL)::integer AS distinct_outputs,
			   coalesce(sum(o.n * (o.n - 1) / 2) FILTER (WHERE o.output IS NOT NULL), 0) AS agreeing_pairs,
			   bool_or(o.contaminated) AS contaminated
		  FROM (SELECT res.output, count(*) AS n, count(res.score) AS scored,
					   sum(res.score::numeric) AS score_sum, bool_or(res.contaminated) AS contaminated
				  FROM llm.eval_results res
				 WHERE res.run = t.run AND res.case_key = t.case_key AND res.variant = t.variant
				 GROUP BY res.output) o) c),
after AS (	-- the cases that still have rows
	SELECT c.run, c.variant, c.case_key, c.weight, c.results, c.answers, c.scored, c.mean_score,
		   c.distinct_outputs,
		   CASE WHEN c.answers >= 2
				THEN round(c.agreeing_pairs::numeric / (c.answers * (c.answers - 1) / 2), 15) END AS agreement,
		   c.contaminated
	  FROM cases c WHERE c.results > 0),
kept AS (
	INSERT INTO llm.eval_case_stats AS c
	SELECT a.* FROM after a ORDER BY a.run, a.variant, a.case_key
	ON CONFLICT (run, variant, case_key) DO UPDATE
	   SET weight = excluded.weight, results = excluded.results, answers = excluded.answers,
		   scored = excluded.scored, mean_score = excluded.mean_score,
		   distinct_outputs = excluded.distinct_outputs, agreement = excluded.agreement,
		   contaminated = excluded.contaminated
	RETURNING 1),
gone AS (
	DELETE FROM llm.eval_case_stats s
	 USING cases c
	 WHERE c.results IS NULL AND (c.old).run IS NOT NULL
	   AND s.run = c.run AND s.variant = c.variant AND s.case_key = c.case_key
	RETURNING 1),
row_delta AS (
	SELECT d.run, d.variant, sum(d.sign) AS results,
		   sum(CASE WHEN d.error IS NOT NULL THEN d.sign ELSE 0 END) AS errors,
		   sum(CASE WHEN d.scored_at IS NULL THEN d.sign ELSE 0 END) AS pending,
		   sum(CASE WHEN d.output IS NOT NULL THEN d.sign ELSE 0 END) AS answered,
		   sum(CASE WHEN d.passed THEN d.sign ELSE 0 END) AS passed,
		   sum(CASE WHEN d.passed IS NOT NULL THEN d.sign ELSE 0 END) AS pass_known,
		   sum(CASE WHEN d.output IS NOT NULL AND d.output_json IS NOT NULL THEN d.sign ELSE 0 END) AS json_valid,
		   coalesce(sum(d.sign * d.input_tokens) FILTER (WHERE d.output IS NOT NULL), 0) AS input_tokens,
		   sum(CASE WHEN d.output IS NOT NULL AND d.input_tokens IS NOT NULL THEN d.sign ELSE 0 END) AS input_tokens_n,
		   coalesce(sum(d.sign * d.output_tokens) FILTER (WHERE d.output IS NOT NULL), 0) AS output_tokens,
		   sum(CASE WHEN d.output IS NOT NULL AND d.output_tokens IS NOT NULL THEN d.sign ELSE 0 END) AS output_tokens_n,
		   coalesce(sum(d.sign * d.cost_usd) FILTER (WHERE d.output IS NOT NULL), 0) AS cost_answered,
		   sum(CASE WHEN d.output IS NOT NULL AND d.cost_usd IS NOT NULL THEN d.sign ELSE 0 END) AS cost_answered_n,
		   coalesce(sum(d.sign * d.cost_usd), 0) AS cost_usd,
		   sum(CASE WHEN d.cost_usd IS NOT NULL THEN d.sign ELSE 0 END) AS cost_n,
		   coalesce(sum(d.sign * d.judge_cost_usd), 0) AS judge_cost_usd,
		   sum(CASE WHEN d.judge_cost_usd IS NOT NULL THEN d.sign ELSE 0 END) AS judge_cost_n,
		   sum(CASE WHEN d.latency_ms IS NOT NULL THEN d.sign ELSE 0 END) AS latencies
	  FROM d GROUP BY d.run, d.variant),
case_delta AS (
	SELECT x.run, x.variant, sum(x.sign) AS cases,
		   sum(CASE WHEN x.mean_score IS NOT NULL THEN x.sign ELSE 0 END) AS scored_cases,
		   coalesce(sum(x.sign * x.mean_score), 0) AS score_sum,
		   coalesce(sum(x.sign * x.mean_score * x.mean_score), 0) AS score_sumsq,
		   coalesce(sum(x.sign * x.weight) FILTER (WHERE x.mean_score IS NOT NULL), 0) AS weight_sum,
		   coalesce(sum(x.sign * x.weight * x.mean_score), 0) AS weighted_score_sum,
		   sum(CASE WHEN x.answers >= 2 THEN x.sign ELSE 0 END) AS repeated_cases,
		   sum(CASE WHEN x.answers >= 2 AND x.distinct_outputs = 1 THEN x.sign ELSE 0 END) AS consistent_cases,
		   coalesce(sum(x.sign * x.agreement), 0) AS agreement_sum,
		   sum(CASE WHEN x.contaminated THEN x.sign ELSE 0 END) AS contaminated_cases
	  FROM (SELECT 1 AS sign, a.* FROM after a
			UNION ALL
			SELECT -1, (c.old).* FROM cases c WHERE (c.old).run IS NOT NULL) x
	 GROUP BY x.run, x.variant)
INSERT INTO llm.eval_variant_stats AS s
SELECT coalesce(r.run, c.run), coalesce(r.variant, c.variant),
	   coalesce(r.results, 0), coalesce(r.errors, 0), coalesce(r.pending, 0), coalesce(r.answered, 0),
	   coalesce(r.passed, 0), coalesce(r.pass_known, 0), coalesce(r.json_valid, 0),
	   coalesce(r.input_tokens, 0), coalesce(r.input_tokens_n, 0),
	   coalesce(r.output_tokens, 0), coalesce(r.output_tokens_n, 0),
	   coalesce(r.cost_answered, 0), coalesce(r.cost_answered_n, 0),
	   coalesce(r.cost_usd, 0), coalesce(r.cost_n, 0), coalesce(r.judge_cost_usd, 0),
	   coalesce(r.judge_cost_n, 0), coalesce(r.latencies, 0),
	   coalesce(c.cases, 0), coalesce(c.scored_cases, 0), coalesce(c.score_sum, 0),
	   coalesce(c.score_sumsq, 0), coalesce(c.weight_sum, 0), coalesce(c.weighted_score_sum, 0),
	   coalesce(c.repeated_cases, 0), coalesce(c.consistent_cases, 0), coalesce(c.agreement_sum, 0),
	   coalesce(c.contaminated_cases, 0)
  FROM row_delta r FULL JOIN case_delta c USING (run, variant)
 ORDER BY 1, 2
ON CONFLICT (run, variant) DO UPDATE
   SET results = s.results + excluded.results, errors = s.errors + excluded.errors,
	   pending = s.pending + excluded.pending, answered = s.answered + excluded.answered,
	   passed = s.passed + excluded.passed, pass_known = s.pass_known + excluded.pass_known,
	   json_valid = s.json_valid + excluded.json_valid,
	   input_tokens = s.input_tokens + excluded.input_tokens,
	   input_tokens_n = s.input_tokens_n + excluded.input_tokens_n,
	   output_tokens = s.output_tokens + excluded.output_tokens,
	   output_tokens_n = s.output_tokens_n + excluded.output_tokens_n,
	   cost_answered = s.cost_answered + excluded.cost_answered,
	   cost_answered_n = s.cost_answered_n + excluded.cost_answered_n,
	   cost_usd = s.cost_usd + excluded.cost_usd, cost_n = s.cost_n + excluded.cost_n,
	   judge_cost_usd = s.judge_cost_usd + excluded.judge_cost_usd,
	   judge_cost_n = s.judge_cost_n + excluded.judge_cost_n,
	   latencies = s.latencies + excluded.latencies,
	   cases = s.cases + excluded.cases, scored_cases = s.scored_cases + excluded.scored_cases,
	   score_sum = s.score_sum + excluded.score_sum, score_sumsq = s.score_sumsq + excluded.score_sumsq,
	   weight_sum = s.weight_sum + excluded.weight_sum,
	   weighted_score_sum = s.weighted_score_sum + excluded.weighted_score_sum,
	   repeated_cases = s.repeated_cases + excluded.repeated_cases,
	   consistent_cases = s.consistent_cases + excluded.consistent_cases,
	   agreement_sum = s.agreement_sum + excluded.agreement_sum,
	   contaminated_cases = s.contaminated_cases + excluded.contaminated_cases
$$, changes)
$outer$;
REVOKE ALL ON FUNCTION llm._eval_stats_statement(text) FROM PUBLIC;

-- A trigger may name transition tables for one event only: three triggers,
-- one function, which sees its transition tables in what it EXECUTEs.
CREATE FUNCTION llm._eval_results_changed()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- a statement that changed no row (the worker's turn had no judge's verdict, say)
	IF TG_OP = 'INSERT' THEN
		IF NOT EXISTS (SELECT FROM new_rows) THEN
			RETURN NULL;
		END IF;
	ELSIF NOT EXISTS (SELECT FROM old_rows) THEN
		RETURN NULL;
	END IF;
	EXECUTE llm._eval_stats_statement(CASE TG_OP
		WHEN 'INSERT' THEN 'SELECT 1 AS sign, n.* FROM new_rows n'
		WHEN 'UPDATE' THEN 'SELECT 1 AS sign, n.* FROM new_rows n UNION ALL SELECT -1, o.* FROM old_rows o'
		ELSE 'SELECT -1 AS sign, o.* FROM old_rows o' END);
	-- a variant whose rows are all gone
	IF TG_OP = 'DELETE' THEN
		DELETE FROM llm.eval_variant_stats s WHERE s.results = 0;
	END IF;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_results_changed() FROM PUBLIC;
CREATE TRIGGER eval_results_added AFTER INSERT ON llm.eval_results
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION llm._eval_results_changed();
CREATE TRIGGER eval_results_changed AFTER UPDATE ON llm.eval_results
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION llm._eval_results_changed();
CREATE TRIGGER eval_results_removed AFTER DELETE ON llm.eval_results
	REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION llm._eval_results_changed();

-- Sums a run's aggregates up again from its rows (after an upgrade, or to
-- check them): the number of variants.
CREATE FUNCTION llm._eval_stats_rebuild(run_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	DELETE FROM llm.eval_case_stats c WHERE c.run = run_id;
	DELETE FROM llm.eval_variant_stats s WHERE s.run = run_id;
	EXECUTE llm._eval_stats_statement(format(
		'SELECT 1 AS sign, r.* FROM llm.eval_results r WHERE r.run = %s', run_id));
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_stats_rebuild(bigint) FROM PUBLIC;

-- An answer as JSON, or NULL when it is not JSON that jsonb can hold.
CREATE FUNCTION llm._eval_output_json(output text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_eval_output_json'
LANGUAGE C IMMUTABLE STRICT;
REVOKE ALL ON FUNCTION llm._eval_output_json(text) FROM PUBLIC;

-- Queues the judge of one answer (scorer "judge") with the run's tag: the
-- stored prompt, at the version fixed when the run was queued, rendered
-- with the case, the expected answer and the output.
CREATE FUNCTION llm._eval_judge_enqueue(run llm.eval_runs, c llm.eval_cases, output text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	rendered jsonb;
BEGIN
	rendered := @extschema@.llm_render(run.scorer ->> 'prompt',
		coalesce(c.vars, '{}')
		|| jsonb_build_object('input', coalesce(c.input, c.vars ->> 'input', ''),
							  'expected', CASE WHEN jsonb_typeof(c.expected) = 'string'
											   THEN c.expected #>> '{}'
											   ELSE coalesce(c.expected::text, '') END,
							  'output', output),
		(run.scorer ->> 'version')::integer, NULL, NULL);
	RETURN llm._enqueue(run.submitted_by, run.login_role, run.scorer ->> 'model', rendered -> 'messages',
		coalesce(rendered -> 'params', '{}')
		|| CASE WHEN jsonb_typeof(rendered -> 'response_format') = 'object'
				THEN jsonb_build_object('response_format', rendered -> 'response_format')
				ELSE '{}' END
		|| '{"cache": "off"}',
		run.tag, 0, NULL, rendered ->> 'prompt', (rendered ->> 'version')::integer);
END
$$;
REVOKE ALL ON FUNCTION llm._eval_judge_enqueue(llm.eval_runs, llm.eval_cases, text) FROM PUBLIC;

-- Records the answers to the requests ids into their result rows, in sets:
-- answers scored (or their judges queued), failed requests as errors, and
-- judges' verdicts checked against {"score": 0..1, "reason": text}.
-- Called by the worker with the evaluation requests it has written (a set
-- every moment); by the callback of a "function" scorer with its score
-- (by_function); and at the worker's start for what its predecessor left
-- (callbacks_lost).  A row whose request was cancelled is left for the
-- run's end.  Ends the runs it completed.  The number of rows recorded.
CREATE FUNCTION llm._eval_collect(ids bigint[], function_score double precision DEFAULT NULL,
								  function_error text DEFAULT NULL, by_function boolean DEFAULT false,
								  callbacks_lost boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	answered bigint[];
	judged bigint[];
	run_id bigint;
BEGIN
	-- Each row looked up from its id (LATERAL ... OFFSET 0 fixes the order):
	-- a plan that starts from the run's pending rows, which the planner
	-- guesses few while a new run's statistics are not yet gathered, reads
	-- every case of the run for every answer.
	WITH answer AS (
		SELECT res.run, res.case_key, res.variant, res.repeat, q.state, q.completion, q.response,
			   q.cost_usd, er.run_row, ec.case_row,
			   CASE WHEN q.state = 'error' THEN coalesce(q.error, 'the request failed')
					WHEN (er.run_row).scorer ->> 'type' = 'function' AND NOT by_function
					THEN 'the scorer failed: '
						 || coalesce(q.callback_error, 'its callback was lost when the worker stopped')
			   END AS failure
		  FROM unnest(ids) AS i(id)
		 CROSS JOIN LATERAL (SELECT * FROM llm.eval_results r WHERE r.request_id = i.id OFFSET 0) res
		 CROSS JOIN LATERAL (SELECT * FROM llm.requests r WHERE r.id = i.id OFFSET 0) q
		 CROSS JOIN LATERAL (SELECT r AS run_row FROM llm.eval_runs r WHERE r.id = res.run OFFSET 0) er
		 CROSS JOIN LATERAL (SELECT c AS case_row FROM llm.eval_cases c
							  WHERE c.set_name = (er.run_row).set_name AND c.case_key = res.case_key OFFSET 0) ec
		 WHERE res.scored_at IS NULL AND res.judge_request_id IS NULL
		   AND (q.state = 'error'
				OR (q.state = 'done'
					AND ((er.run_row).scorer ->> 'type' <> 'function' OR by_function
						 OR q.callback_error IS NOT NULL OR callbacks_lost)))),
	scored AS (
		SELECT a.*,
			   CASE WHEN a.failure IS NOT NULL OR a.completion IS NULL OR (a.run_row).scorer ->> 'type' = 'judge'
					THEN NULL
					WHEN (a.run_row).scorer ->> 'type' = 'function'
					THEN jsonb_build_object('score', CASE WHEN function_score IS NOT NULL
														  THEN least(greatest(function_score, 0), 1) END,
											'passed', function_score
													  >= coalesce(((a.run_row).scorer ->> 'threshold')::double precision, 0.5))
					ELSE llm._eval_score_for((a.run_row).submitted_by, (a.run_row).login_role,
						(a.run_row).scorer, a.completion, (a.case_row).expected,
						coalesce((a.case_row).vars, '{}')
						|| CASE WHEN (a.case_row).input IS NOT NULL
								THEN jsonb_build_object('input', (a.case_row).input) ELSE '{}' END)
			   END AS verdict,
			   CASE WHEN a.failure IS NULL AND a.completion IS NOT NULL
						 AND (a.run_row).scorer ->> 'type' = 'judge'
					THEN llm._eval_judge_enqueue(a.run_row, a.case_row, a.completion)
			   END AS judge_id
		  FROM answer a),
	written AS (
		UPDATE llm.eval_results res
		   SET output = s.completion, output_json = llm._eval_output_json(s.completion),
			   score = (s.verdict ->> 'score')::double precision,
			   passed = (s.verdict ->> 'passed')::boolean,
			   reason = CASE WHEN s.failure IS NULL AND s.completion IS NULL AND s.state = 'done'
							 THEN 'no output' ELSE s.verdict ->> 'reason' END,
			   error = CASE WHEN s.failure IS NOT NULL THEN s.failure
							WHEN (s.run_row).scorer ->> 'type' = 'function' AND function_error IS NOT NULL
							THEN 'the scorer failed: ' || function_error END,
			   input_tokens = (s.response -> 'usage' ->> 'input_tokens')::numeric::bigint,
			   output_tokens = (s.response -> 'usage' ->> 'output_tokens')::numeric::bigint,
			   cost_usd = coalesce(s.cost_usd, (s.response ->> 'cost_usd')::numeric),
			   latency_ms = (s.response ->> 'latency_ms')::double precision,
			   call_entry_id = s.response ->> 'entry_id',
			   judge_request_id = s.judge_id,
			   scored_at = CASE WHEN s.judge_id IS NULL THEN now() END
		  FROM scored s
		 WHERE res.run = s.run AND res.case_key = s.case_key AND res.variant = s.variant
		   AND res.repeat = s.repeat AND res.scored_at IS NULL
		RETURNING res.run)
	SELECT array_agg(w.run) INTO answered FROM written w;

	-- judges' verdicts (and judges that failed)
	WITH verdict AS (
		SELECT res.run, res.case_key, res.variant, res.repeat, q.state, q.error, q.completion,
			   coalesce(q.cost_usd, (q.response ->> 'cost_usd')::numeric) AS cost,
			   llm._eval_output_json(q.completion) AS parsed,
			   coalesce((run.scorer ->> 'threshold')::double precision, 0.5) AS threshold
		  FROM unnest(ids) AS i(id)
		 CROSS JOIN LATERAL (SELECT * FROM llm.eval_results r WHERE r.judge_request_id = i.id OFFSET 0) res
		 CROSS JOIN LATERAL (SELECT * FROM llm.requests r WHERE r.id = i.id OFFSET 0) q
		 CROSS JOIN LATERAL (SELECT * FROM llm.eval_runs r WHERE r.id = res.run OFFSET 0) run
		 WHERE res.scored_at IS NULL AND q.state IN ('done', 'error')),
	checked AS (
		SELECT v.*,
			   CASE WHEN v.state <> 'done' OR jsonb_typeof(v.parsed) IS DISTINCT FROM 'object'
						 OR jsonb_typeof(v.parsed -> 'score') IS DISTINCT FROM 'number'
						 OR jsonb_typeof(v.parsed -> 'reason') IS DISTINCT FROM 'string' THEN false
					ELSE (v.parsed ->> 'score')::numeric BETWEEN 0 AND 1
			   END AS valid
		  FROM verdict v),
	written AS (
		UPDATE llm.eval_results res
		   SET score = CASE WHEN j.valid THEN (j.parsed ->> 'score')::double precision END,
			   passed = CASE WHEN j.valid THEN (j.parsed ->> 'score')::double precision >= j.threshold END,
			   reason = CASE WHEN j.valid THEN j.parsed ->> 'reason' END,
			   error = CASE WHEN j.valid THEN NULL
							WHEN j.state = 'error' THEN 'the judge failed: ' || coalesce(j.error, 'the request failed')
							WHEN j.parsed IS NULL
							THEN 'the judge''s answer is not JSON: ' || coalesce(left(j.completion, 200), '(none)')
							ELSE 'the judge''s answer is not {"score": 0..1, "reason": text}: '
								 || left(j.parsed::text, 200) END,
			   judge_cost_usd = j.cost, scored_at = now()
		  FROM checked j
		 WHERE res.run = j.run AND res.case_key = j.case_key AND res.variant = j.variant
		   AND res.repeat = j.repeat AND res.scored_at IS NULL
		RETURNING res.run)
	SELECT array_agg(w.run) INTO judged FROM written w;

	FOR run_id IN SELECT DISTINCT x FROM unnest(answered || judged) x ORDER BY x LOOP
		PERFORM llm._eval_try_end(run_id, false);
	END LOOP;
	RETURN coalesce(cardinality(answered), 0) + coalesce(cardinality(judged), 0);
END
$$;
REVOKE ALL ON FUNCTION llm._eval_collect(bigint[], double precision, text, boolean, boolean) FROM PUBLIC;

-- At the worker's start: the answers its predecessor wrote and did not score
-- (it scores them a moment after writing them), and those of a function
-- scorer whose callback it never ran.
CREATE FUNCTION llm._eval_recover()
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(sum(llm._eval_collect(ARRAY(
			SELECT coalesce(res.judge_request_id, res.request_id)
			  FROM llm.eval_results res
			  JOIN llm.requests q ON q.id = coalesce(res.judge_request_id, res.request_id)
			 WHERE res.run = r.id AND res.scored_at IS NULL AND q.state IN ('done', 'error')),
		callbacks_lost => true)), 0)::integer
	  FROM llm.eval_runs r
	 WHERE r.state = 'running'
$$;
REVOKE ALL ON FUNCTION llm._eval_recover() FROM PUBLIC;

-- When scoring a request's answer fails even alone (an expected answer that
-- is not a valid regular expression, a judge's budget spent...), the worker
-- records why on its row, which then counts as an error, never as pending.
CREATE FUNCTION llm._eval_collect_failed(id bigint, message text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	run_id bigint;
BEGIN
	UPDATE llm.eval_results res
	   SET output = CASE WHEN res.request_id = _eval_collect_failed.id THEN q.completion ELSE res.output END,
		   cost_usd = CASE WHEN res.request_id = _eval_collect_failed.id THEN q.cost_usd ELSE res.cost_usd END,
		   judge_cost_usd = CASE WHEN res.judge_request_id = _eval_collect_failed.id
								 THEN q.cost_usd ELSE res.judge_cost_usd END,
		   error = 'scoring failed: ' || message, scored_at = now()
	  FROM llm.requests q
	 WHERE q.id = _eval_collect_failed.id AND q.state IN ('done', 'error')
	   AND (res.request_id = _eval_collect_failed.id OR res.judge_request_id = _eval_collect_failed.id)
	   AND res.scored_at IS NULL
	RETURNING res.run INTO run_id;
	IF run_id IS NOT NULL THEN
		PERFORM llm._eval_try_end(run_id, false);
	END IF;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_collect_failed(bigint, text) FROM PUBLIC;

-- Ends a run when nothing of it is pending: 'done', or 'cancelled' when a
-- request of it was.  A run with requests cancelled ends once the worker
-- is done with it (nothing queued or running, no answer written and not
-- yet scored): then its rows whose requests were cancelled are removed, a
-- judge cancelled is recorded as the result's error, and a row whose
-- request is gone (purged) as having no answer.  The worker asks after
-- scoring (look_everywhere false: it probes the tag's requests only when
-- some were cancelled); llm_eval_wait on every poll.  Never waits on a
-- lock: a run row locked by another session is being ended by it.
CREATE FUNCTION llm._eval_try_end(run_id bigint, look_everywhere boolean)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	run llm.eval_runs;
	pending bigint;
	cancelled boolean;
BEGIN
	SELECT * INTO run FROM llm.eval_runs r WHERE r.id = run_id;
	IF NOT FOUND OR run.state <> 'running' THEN
		RETURN run.state;
	END IF;
	SELECT coalesce(sum(s.pending), 0) INTO pending FROM llm.eval_variant_stats s WHERE s.run = run_id;
	cancelled := EXISTS (SELECT FROM llm.requests q WHERE q.tag = run.tag AND q.state = 'cancelled');
	IF pending > 0 THEN
		IF NOT (look_everywhere OR cancelled)
		   OR EXISTS (SELECT FROM llm.requests q WHERE q.tag = run.tag AND q.state IN ('queued', 'running'))
		   -- answers the worker has written and scores a moment later (or a callback still to run)
		   OR EXISTS (SELECT FROM llm.eval_results res
						JOIN llm.requests q ON q.id = coalesce(res.judge_request_id, res.request_id)
					   WHERE res.run = run_id AND res.scored_at IS NULL AND q.state IN ('done', 'error')) THEN
			RETURN 'running';
		END IF;
	END IF;
	PERFORM FROM llm.eval_runs r WHERE r.id = run_id AND r.state = 'running' FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN
		RETURN 'running';
	END IF;
	IF pending > 0 THEN
		-- the worker is done with this run: what is left pending was cancelled
		DELETE FROM llm.eval_results res
		 USING llm.requests q
		 WHERE res.run = run_id AND res.scored_at IS NULL AND res.judge_request_id IS NULL
		   AND q.id = res.request_id AND q.state = 'cancelled';
		UPDATE llm.eval_results res
		   SET error = CASE WHEN EXISTS (SELECT FROM llm.requests q
										  WHERE q.id = coalesce(res.judge_request_id, res.request_id))
							THEN 'the judge was cancelled'
							ELSE 'no answer: the request is gone' END,
			   scored_at = now()
		 WHERE res.run = run_id AND res.scored_at IS NULL;
	END IF;
	UPDATE llm.eval_runs r
	   SET state = CASE WHEN cancelled THEN 'cancelled' ELSE 'done' END, finished_at = now()
	 WHERE r.id = run_id
	RETURNING r.state INTO run.state;
	RETURN run.state;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_try_end(bigint, boolean) FROM PUBLIC;

-- The callback of a "function" scorer's requests, run by the worker as the
-- submitter.  It reads the answer from llm.requests (never from its
-- argument), runs the scorer with the submitter's rights, and has
-- llm.llm_eval_record write the row.  Harmless: it only scores requests of
-- the caller's own runs, from their stored answers.  (Requests queued by
-- llmext 0.3.0 carry it whatever their scorer.)
CREATE FUNCTION llm.eval_collect(request_id bigint, result jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
	r record;
	fscore double precision;
	ferror text;
	call text;
BEGIN
	-- from the one result row (by its request, an index): a plan that starts
	-- from the run would walk all its cases for every answer
	WITH res AS MATERIALIZED (
		SELECT * FROM llm.eval_results res WHERE res.request_id = eval_collect.request_id)
	SELECT run.scorer, c.expected, c.vars, c.input, q.completion
	  INTO r
	  FROM res
	  JOIN llm.eval_runs run ON run.id = res.run
	  JOIN llm.eval_cases c ON c.set_name = run.set_name AND c.case_key = res.case_key
	  JOIN llm.requests q ON q.id = res.request_id
	 WHERE res.request_id = eval_collect.request_id AND res.scored_at IS NULL AND q.state = 'done';
	IF NOT FOUND OR r.scorer ->> 'type' <> 'function' THEN
		PERFORM llm.llm_eval_record(request_id, NULL, NULL);
		RETURN;
	END IF;
	IF r.completion IS NOT NULL THEN
		SELECT pg_catalog.format('SELECT %I.%I($1, $2, $3)::double precision', n.nspname, p.proname)
		  INTO call
		  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		 WHERE p.oid = (r.scorer ->> 'function')::pg_catalog.regprocedure;
		BEGIN
			EXECUTE call
			   INTO fscore
			  USING r.completion, r.expected,
					COALESCE(r.vars, '{}'::jsonb)
					|| CASE WHEN r.input IS NOT NULL THEN pg_catalog.jsonb_build_object('input', r.input)
							ELSE '{}'::jsonb END;
			IF fscore IS NULL THEN
				ferror := 'it returned NULL';
			END IF;
		EXCEPTION WHEN OTHERS THEN
			fscore := NULL;
			ferror := SQLERRM;
		END;
	END IF;
	PERFORM llm.llm_eval_record(request_id, fscore, ferror);
END
$$;
COMMENT ON FUNCTION llm.eval_collect(bigint, jsonb) IS
	'the callback of a function scorer''s evaluation requests: scores the answer into its llm.eval_results row';
REVOKE ALL ON FUNCTION llm.eval_collect(bigint, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.eval_collect(bigint, jsonb) TO llm_user;

CREATE FUNCTION llm.llm_eval_record(request_id bigint, function_score double precision,
									function_error text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;

-- Records the answer to one request of the caller's own runs (a function
-- scorer's score given), as the worker does for the others.
CREATE FUNCTION llm._eval_record(caller name, login name, request_id bigint,
								 function_score double precision, function_error text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM llm.eval_results res JOIN llm.eval_runs run ON run.id = res.run
					WHERE res.request_id = _eval_record.request_id AND res.scored_at IS NULL
					  AND run.submitted_by = caller AND (run.login_role = login OR caller = login))
	   AND NOT EXISTS (SELECT FROM llm.eval_results res JOIN llm.eval_runs run ON run.id = res.run
						WHERE res.judge_request_id = _eval_record.request_id AND res.scored_at IS NULL
						  AND run.submitted_by = caller AND (run.login_role = login OR caller = login)) THEN
		RETURN false;
	END IF;
	RETURN llm._eval_collect(ARRAY[request_id], function_score, function_error, true) > 0;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_record(name, name, bigint, double precision, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.llm_eval_record(bigint, double precision, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.llm_eval_record(bigint, double precision, text) TO llm_user;

CREATE FUNCTION llm_eval_wait(run bigint, timeout interval DEFAULT '5 minutes')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_wait(bigint, interval) IS
	'wait until an evaluation run has ended (or the timeout passes): its state and counts';

CREATE FUNCTION llm._eval_wait(caller name, login name, run bigint, timeout interval)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	give_up timestamptz := clock_timestamp() + coalesce(timeout, '5 minutes');
	next_look timestamptz := clock_timestamp();
	look_every interval := '50 milliseconds';
	r llm.eval_runs;
	state text;
	summary jsonb;
BEGIN
	SELECT * INTO r FROM llm.eval_runs e WHERE e.id = run;
	IF NOT FOUND OR NOT llm._eval_owns(caller, login, r.submitted_by, r.login_role) THEN
		RAISE EXCEPTION 'evaluation run % does not exist', run USING ERRCODE = 'undefined_object';
	END IF;
	LOOP
		-- the worker ends a run as it scores its last answers: one row to read
		SELECT e.state INTO state FROM llm.eval_runs e WHERE e.id = run;
		-- a run with requests cancelled ends here; a look may walk the run's
		-- requests: more and more seldom, up to once a second
		IF state = 'running' AND clock_timestamp() >= next_look THEN
			state := llm._eval_try_end(run, true);
			next_look := clock_timestamp() + look_every;
			look_every := least(look_every * 2, interval '1 second');
		END IF;
		EXIT WHEN state <> 'running' OR clock_timestamp() >= give_up;
		PERFORM pg_sleep(0.05);
	END LOOP;
	SELECT jsonb_build_object('run', _eval_wait.run, 'state', state, 'requests', r.requests,
							  'results', coalesce(sum(s.results), 0),
							  'scored', coalesce(sum(s.results - s.pending - s.errors), 0),
							  'errors', coalesce(sum(s.errors), 0),
							  'pending', coalesce(sum(s.pending), 0),
							  'cancelled', r.requests - coalesce(sum(s.results), 0))
	  INTO summary
	  FROM llm.eval_variant_stats s WHERE s.run = _eval_wait.run;
	RETURN summary;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_wait(name, name, bigint, interval) FROM PUBLIC;
