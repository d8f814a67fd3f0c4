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

-- Applies rows added and removed (an update is both) to the aggregates:
-- the rows' own sums change by what they add and remove; each case touched
-- is summed up again from its rows, and its variant changes by the new
-- case row less the old.  Exact: numeric sums of stored values, so that
-- any order of changes gives what summing up from scratch gives.
CREATE FUNCTION llm._eval_stats_apply(added llm.eval_results[], removed llm.eval_results[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	runs bigint[];
	variants text[];
	keys text[];
	before llm.eval_case_stats[];
	after llm.eval_case_stats[];
BEGIN
	added := coalesce(added, '{}');
	removed := coalesce(removed, '{}');
	IF cardinality(added) = 0 AND cardinality(removed) = 0 THEN
		RETURN;
	END IF;
	-- a run being dropped takes its aggregates with it
	WITH d AS (
		SELECT 1 AS sign, a.* FROM unnest(added) a
		UNION ALL
		SELECT -1, r.* FROM unnest(removed) r)
	INSERT INTO llm.eval_variant_stats AS s
		(run, variant, results, errors, pending, answered, passed, pass_known, json_valid,
		 input_tokens, input_tokens_n, output_tokens, output_tokens_n, cost_answered, cost_answered_n,
		 cost_usd, cost_n, judge_cost_usd, judge_cost_n, latencies)
	SELECT d.run, d.variant, sum(d.sign),
		   sum(CASE WHEN d.error IS NOT NULL THEN d.sign ELSE 0 END),
		   sum(CASE WHEN d.scored_at IS NULL THEN d.sign ELSE 0 END),
		   sum(CASE WHEN d.output IS NOT NULL THEN d.sign ELSE 0 END),
		   sum(CASE WHEN d.passed THEN d.sign ELSE 0 END),
		   sum(CASE WHEN d.passed IS NOT NULL THEN d.sign ELSE 0 END),
		   sum(CASE WHEN d.output IS NOT NULL AND d.output_json IS NOT NULL THEN d.sign ELSE 0 END),
		   coalesce(sum(d.sign * d.input_tokens) FILTER (WHERE d.output IS NOT NULL), 0),
		   sum(CASE WHEN d.output IS NOT NULL AND d.input_tokens IS NOT NULL THEN d.sign ELSE 0 END),
		   coalesce(sum(d.sign * d.output_tokens) FILTER (WHERE d.output IS NOT NULL), 0),
		   sum(CASE WHEN d.output IS NOT NULL AND d.output_tokens IS NOT NULL THEN d.sign ELSE 0 END),
		   coalesce(sum(d.sign * d.cost_usd) FILTER (WHERE d.output IS NOT NULL), 0),
		   sum(CASE WHEN d.output IS NOT NULL AND d.cost_usd IS NOT NULL THEN d.sign ELSE 0 END),
		   coalesce(sum(d.sign * d.cost_usd), 0),
		   sum(CASE WHEN d.cost_usd IS NOT NULL THEN d.sign ELSE 0 END),
		   coalesce(sum(d.sign * d.judge_cost_usd), 0),
		   sum(CASE WHEN d.judge_cost_usd IS NOT NULL THEN d.sign ELSE 0 END),
		   sum(CASE WHEN d.latency_ms IS NOT NULL THEN d.sign ELSE 0 END)
	  FROM d
	 WHERE d.run IN (SELECT r.id FROM llm.eval_runs r)
	 GROUP BY d.run, d.variant
	 ORDER BY d.run, d.variant
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
		   latencies = s.latencies + excluded.latencies;

	SELECT array_agg(t.run), array_agg(t.variant), array_agg(t.case_key)
	  INTO runs, variants, keys
	  FROM (SELECT DISTINCT x.run, x.variant, x.case_key
			  FROM (SELECT a.run, a.variant, a.case_key FROM unnest(added) a
					UNION ALL
					SELECT r.run, r.variant, r.case_key FROM unnest(removed) r) x
			 WHERE x.run IN (SELECT r.id FROM llm.eval_runs r)) t;
	IF runs IS NULL THEN
		RETURN;
	END IF;
	SELECT array_agg(c) INTO before
	  FROM unnest(runs, variants, keys) AS t(run, variant, case_key)
	  JOIN llm.eval_case_stats c USING (run, variant, case_key);
	SELECT array_agg(ROW(t.run, t.variant, t.case_key,
						 coalesce((SELECT ec.weight FROM llm.eval_runs er
									 JOIN llm.eval_cases ec ON ec.set_name = er.set_name
								   WHERE er.id = t.run AND ec.case_key = t.case_key), 1),
						 f.results, f.answers, f.scored, f.mean_score, f.distinct_outputs,
						 CASE WHEN f.answers >= 2
							  THEN round(f.agreeing_pairs::numeric / (f.answers * (f.answers - 1) / 2), 15) END,
						 f.contaminated)::llm.eval_case_stats)
	  INTO after
	  FROM unnest(runs, variants, keys) AS t(run, variant, case_key)
	 CROSS JOIN LATERAL (
		SELECT sum(o.n)::integer AS results,
			   coalesce(sum(o.n) FILTER (WHERE o.output IS NOT NULL), 0)::integer AS answers,
			   sum(o.scored)::integer AS scored,
			   round(sum(o.score_sum) / nullif(sum(o.scored), 0), 15) AS mean_score,
			   count(*) FILTER (WHERE o.output IS NOT NULL)::integer AS distinct_outputs,
			   coalesce(sum(o.n * (o.n - 1) / 2) FILTER (WHERE o.output IS NOT NULL), 0) AS agreeing_pairs,
			   coalesce(bool_or(o.contaminated), false) AS contaminated
		  FROM (SELECT res.output, count(*) AS n, count(res.score) AS scored,
					   sum(res.score::numeric) AS score_sum, bool_or(res.contaminated) AS contaminated
				  FROM llm.eval_results res
				 WHERE res.run = t.run AND res.case_key = t.case_key AND res.variant = t.variant
				 GROUP BY res.output) o) f
	 WHERE f.results > 0;

	-- the variants change by the cases after less the cases before
	WITH d AS (
		SELECT 1 AS sign, a.* FROM unnest(after) a
		UNION ALL
		SELECT -1, b.* FROM unnest(before) b)
	INSERT INTO llm.eval_variant_stats AS s
		(run, variant, cases, scored_cases, score_sum, score_sumsq, weight_sum, weighted_score_sum,
		 repeated_cases, consistent_cases, agreement_sum, contaminated_cases)
	SELECT d.run, d.variant, sum(d.sign),
		   sum(CASE WHEN d.mean_score IS NOT NULL THEN d.sign ELSE 0 END),
		   coalesce(sum(d.sign * d.mean_score), 0),
		   coalesce(sum(d.sign * d.mean_score * d.mean_score), 0),
		   coalesce(sum(d.sign * d.weight) FILTER (WHERE d.mean_score IS NOT NULL), 0),
		   coalesce(sum(d.sign * d.weight * d.mean_score), 0),
		   sum(CASE WHEN d.answers >= 2 THEN d.sign ELSE 0 END),
		   sum(CASE WHEN d.answers >= 2 AND d.distinct_outputs = 1 THEN d.sign ELSE 0 END),
		   coalesce(sum(d.sign * d.agreement), 0),
		   sum(CASE WHEN d.contaminated THEN d.sign ELSE 0 END)
	  FROM d
	 GROUP BY d.run, d.variant
	 ORDER BY d.run, d.variant
	ON CONFLICT (run, variant) DO UPDATE
	   SET cases = s.cases + excluded.cases, scored_cases = s.scored_cases + excluded.scored_cases,
		   score_sum = s.score_sum + excluded.score_sum,
		   score_sumsq = s.score_sumsq + excluded.score_sumsq,
		   weight_sum = s.weight_sum + excluded.weight_sum,
		   weighted_score_sum = s.weighted_score_sum + excluded.weighted_score_sum,
		   repeated_cases = s.repeated_cases + excluded.repeated_cases,
		   consistent_cases = s.consistent_cases + excluded.consistent_cases,
		   agreement_sum = s.agreement_sum + excluded.agreement_sum,
		   contaminated_cases = s.contaminated_cases + excluded.contaminated_cases;

	DELETE FROM llm.eval_case_stats c
	 USING unnest(runs, variants, keys) AS t(run, variant, case_key)
	 WHERE c.run = t.run AND c.variant = t.variant AND c.case_key = t.case_key;
	INSERT INTO llm.eval_case_stats SELECT a.* FROM unnest(after) a;
	-- a variant whose rows are all gone
	DELETE FROM llm.eval_variant_stats s
	 WHERE s.results = 0 AND (s.run, s.variant) IN (SELECT DISTINCT t.run, t.variant
													 FROM unnest(runs, variants) AS t(run, variant));
END
$$;
REVOKE ALL ON FUNCTION llm._eval_stats_apply(llm.eval_results[], llm.eval_results[]) FROM PUBLIC;

-- A trigger may name transition tables for one event only: three triggers.
CREATE FUNCTION llm._eval_results_changed()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		PERFORM llm._eval_stats_apply((SELECT array_agg(ROW(n.*)::llm.eval_results) FROM new_rows n), NULL);
	ELSIF TG_OP = 'UPDATE' THEN
		PERFORM llm._eval_stats_apply((SELECT array_agg(ROW(n.*)::llm.eval_results) FROM new_rows n),
									  (SELECT array_agg(ROW(o.*)::llm.eval_results) FROM old_rows o));
	ELSE
		PERFORM llm._eval_stats_apply(NULL, (SELECT array_agg(ROW(o.*)::llm.eval_results) FROM old_rows o));
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
-- check them): the number of result rows.
CREATE FUNCTION llm._eval_stats_rebuild(run_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	rows llm.eval_results[];
BEGIN
	DELETE FROM llm.eval_case_stats c WHERE c.run = run_id;
	DELETE FROM llm.eval_variant_stats s WHERE s.run = run_id;
	SELECT array_agg(res) INTO rows FROM llm.eval_results res WHERE res.run = run_id;
	PERFORM llm._eval_stats_apply(rows, NULL);
	RETURN coalesce(cardinality(rows), 0);
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
-- Called by the worker with each turn's finished evaluation requests, in
-- the transaction that wrote them; by the callback of a "function" scorer
-- with its score (by_function); and when a run ends, for what is left.  A
-- row whose request was cancelled is left for the run's end.  Ends the runs
-- it completed unless told not to.  The number of rows recorded.
CREATE FUNCTION llm._eval_collect(ids bigint[], function_score double precision DEFAULT NULL,
								  function_error text DEFAULT NULL, by_function boolean DEFAULT false,
								  end_runs boolean DEFAULT true)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	answered bigint[];
	judged bigint[];
	run_id bigint;
BEGIN
	WITH answer AS (
		SELECT res.run, res.case_key, res.variant, res.repeat, q.state, q.completion, q.response,
			   q.cost_usd, er AS run_row, ec AS case_row,
			   CASE WHEN q.state = 'error' THEN coalesce(q.error, 'the request failed')
					WHEN er.scorer ->> 'type' = 'function' AND NOT by_function
					THEN 'the scorer failed: ' || q.callback_error
			   END AS failure
		  FROM unnest(ids) AS i(id)
		  JOIN llm.eval_results res ON res.request_id = i.id
		  JOIN llm.requests q ON q.id = i.id
		  JOIN llm.eval_runs er ON er.id = res.run
		  JOIN llm.eval_cases ec ON ec.set_name = er.set_name AND ec.case_key = res.case_key
		 WHERE res.scored_at IS NULL AND res.judge_request_id IS NULL
		   AND (q.state = 'error'
				OR (q.state = 'done'
					AND (er.scorer ->> 'type' <> 'function' OR by_function OR q.callback_error IS NOT NULL)))),
	scored AS (
		SELECT a.*,
			   CASE WHEN a.failure IS NOT NULL OR a.completion IS NULL OR (a.run_row).scorer ->> 'type' = 'judge'
					THEN NULL
					WHEN (a.run_row).scorer ->> 'type' = 'function'
					THEN jsonb_build_object('score', CASE WHEN function_score IS NOT NULL
														  THEN least(greatest(function_score, 0), 1) END,
											'passed', function_score
													  >= coalesce(((a.run_row).scorer ->> 'threshold')::double precision, 0.5))
					ELSE @extschema@.llm_eval_score((a.run_row).scorer, a.completion, (a.case_row).expected,
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
		   AND res.repeat = s.repeat
		RETURNING res.run)
	SELECT array_agg(w.run) INTO answered FROM written w;

	-- judges' verdicts (and judges that failed or were cancelled)
	WITH verdict AS (
		SELECT res.run, res.case_key, res.variant, res.repeat, q.state, q.error, q.completion,
			   coalesce(q.cost_usd, (q.response ->> 'cost_usd')::numeric) AS cost,
			   llm._eval_output_json(q.completion) AS parsed,
			   coalesce((run.scorer ->> 'threshold')::double precision, 0.5) AS threshold
		  FROM unnest(ids) AS i(id)
		  JOIN llm.eval_results res ON res.judge_request_id = i.id
		  JOIN llm.requests q ON q.id = i.id
		  JOIN llm.eval_runs run ON run.id = res.run
		 WHERE res.scored_at IS NULL AND q.state IN ('done', 'error', 'cancelled')),
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
							WHEN j.state = 'cancelled' THEN 'the judge was cancelled'
							WHEN j.parsed IS NULL
							THEN 'the judge''s answer is not JSON: ' || coalesce(left(j.completion, 200), '(none)')
							ELSE 'the judge''s answer is not {"score": 0..1, "reason": text}: '
								 || left(j.parsed::text, 200) END,
			   judge_cost_usd = j.cost, scored_at = now()
		  FROM checked j
		 WHERE res.run = j.run AND res.case_key = j.case_key AND res.variant = j.variant
		   AND res.repeat = j.repeat
		RETURNING res.run)
	SELECT array_agg(w.run) INTO judged FROM written w;

	IF end_runs THEN
		FOR run_id IN SELECT DISTINCT x FROM unnest(answered || judged) x ORDER BY x LOOP
			PERFORM llm._eval_try_end(run_id, false);
		END LOOP;
	END IF;
	RETURN coalesce(cardinality(answered), 0) + coalesce(cardinality(judged), 0);
END
$$;
REVOKE ALL ON FUNCTION llm._eval_collect(bigint[], double precision, text, boolean, boolean) FROM PUBLIC;

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
-- request of it was.  Rows still pending whose requests were cancelled are
-- removed, once nothing of the run is queued or running (the worker is done
-- with it); rows whose answers were never recorded are recorded then.  The
-- worker asks after its answers (look_everywhere false: it looks for queued
-- and running requests only when some of the run were cancelled, a probe
-- that walks the tag's index); llm_eval_wait on every poll.  Never waits on
-- a lock: a run row locked by another session is being ended by it.
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
		   OR EXISTS (SELECT FROM llm.requests q WHERE q.tag = run.tag AND q.state IN ('queued', 'running')) THEN
			RETURN 'running';
		END IF;
		-- a function scorer's callback still to run (the worker runs it after writing the answer)
		IF run.scorer ->> 'type' = 'function'
		   AND EXISTS (SELECT FROM llm.eval_results res JOIN llm.requests q ON q.id = res.request_id
						WHERE res.run = run_id AND res.scored_at IS NULL AND res.judge_request_id IS NULL
						  AND q.state = 'done' AND q.callback_error IS NULL) THEN
			RETURN 'running';
		END IF;
	END IF;
	PERFORM FROM llm.eval_runs r WHERE r.id = run_id AND r.state = 'running' FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN
		RETURN 'running';
	END IF;
	IF pending > 0 THEN
		PERFORM llm._eval_collect(
			ARRAY(SELECT coalesce(res.judge_request_id, res.request_id) FROM llm.eval_results res
				   WHERE res.run = run_id AND res.scored_at IS NULL),
			end_runs => false);
		DELETE FROM llm.eval_results res
		 USING llm.requests q
		 WHERE res.run = run_id AND res.scored_at IS NULL AND q.id = res.request_id AND q.state = 'cancelled';
		-- what is left has no request any more (purged): recorded so, never left pending
		UPDATE llm.eval_results res
		   SET error = 'no answer: the request is gone', scored_at = now()
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
	pause double precision := 0.05;
	r llm.eval_runs;
	state text;
	summary jsonb;
BEGIN
	SELECT * INTO r FROM llm.eval_runs e WHERE e.id = run;
	IF NOT FOUND OR NOT llm._eval_owns(caller, login, r.submitted_by, r.login_role) THEN
		RAISE EXCEPTION 'evaluation run % does not exist', run USING ERRCODE = 'undefined_object';
	END IF;
	LOOP
		state := llm._eval_try_end(run, true);
		EXIT WHEN state <> 'running' OR clock_timestamp() >= give_up;
		-- a look may walk the run's requests: more and more seldom, up to once a second
		PERFORM pg_sleep(pause);
		pause := least(pause * 1.5, 1.0);
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
