-- llmext 0.3.0 -> 0.4.0: evaluation answers are scored in sets, and the
-- report reads aggregates kept as they are recorded.
--
-- Answers of evaluation runs are scored in one statement per set
-- (llm._eval_collect) by a scorer process beside the worker, instead of a
-- callback per answer; only a "function" scorer keeps its callback.
-- llm.eval_case_stats and llm.eval_variant_stats are kept by triggers on
-- llm.eval_results, and llm.eval_report reads them (with a new column,
-- weighted_mean_score).  A judge that fails, or whose answer is not a
-- verdict, and a function scorer that fails, are errors of the result now
-- (they were reasons).  Requests queued by 0.3.0 still carry the callback
-- llm.eval_collect, which records them the new way.
\echo Use "ALTER EXTENSION llmext UPDATE TO '0.4.0'" to load this file. \quit

DROP VIEW llm.eval_report;
DROP FUNCTION llm._eval_interval(double precision[]);
DROP FUNCTION llm._eval_sync(bigint);
DROP FUNCTION llm._eval_may_end(bigint, bigint);
ALTER TABLE llm.eval_runs DROP COLUMN last_request;

CREATE OR REPLACE FUNCTION llm._eval_run(caller name, login name, set text, variants jsonb, repeats integer,
							  scorer jsonb, options jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s llm.eval_sets := llm._eval_set_of(caller, login, set);
	v jsonb;
	vname text;
	names text[] := '{}';
	m llm.models;
	c llm.eval_cases;
	fn regprocedure;
	run_id bigint;
	run_tag text;
	n_cases integer;
	rendered jsonb;
	msgs jsonb;
	opts jsonb;
	model_name text;
	contaminated boolean;
	chosen record;
	callback regprocedure;
	-- each case x variant, queued at the end in one statement with its repeats
	item_case text[] := '{}';
	item_variant text[] := '{}';
	item_model text[] := '{}';
	item_messages jsonb[] := '{}';
	item_options jsonb[] := '{}';
	item_prompt text[] := '{}';
	item_version integer[] := '{}';
	item_contaminated boolean[] := '{}';
BEGIN
	IF variants IS NULL OR jsonb_typeof(variants) <> 'array' OR jsonb_array_length(variants) = 0 THEN
		RAISE EXCEPTION 'variants must be a non-empty JSON array'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example ''[{"name": "a", "prompt": "triage", "version": 3, "model": "mini"}]''.';
	END IF;
	IF repeats IS NULL OR repeats NOT BETWEEN 1 AND 100 THEN
		RAISE EXCEPTION 'repeats must be from 1 to 100' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options IS NOT NULL AND jsonb_typeof(options) <> 'object' THEN
		RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	scorer := coalesce(scorer, '{"type": "exact"}');
	IF jsonb_typeof(scorer) <> 'object' OR jsonb_typeof(scorer -> 'type') IS DISTINCT FROM 'string' THEN
		RAISE EXCEPTION 'a scorer is a JSON object with a "type"' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF scorer ->> 'type' = 'function' THEN
		fn := to_regprocedure((scorer ->> 'function') || '(text, jsonb, jsonb)');
		IF fn IS NULL THEN
			RAISE EXCEPTION 'function %(text, jsonb, jsonb) does not exist', scorer ->> 'function'
				USING ERRCODE = 'undefined_function',
					  HINT = 'Name the scorer function with its schema, e.g. {"type": "function", "function": "public.my_score"}.';
		END IF;
		IF NOT has_function_privilege(caller, fn, 'EXECUTE') THEN
			RAISE EXCEPTION 'role "%" may not execute %', caller, fn USING ERRCODE = 'insufficient_privilege';
		END IF;
		scorer := scorer || jsonb_build_object('function', fn::text);
	ELSIF scorer ->> 'type' = 'judge' THEN
		-- a stored prompt run on a judge model: both exist, the version is fixed now
		IF jsonb_typeof(scorer -> 'prompt') IS DISTINCT FROM 'string' THEN
			RAISE EXCEPTION 'a judge scorer names its stored prompt: {"type": "judge", "prompt": "...", "model": "..."}'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF scorer ? 'version' AND scorer ? 'label' THEN
			RAISE EXCEPTION 'the judge scorer: give a version or a label, not both'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF scorer ? 'threshold' AND jsonb_typeof(scorer -> 'threshold') IS DISTINCT FROM 'number' THEN
			RAISE EXCEPTION 'the judge scorer''s threshold must be a number'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		SELECT * INTO chosen FROM llm._prompt_choose(scorer ->> 'prompt', (scorer ->> 'version')::integer,
													 scorer ->> 'label', NULL);
		model_name := coalesce(scorer ->> 'model', chosen.chosen_model,
							   (SELECT p.model FROM llm.prompts p
								 WHERE p.name = scorer ->> 'prompt' AND p.version = chosen.chosen_version));
		IF model_name IS NULL THEN
			RAISE EXCEPTION 'the judge scorer names no model' USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF NOT EXISTS (SELECT FROM llm.models mm WHERE mm.name = model_name) THEN
			RAISE EXCEPTION 'the judge scorer: model "%" does not exist', model_name
				USING ERRCODE = 'undefined_object';
		END IF;
		scorer := scorer || jsonb_build_object('version', chosen.chosen_version, 'model', model_name);
	ELSE
		-- refuses an unknown scorer; with no output an embedding_similarity
		-- scorer checks its model and sends no request
		PERFORM @extschema@.llm_eval_score(scorer,
			CASE WHEN scorer ->> 'type' <> 'embedding_similarity' THEN 'x' END, '"x"', '{}');
	END IF;
	SELECT count(*) INTO n_cases FROM llm.eval_cases ec WHERE ec.set_name = s.name;
	IF n_cases = 0 THEN
		RAISE EXCEPTION 'evaluation set "%" has no cases', s.name USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- every variant is checked before anything is queued
	FOR v IN SELECT value FROM jsonb_array_elements(variants) LOOP
		vname := v ->> 'name';
		IF jsonb_typeof(v) <> 'object' OR vname IS NULL
		   OR vname !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
			RAISE EXCEPTION 'every variant needs a "name" (1 to 63 letters, digits, "_", "." or "-")'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF vname = ANY (names) THEN
			RAISE EXCEPTION 'variant name "%" is used twice', vname USING ERRCODE = 'invalid_parameter_value';
		END IF;
		names := names || vname;
		IF v ? 'options' AND jsonb_typeof(v -> 'options') <> 'object' THEN
			RAISE EXCEPTION 'variant "%": options must be a JSON object', vname
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF v ? 'prompt' THEN
			IF v ? 'system' THEN
				RAISE EXCEPTION 'variant "%": give a prompt or a system text, not both', vname
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			IF v ? 'version' AND v ? 'label' THEN
				RAISE EXCEPTION 'variant "%": give a version or a label, not both', vname
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			SELECT * INTO chosen FROM llm._prompt_choose(v ->> 'prompt', (v ->> 'version')::integer,
														 v ->> 'label', NULL);
			model_name := coalesce(v ->> 'model', chosen.chosen_model,
								   (SELECT p.model FROM llm.prompts p
									 WHERE p.name = v ->> 'prompt' AND p.version = chosen.chosen_version));
		ELSE
			model_name := v ->> 'model';
		END IF;
		IF model_name IS NULL THEN
			RAISE EXCEPTION 'variant "%" names no model', vname USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF NOT EXISTS (SELECT FROM llm.models mm WHERE mm.name = model_name) THEN
			RAISE EXCEPTION 'variant "%": model "%" does not exist', vname, model_name
				USING ERRCODE = 'undefined_object';
		END IF;
	END LOOP;

	IF scorer ->> 'type' = 'function' THEN
		callback := 'llm.eval_collect(bigint, jsonb)'::regprocedure;
	END IF;
	run_id := nextval('llm.eval_runs_id_seq');
	run_tag := 'eval-' || run_id;
	INSERT INTO llm.eval_runs (id, set_name, variants, repeats, scorer, options, tag, submitted_by,
							   login_role, cases, requests)
	VALUES (run_id, s.name, variants, repeats, scorer, options, run_tag, caller, login, n_cases,
			n_cases * jsonb_array_length(variants) * repeats);

	FOR c IN SELECT * FROM llm.eval_cases ec WHERE ec.set_name = s.name ORDER BY ec.case_key LOOP
		FOR v IN SELECT value FROM jsonb_array_elements(variants) LOOP
			IF v ? 'prompt' THEN
				rendered := @extschema@.llm_render(v ->> 'prompt',
					coalesce(c.vars, '{}') || CASE WHEN c.input IS NOT NULL
												   THEN jsonb_build_object('input', c.input) ELSE '{}' END,
					(v ->> 'version')::integer, v ->> 'label', NULL);
				msgs := rendered -> 'messages';
				model_name := coalesce(v ->> 'model', rendered ->> 'model');
				opts := coalesce(rendered -> 'params', '{}')
						|| CASE WHEN jsonb_typeof(rendered -> 'response_format') = 'object'
								THEN jsonb_build_object('response_format', rendered -> 'response_format')
								ELSE '{}' END;
			ELSE
				rendered := NULL;
				IF coalesce(c.input, c.vars ->> 'input') IS NULL THEN
					RAISE EXCEPTION 'case "%" has no input for variant "%", which has no prompt',
						c.case_key, v ->> 'name' USING ERRCODE = 'invalid_parameter_value';
				END IF;
				msgs := CASE WHEN coalesce(v ->> 'system', '') = '' THEN '[]'::jsonb
							 ELSE jsonb_build_array(jsonb_build_object('role', 'system', 'content', v ->> 'system')) END
						|| jsonb_build_array(jsonb_build_object('role', 'user',
															   'content', coalesce(c.input, c.vars ->> 'input')));
				model_name := v ->> 'model';
				opts := '{}';
			END IF;
			-- repeats measure consistency: never answered from the cache
			opts := opts || coalesce(options, '{}') || coalesce(v -> 'options', '{}')
					|| '{"cache": "off"}';
			IF m.name IS DISTINCT FROM model_name THEN
				SELECT * INTO m FROM llm.models mm WHERE mm.name = model_name;
			END IF;
			contaminated := m.training_set IS NOT NULL AND EXISTS (
				SELECT FROM llm.training_examples e
				 WHERE e.set_name = m.training_set AND e.set_version = m.training_version
				   AND NOT e.held_out
				   AND llm._eval_last_user(e.line::jsonb -> 'messages') = llm._eval_last_user(msgs));
			item_case := item_case || c.case_key;
			item_variant := item_variant || (v ->> 'name');
			item_model := item_model || model_name;
			item_messages := item_messages || msgs;
			item_options := item_options || opts;
			item_prompt := item_prompt || (rendered ->> 'prompt');
			item_version := item_version || (rendered ->> 'version')::integer;
			item_contaminated := item_contaminated || contaminated;
		END LOOP;
	END LOOP;
	-- every repeat a request of its own, and its empty result row
	WITH item AS (
		SELECT x.*, rep, nextval('llm.requests_id_seq') AS request_id
		  FROM unnest(item_case, item_variant, item_model, item_messages, item_options, item_prompt,
					  item_version, item_contaminated)
			   AS x(case_key, variant, model, messages, options, prompt, version, contaminated),
			   generate_series(1, repeats) rep),
	queued AS (
		INSERT INTO llm.requests (id, tag, submitted_by, login_role, priority, model, messages, options,
								  callback, prompt_name, prompt_version)
		SELECT i.request_id, run_tag, caller, login, 0, i.model, i.messages, i.options, callback,
			   i.prompt, i.version
		  FROM item i ORDER BY i.request_id)
	INSERT INTO llm.eval_results (run, case_key, variant, repeat, request_id, temperature, seed, contaminated)
	SELECT run_id, i.case_key, i.variant, i.rep, i.request_id,
		   CASE WHEN jsonb_typeof(i.options -> 'temperature') = 'number'
				THEN (i.options ->> 'temperature')::double precision END,
		   CASE WHEN jsonb_typeof(i.options -> 'seed') = 'number' THEN (i.options ->> 'seed')::numeric::bigint END,
		   i.contaminated
	  FROM item i;
	PERFORM llm._wake_at_commit();
	RETURN run_id;
END
$$;

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
CREATE OR REPLACE FUNCTION llm.eval_collect(request_id bigint, result jsonb)
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

-- Records the answer to one request of the caller's own runs (a function
-- scorer's score given), as the worker does for the others.
CREATE OR REPLACE FUNCTION llm._eval_record(caller name, login name, request_id bigint,
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

CREATE OR REPLACE FUNCTION llm._eval_wait(caller name, login name, run bigint, timeout interval)
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


-- Feedback from production: every call's call_id (llm.calls.entry_id) in its
-- result and llm_last_call_id(); what calls were asked and answered
-- (llm.call_io, kept for llmext.call_io_days); queued prompt calls keep
-- their variables (llm.requests.vars); llm_feedback and
-- llm_eval_cases_from_feedback.
-- What a call was asked and answered, kept beside its ledger row so that a
-- production call can become an evaluation case or a training example
-- (llm_feedback, llm_eval_cases_from_feedback): a stored prompt's
-- variables, the last user message and the answer, each when it takes at
-- most 64 kB.  Kept while llmext.keep_call_io is on (the default), for
-- llmext.call_io_days (30; the worker deletes older rows), and removed with
-- llm_call_io_purge.  Evaluation runs keep nothing here: their inputs are
-- their sets' cases.
CREATE TABLE llm.call_io (
	entry_id		text PRIMARY KEY REFERENCES llm.calls (entry_id) ON DELETE CASCADE,
	created_at		timestamptz NOT NULL,
	role			name NOT NULL,
	login_role		name NOT NULL,
	prompt_name		text,
	prompt_version	integer,
	vars			jsonb,			-- the stored prompt's variables
	input			text,			-- the last user message
	output			text,			-- the answer
	too_large		boolean NOT NULL DEFAULT false	-- something was left out for its size
);
CREATE INDEX call_io_created_at_idx ON llm.call_io (created_at);
COMMENT ON TABLE llm.call_io IS 'what calls were asked and answered (prompt variables, last user message, answer), kept for llmext.call_io_days';
SELECT pg_catalog.pg_extension_config_dump('llm.call_io', '');
ALTER TABLE llm.call_io ENABLE ROW LEVEL SECURITY;
CREATE POLICY call_io_own_rows ON llm.call_io FOR SELECT
	USING ((role = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
GRANT SELECT ON llm.call_io TO llm_user;

CREATE OR REPLACE FUNCTION llm._persist(entries jsonb)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	inserted_hits jsonb;
BEGIN
	-- ledger rows carry an entry_id, cache entries a key and a result
	WITH new_calls AS (
		INSERT INTO llm.calls (entry_id, created_at, role, login_role, database, source, prompt_name,
							   prompt_version, model, remote_model, provider, cache_hit,
							   http_status, outcome, error, input_tokens, cached_input_tokens,
							   output_tokens, reasoning_tokens, cost_usd, cost_saved_usd,
							   latency_ms, request_id, fingerprint)
		SELECT r.entry_id,
			   coalesce(r.created_at,
						timestamptz '2000-01-01 00:00:00+00' + r.created_us * interval '1 microsecond'),
			   r.role, coalesce(r.login_role, r.role), r.database, coalesce(r.source, 'sync'), r.prompt_name,
			   r.prompt_version, r.model, r.remote_model, r.provider, coalesce(r.cache_hit, false),
			   r.http_status, r.outcome, r.error, coalesce(r.input_tokens, 0),
			   coalesce(r.cached_input_tokens, 0), coalesce(r.output_tokens, 0),
			   coalesce(r.reasoning_tokens, 0),
			   -- costs arrive as doubles: kept to the pico-dollar
			   coalesce(trim_scale(round(r.cost_usd, 12)), 0),
			   coalesce(trim_scale(round(r.cost_saved_usd, 12)), 0),
			   r.latency_ms, r.request_id, r.fingerprint
		  FROM jsonb_to_recordset(entries) AS r(
				entry_id text, created_at timestamptz, created_us bigint, role name,
				login_role name, database name, source text, prompt_name text, prompt_version integer,
				model text, remote_model text, provider text, cache_hit boolean,
				http_status integer, outcome text, error text, input_tokens bigint,
				cached_input_tokens bigint, output_tokens bigint, reasoning_tokens bigint,
				cost_usd numeric, cost_saved_usd numeric, latency_ms double precision,
				request_id text, fingerprint text)
		 WHERE r.entry_id IS NOT NULL
		ON CONFLICT (entry_id) DO NOTHING
		RETURNING entry_id, fingerprint, created_at, cache_hit, role, login_role, cost_usd,
				  prompt_name, prompt_version
	),
	io AS (
		INSERT INTO llm.call_io (entry_id, created_at, role, login_role, prompt_name, prompt_version,
								 vars, input, output, too_large)
		SELECT c.entry_id, c.created_at, c.role, c.login_role, c.prompt_name, c.prompt_version,
			   r.vars, r.input, r.output, coalesce(r.io_too_large, false)
		  FROM jsonb_to_recordset(entries)
			   AS r(entry_id text, vars jsonb, input text, output text, io_too_large boolean)
		  JOIN new_calls c ON c.entry_id = r.entry_id
		 WHERE r.vars IS NOT NULL OR r.input IS NOT NULL OR r.output IS NOT NULL OR r.io_too_large
	),
	spend AS (
		INSERT INTO llm.spend_daily AS d (day, role, login_role, cost_usd)
		SELECT (created_at AT TIME ZONE 'UTC')::date, role, login_role, sum(cost_usd)
		  FROM new_calls
		 GROUP BY 1, 2, 3
		HAVING sum(cost_usd) > 0
		ON CONFLICT (day, role, login_role) DO UPDATE SET cost_usd = d.cost_usd + excluded.cost_usd
	)
	SELECT jsonb_agg(jsonb_build_object('key', h.fingerprint, 'hits', h.hits, 'at', h.last_hit))
	  INTO inserted_hits
	  FROM (SELECT fingerprint, count(*) AS hits, max(created_at) AS last_hit
			  FROM new_calls WHERE cache_hit GROUP BY fingerprint) h;

	INSERT INTO llm.cache AS c (key, model, provider, remote_model, result, cost_usd,
								created_at, expires_at)
	SELECT r.key, r.model, r.provider, r.remote_model, r.result,
		   coalesce(trim_scale(round(r.cost_usd, 12)), 0),
		   r.created_at, r.expires_at
	  FROM jsonb_to_recordset(entries) AS r(
			key text, model text, provider text, remote_model text, result jsonb,
			cost_usd numeric, created_at timestamptz, expires_at timestamptz)
	 WHERE r.key IS NOT NULL AND r.result IS NOT NULL
	ON CONFLICT (key) DO UPDATE
		SET result = excluded.result, cost_usd = excluded.cost_usd,
			created_at = excluded.created_at, expires_at = excluded.expires_at
		WHERE c.created_at < excluded.created_at;

	IF inserted_hits IS NOT NULL THEN
		UPDATE llm.cache c
		   SET hit_count = c.hit_count + (h ->> 'hits')::bigint,
			   last_hit_at = greatest(c.last_hit_at, (h ->> 'at')::timestamptz)
		  FROM jsonb_array_elements(inserted_hits) h
		 WHERE c.key = h ->> 'key';
	END IF;
END
$$;

-- The worker's: deletes up to batch rows of llm.call_io older than days.
CREATE FUNCTION llm._call_io_expire(days integer, batch integer DEFAULT 10000)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	WITH gone AS (
		DELETE FROM llm.call_io
		 WHERE entry_id IN (SELECT entry_id FROM llm.call_io
							 WHERE created_at < now() - days * interval '1 day' LIMIT batch)
		RETURNING 1)
	SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION llm._call_io_expire(integer, integer) FROM PUBLIC;

CREATE FUNCTION llm_call_io_purge(before timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF before IS NULL THEN
		RAISE EXCEPTION 'before must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	DELETE FROM llm.call_io io WHERE io.created_at < before;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION llm_call_io_purge(timestamptz) IS
	'delete what calls made before a time were asked and answered (llm.call_io): how many; llm_admin only';
REVOKE ALL ON FUNCTION llm_call_io_purge(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_call_io_purge(timestamptz) TO llm_admin;

CREATE FUNCTION llm_last_call_id()
RETURNS text
AS 'MODULE_PATHNAME', 'llm_last_call_id'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_last_call_id() IS
	'the call_id (llm.calls.entry_id) of this session''s last call, for llm_feedback after a call that returns only text';
REVOKE ALL ON FUNCTION llm_last_call_id() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_last_call_id() TO llm_user;

ALTER TABLE llm.requests ADD COLUMN vars jsonb;
DROP FUNCTION llm._enqueue(name, name, text, jsonb, jsonb, text, integer, regprocedure, text, integer);
CREATE FUNCTION llm._enqueue(caller name, login name, model text, messages jsonb, options jsonb,
							 tag text, priority integer, callback regprocedure,
							 prompt_name text, prompt_version integer, vars jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	new_id bigint;
BEGIN
	IF options IS NOT NULL AND jsonb_typeof(options) <> 'object' THEN
		RAISE EXCEPTION 'options must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF priority IS NOT NULL AND priority NOT BETWEEN -1000 AND 1000 THEN
		RAISE EXCEPTION 'priority % is out of range', priority
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use a priority from -1000 to 1000 (default 0); higher runs first.';
	END IF;
	IF callback IS NOT NULL AND NOT has_function_privilege(caller, callback, 'EXECUTE') THEN
		RAISE EXCEPTION 'role "%" may not execute callback %', caller, callback
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'The callback runs with the submitter''s rights.';
	END IF;
	INSERT INTO llm.requests (tag, submitted_by, login_role, priority, model, messages, options,
							  callback, prompt_name, prompt_version, vars)
	VALUES (tag, caller, login, coalesce(priority, 0), model, messages, options, callback,
			prompt_name, prompt_version, vars)
	RETURNING id INTO new_id;
	PERFORM llm._wake_at_commit();
	RETURN new_id;
END
$$;
REVOKE ALL ON FUNCTION llm._enqueue(name, name, text, jsonb, jsonb, text, integer, regprocedure, text, integer, jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION llm._submit_prompt(caller name, login name, name text, vars jsonb, model text,
								   version integer, label text, ab_key text, options jsonb,
								   tag text, priority integer, callback regprocedure)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r jsonb;
BEGIN
	-- rendered now: the request records exactly what will be sent
	r := @extschema@.llm_render(name, vars, version, label, ab_key);
	RETURN llm._enqueue(caller, login, coalesce(model, r ->> 'model'), r -> 'messages',
						(r -> 'params')
						|| CASE WHEN jsonb_typeof(r -> 'response_format') = 'object'
								THEN jsonb_build_object('response_format', r -> 'response_format')
								ELSE '{}' END
						|| coalesce(options, '{}'),
						tag, priority, callback, r ->> 'prompt', (r ->> 'version')::integer,
						CASE WHEN vars IS NOT NULL AND vars <> '{}' THEN vars END);
END
$$;

-- Feedback from production: a score, a correction or a note on a call the
-- caller may see, by its call_id (llm.calls.entry_id, which llm_chat and
-- queued results return as "call_id"); and evaluation cases made from it
-- with what the call was asked (llm.call_io).  Training sets are made from
-- the same rows with llm_training_set_create over a query (docs/cookbook.md).

CREATE TABLE llm.feedback (
	id				bigserial PRIMARY KEY,
	call_id			text NOT NULL REFERENCES llm.calls (entry_id) ON DELETE CASCADE,
	score			numeric CHECK (score <> 'NaN'),
	correction		text,			-- the answer the call should have given
	note			text,
	given_by		name NOT NULL,
	login_role		name NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now(),
	CHECK (score IS NOT NULL OR correction IS NOT NULL OR note IS NOT NULL)
);
CREATE INDEX feedback_call_id_idx ON llm.feedback (call_id);
CREATE INDEX feedback_created_at_idx ON llm.feedback (created_at);
COMMENT ON TABLE llm.feedback IS 'feedback on production calls: score, correction, note; who and when';
SELECT pg_catalog.pg_extension_config_dump('llm.feedback', '');
SELECT pg_catalog.pg_extension_config_dump('llm.feedback_id_seq', '');

-- Feedback on the calls you may see (your own, by the ledger's rule), and
-- llm_admin all.
ALTER TABLE llm.feedback ENABLE ROW LEVEL SECURITY;
CREATE POLICY feedback_on_own_calls ON llm.feedback FOR SELECT
	USING (call_id IN (SELECT c.entry_id FROM llm.calls c)
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
GRANT SELECT ON llm.feedback TO llm_user;

CREATE FUNCTION llm_feedback(call_id text, score numeric DEFAULT NULL, correction text DEFAULT NULL,
							 note text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_feedback(text, numeric, text, text) IS
	'record feedback (a score, a correction, a note) on one of your calls, by the call_id its result carries: the feedback id';

-- Whether caller (with login) may see the ledger row entry_id: the ledger's
-- row level security, applied by hand in a SECURITY DEFINER body.
CREATE FUNCTION llm._call_visible(caller name, login name, entry_id text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT EXISTS (SELECT FROM llm.calls c
					WHERE c.entry_id = _call_visible.entry_id
					  AND ((c.role = caller AND (c.login_role = login OR caller = login))
						   OR pg_has_role(caller, 'llm_admin', 'MEMBER')))
$$;
REVOKE ALL ON FUNCTION llm._call_visible(name, name, text) FROM PUBLIC;

CREATE FUNCTION llm._feedback(caller name, login name, call_id text, score numeric, correction text,
							  note text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
BEGIN
	IF call_id IS NULL THEN
		RAISE EXCEPTION 'call_id must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'Pass the call_id of a call''s result (llm_chat returns it; so do queued results).';
	END IF;
	IF score IS NULL AND correction IS NULL AND note IS NULL THEN
		RAISE EXCEPTION 'feedback needs a score, a correction or a note'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF score = 'NaN' THEN
		RAISE EXCEPTION 'score must be a number, not NaN' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF octet_length(correction) > 1048576 OR octet_length(note) > 1048576 THEN
		RAISE EXCEPTION 'a correction or note may take at most 1 MB'
			USING ERRCODE = 'program_limit_exceeded';
	END IF;
	-- a call made a moment ago may still be on its way to the ledger
	IF NOT llm._call_visible(caller, login, call_id) THEN
		PERFORM @extschema@.llm_flush('5 seconds');
	END IF;
	IF NOT llm._call_visible(caller, login, call_id) THEN
		RAISE EXCEPTION 'call "%" does not exist', call_id
			USING ERRCODE = 'undefined_object',
				  HINT = 'Feedback is given on your own calls, by the call_id of their result (llm.calls.entry_id).';
	END IF;
	INSERT INTO llm.feedback (call_id, score, correction, note, given_by, login_role)
	VALUES (call_id, score, correction, note, caller, login)
	RETURNING feedback.id INTO id;
	RETURN id;
END
$$;
REVOKE ALL ON FUNCTION llm._feedback(name, name, text, numeric, text, text) FROM PUBLIC;

CREATE FUNCTION llm_eval_cases_from_feedback(set text, since timestamptz, min_score numeric DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_cases_from_feedback(text, timestamptz, numeric) IS
	'add your production calls with feedback since a time as cases: expected = the correction, else the answer when the score is at least min_score; how many';

-- A case per call with feedback given since `since` (the latest feedback
-- of the call counts): key "call:<call_id>", vars and input as the call was
-- asked (llm.call_io), expected = the correction, else the call's answer
-- when its score is at least min_score; calls with neither, or whose inputs
-- were not kept, are skipped, and so are keys the set has already.
CREATE FUNCTION llm._eval_cases_from_feedback(caller name, login name, set text, since timestamptz,
											  min_score numeric)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s llm.eval_sets := llm._eval_set_of(caller, login, set);
	n integer;
BEGIN
	IF since IS NULL THEN
		RAISE EXCEPTION 'since must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'For example now() - interval ''7 days''.';
	END IF;
	IF min_score = 'NaN' THEN
		RAISE EXCEPTION 'min_score must be a number, not NaN' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO llm.eval_cases (set_name, case_key, vars, input, expected, tags, source)
	SELECT s.name, 'call:' || f.call_id, io.vars, io.input,
		   to_jsonb(coalesce(f.correction, CASE WHEN f.score >= min_score THEN io.output END)),
		   ARRAY['feedback'] || CASE WHEN io.prompt_name IS NOT NULL
									 THEN ARRAY['prompt:' || io.prompt_name || '/' || io.prompt_version]
									 ELSE '{}' END,
		   'feedback:' || f.id
	  FROM (SELECT DISTINCT ON (fb.call_id) fb.*
			  FROM llm.feedback fb
			 WHERE fb.created_at >= since
			 ORDER BY fb.call_id, fb.created_at DESC, fb.id DESC) f
	  JOIN llm.call_io io ON io.entry_id = f.call_id
	 -- the ledger's rule, on the copy of the call's roles llm.call_io keeps
	 WHERE ((io.role = caller AND (io.login_role = login OR caller = login))
			OR pg_has_role(caller, 'llm_admin', 'MEMBER'))
	   AND (io.vars IS NOT NULL OR io.input IS NOT NULL)
	   AND coalesce(f.correction, CASE WHEN f.score >= min_score THEN io.output END) IS NOT NULL
	 ORDER BY f.call_id
	ON CONFLICT (set_name, case_key) DO NOTHING;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_cases_from_feedback(name, name, text, timestamptz, numeric) FROM PUBLIC;

REVOKE ALL ON FUNCTION llm_feedback(text, numeric, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_cases_from_feedback(text, timestamptz, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_feedback(text, numeric, text, text) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_cases_from_feedback(text, timestamptz, numeric) TO llm_user;

-- Evaluation, fourth part: a run as one self-contained HTML page, for
-- people who would rather look than read.  Everything on the page comes
-- from the report's own sources (llm.eval_report, llm_eval_compare,
-- llm.eval_case_stats, llm.eval_results), read with the caller's rights:
-- row level security decides which runs a caller can draw.

-- Text made safe for HTML, in element content and in quoted attribute
-- values alike: every value that goes into a page passes through it.
CREATE FUNCTION llm._html_escape(value text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT replace(replace(replace(replace(replace(value,
		'&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;'), '''', '&#39;')
$$;
COMMENT ON FUNCTION llm._html_escape(text) IS
	'text escaped for HTML: & < > " and '' as character references';
REVOKE ALL ON FUNCTION llm._html_escape(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._html_escape(text) TO llm_user;

-- The page: a title, a summary table per variant, three bar charts in
-- inline SVG, the paired comparison of the first variant against each
-- other one, and the matrix of cases x variants.  Variants come in the
-- order the run names them (so the first is the one the run was given
-- first: usually the baseline), cases in byte order of their keys (COLLATE
-- "C": the same page whatever the database's collation).  No script, no
-- link, no font or image from elsewhere, and a Content-Security-Policy
-- that forbids fetching anything, should a value ever slip through.  No
-- clock is read: the same run gives the same page.
CREATE FUNCTION llm_eval_report_html(run bigint)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	-- the matrix shows at most this many cases: a page a browser opens at once
	max_cases constant integer := 500;
	-- the longest output, expected answer or error shown in a cell
	max_chars constant integer := 200;
	-- the distinct outputs shown per cell (repeats that differ)
	max_outputs constant integer := 3;
	-- the charts: labels left of bar_x, bars up to bar_w long, a row per variant
	bar_x constant integer := 170;
	bar_w constant integer := 330;
	row_h constant integer := 26;
	na constant text := '<span class="na">n/a</span>';
	css constant text := '
body { font: 14px/1.45 system-ui, sans-serif; color: #222; margin: 24px; max-width: 1400px; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 16px; margin: 28px 0 6px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
thead th { background: #f3f3f3; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.na { color: #888; }
.note { color: #555; font-size: 13px; }
figure { display: inline-block; margin: 4px 24px 4px 0; vertical-align: top; }
figcaption { font-weight: 600; }
svg text { font: 12px sans-serif; fill: #222; }
svg .bar { fill: #4a78b5; }
svg .whisker { stroke: #111; stroke-width: 1.5; }
svg .axis { stroke: #999; }
tr.differ th, tr.differ td { background: #fff3cd; }
.o { font-family: monospace; font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere; max-width: 380px; margin-top: 2px; }
.e { color: #a00; font-size: 12px; overflow-wrap: anywhere; max-width: 380px; }
.s { font-weight: 600; }
';
	r llm.eval_runs;
	names text[];
	n integer;
	score double precision[];
	score_low double precision[];
	score_high double precision[];
	cost double precision[];
	p95 double precision[];
	score_txt text[];
	cost_txt text[];
	p95_txt text[];
	vals double precision[];
	txts text[];
	top double precision;
	total_cases bigint;
	c record;
	page text;
	part text;
BEGIN
	IF run IS NULL THEN
		RAISE EXCEPTION 'the evaluation run must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- row level security: another role's run looks like no run at all
	SELECT * INTO r FROM llm.eval_runs e WHERE e.id = llm_eval_report_html.run;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'evaluation run % does not exist', run
			USING ERRCODE = 'undefined_object',
				  HINT = 'You see only your own runs: SELECT id FROM llm.eval_runs lists them.';
	END IF;
	names := ARRAY(SELECT v.value ->> 'name'
					 FROM jsonb_array_elements(r.variants) WITH ORDINALITY AS v(value, ord)
					ORDER BY v.ord);
	n := cardinality(names);

	-- the report's figures per variant, in the run's order (NULL: none)
	SELECT array_agg(rep.mean_score ORDER BY v.ord),
		   array_agg(rep.score_low ORDER BY v.ord),
		   array_agg(rep.score_high ORDER BY v.ord),
		   array_agg(rep.cost_per_1000_cases::double precision ORDER BY v.ord),
		   array_agg(rep.latency_p95_ms ORDER BY v.ord),
		   array_agg(round(rep.mean_score::numeric, 3)::text ORDER BY v.ord),
		   array_agg('$' || CASE WHEN rep.cost_per_1000_cases >= 100 THEN round(rep.cost_per_1000_cases)
								 WHEN rep.cost_per_1000_cases >= 1 THEN round(rep.cost_per_1000_cases, 2)
								 ELSE round(rep.cost_per_1000_cases, 4) END ORDER BY v.ord),
		   array_agg(round(rep.latency_p95_ms::numeric)::text || ' ms' ORDER BY v.ord)
	  INTO score, score_low, score_high, cost, p95, score_txt, cost_txt, p95_txt
	  FROM unnest(names) WITH ORDINALITY AS v(name, ord)
	  LEFT JOIN llm.eval_report rep ON rep.run = r.id AND rep.variant = v.name;

	page := format(
'<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src ''none''; style-src ''unsafe-inline''">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Evaluation run %s</title>
<style>%s</style>
</head>
<body>
<h1>Evaluation run %s</h1>
<p>Set <b>%s</b>, state <b>%s</b>, variants: %s.<br>
%s cases &times; %s variants &times; %s repeats: %s requests; scorer <b>%s</b>.</p>
',
		r.id, css, r.id, llm._html_escape(r.set_name), llm._html_escape(r.state),
		(SELECT string_agg('<b>' || llm._html_escape(v) || '</b>', ', ' ORDER BY o)
		   FROM unnest(names) WITH ORDINALITY AS x(v, o)),
		r.cases, n, r.repeats, r.requests, llm._html_escape(r.scorer ->> 'type'));

	-- the summary table
	SELECT string_agg(format(
'<tr><th scope="row">%s</th><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td></tr>',
			llm._html_escape(v.name),
			coalesce(rep.cases::text, na), coalesce(rep.results::text, na),
			coalesce(rep.errors::text, na), coalesce(rep.pending::text, na),
			coalesce(score_txt[v.ord]
					 || coalesce(' [' || round(rep.score_low::numeric, 3) || ', '
								 || round(rep.score_high::numeric, 3) || ']', ''), na),
			coalesce(round(rep.pass_rate * 100, 1) || ' %', na),
			coalesce(round(rep.consistency::numeric * 100, 1) || ' %', na),
			coalesce(round(rep.json_valid_rate * 100, 1) || ' %', na),
			coalesce(p95_txt[v.ord], na), coalesce(cost_txt[v.ord], na)), E'\n' ORDER BY v.ord)
	  INTO part
	  FROM unnest(names) WITH ORDINALITY AS v(name, ord)
	  LEFT JOIN llm.eval_report rep ON rep.run = r.id AND rep.variant = v.name;
	page := page || '<h2>Summary</h2>
<table>
<thead><tr><th>variant</th><th>cases</th><th>results</th><th>errors</th><th>pending</th><th>mean score [95% interval]</th><th>pass rate</th><th>consistency</th><th>JSON valid</th><th>p95 latency</th><th>cost per 1,000 cases</th></tr></thead>
<tbody>
' || coalesce(part, '') || '
</tbody>
</table>
<p class="note">Mean score: over cases of each case''s mean over its repeats, with a 95% Student''s t interval. Consistency: the share of cases whose repeats all gave the same output. Cost: USD per 1,000 answered requests.</p>
';

	-- three bar charts: the score on its own scale (0 to 1) with the
	-- interval as a whisker; cost and latency scaled to the largest value
	page := page || '<h2>By variant</h2>
';
	FOR k IN 1..3 LOOP
		vals := CASE k WHEN 1 THEN score WHEN 2 THEN cost ELSE p95 END;
		txts := CASE k WHEN 1 THEN score_txt WHEN 2 THEN cost_txt ELSE p95_txt END;
		top := CASE WHEN k = 1 THEN 1 ELSE (SELECT max(x) FROM unnest(vals) x) END;
		SELECT string_agg(format(
'<g><title>%s: %s</title><text x="0" y="%s">%s</text>%s%s<text x="%s" y="%s">%s</text></g>',
				llm._html_escape(names[i]), coalesce(txts[i], 'n/a'),
				y + 13,
				llm._html_escape(CASE WHEN length(names[i]) > 24 THEN left(names[i], 23) || '~' ELSE names[i] END),
				CASE WHEN vals[i] IS NOT NULL
					 THEN format('<rect class="bar" x="%s" y="%s" width="%s" height="18"/>', bar_x, y, w) END,
				CASE WHEN wl IS NOT NULL
					 THEN format('<path class="whisker" d="M%s %sH%sM%s %sV%sM%s %sV%s"/>',
								 bar_x + wl, y + 9, bar_x + wh, bar_x + wl, y + 4, y + 14,
								 bar_x + wh, y + 4, y + 14) END,
				bar_x + greatest(w, coalesce(wh, 0)) + 6, y + 13,
				coalesce(txts[i], 'n/a')), E'\n' ORDER BY i)
		  INTO part
		  FROM generate_subscripts(names, 1) AS i,
			   LATERAL (SELECT 8 + (i - 1) * row_h AS y,
							   CASE WHEN vals[i] IS NULL OR NOT top > 0 THEN 0
									ELSE round((least(greatest(vals[i] / top, 0), 1) * bar_w)::numeric, 1) END AS w,
							   CASE WHEN k = 1 AND score_low[i] IS NOT NULL AND score_high[i] IS NOT NULL
									THEN round((least(greatest(score_low[i], 0), 1) * bar_w)::numeric, 1) END AS wl,
							   CASE WHEN k = 1 AND score_low[i] IS NOT NULL AND score_high[i] IS NOT NULL
									THEN round((least(greatest(score_high[i], 0), 1) * bar_w)::numeric, 1) END AS wh) g;
		page := page || format(
'<figure><figcaption>%s</figcaption>
<svg width="%s" height="%s" viewBox="0 0 %s %s" role="img" aria-label="%s">
<line class="axis" x1="%s" y1="4" x2="%s" y2="%s"/>
%s
<text x="%s" y="%s">0</text><text x="%s" y="%s" text-anchor="end">%s</text>
</svg></figure>
',
			CASE k WHEN 1 THEN 'Mean score, 95% interval' WHEN 2 THEN 'Cost per 1,000 cases (USD)'
				   ELSE 'p95 latency' END,
			bar_x + bar_w + 90, n * row_h + 30, bar_x + bar_w + 90, n * row_h + 30,
			CASE k WHEN 1 THEN 'mean score by variant' WHEN 2 THEN 'cost per 1,000 cases by variant'
				   ELSE 'p95 latency by variant' END,
			bar_x, bar_x, n * row_h + 8,
			coalesce(part, ''),
			bar_x - 3, n * row_h + 24, bar_x + bar_w, n * row_h + 24,
			CASE WHEN k = 1 THEN '1'
				 WHEN top IS NULL THEN 'n/a'
				 WHEN k = 2 THEN '$' || CASE WHEN top >= 100 THEN round(top::numeric)
											 WHEN top >= 1 THEN round(top::numeric, 2)
											 ELSE round(top::numeric, 4) END
				 ELSE round(top::numeric) || ' ms' END);
	END LOOP;

	-- the paired comparison: the first variant against each other one
	page := page || '<h2>Paired comparison</h2>
';
	IF n < 2 THEN
		page := page || '<p>One variant: nothing to compare.</p>
';
	ELSE
		part := '';
		FOR i IN 2..n LOOP
			IF NOT EXISTS (SELECT FROM llm.eval_variant_stats s
							WHERE s.run = r.id AND s.variant IN (names[1], names[i]) AND s.results > 0
						   HAVING count(*) = 2) THEN
				part := part || format('<tr><th scope="row">%s</th><th scope="row">%s</th><td colspan="6">no results to compare</td></tr>
', llm._html_escape(names[1]), llm._html_escape(names[i]));
				CONTINUE;
			END IF;
			SELECT * INTO c FROM @extschema@.llm_eval_compare(r.id, names[1], names[i]);
			part := part || format(
'<tr><th scope="row">%s</th><th scope="row">%s</th><td class="n">%s</td><td class="n">%s / %s / %s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s / %s</td><td class="n">%s</td></tr>
',
				llm._html_escape(names[1]), llm._html_escape(names[i]), c.cases,
				coalesce(c.wins::text, na), coalesce(c.ties::text, na), coalesce(c.losses::text, na),
				coalesce(round(c.mean_diff::numeric, 3)
						 || coalesce(' [' || round(c.diff_low::numeric, 3) || ', '
									 || round(c.diff_high::numeric, 3) || ']', ''), na),
				coalesce(CASE WHEN c.sign_test_p < 0.001 THEN '&lt; 0.001'
							  ELSE round(c.sign_test_p::numeric, 3)::text END, na),
				coalesce(c.a_only_passed::text, na), coalesce(c.b_only_passed::text, na),
				coalesce(CASE WHEN c.mcnemar_p < 0.001 THEN '&lt; 0.001'
							  ELSE round(c.mcnemar_p::numeric, 3)::text END, na));
		END LOOP;
		page := page || '<table>
<thead><tr><th>a</th><th>b</th><th>paired cases</th><th>a wins / ties / a loses</th><th>mean score a &minus; b [95% interval]</th><th>sign test p</th><th>passed by a only / b only</th><th>McNemar p</th></tr></thead>
<tbody>
' || part || '</tbody>
</table>
<p class="note">Per case, the mean score over its repeats. The interval is a bootstrap one; a case passes when at least half its repeats passed.</p>
';
	END IF;

	-- the matrix: cases x variants, the rows where variants' outputs differ
	-- highlighted (errors are no output: they are shown, but differ from nothing)
	SELECT count(DISTINCT cs.case_key) INTO total_cases FROM llm.eval_case_stats cs WHERE cs.run = r.id;
	WITH shown AS (
		SELECT cs.case_key FROM llm.eval_case_stats cs WHERE cs.run = r.id
		 GROUP BY cs.case_key ORDER BY cs.case_key COLLATE "C" LIMIT max_cases),
	outputs AS (
		-- each distinct output of a cell, numbered in the order of its first repeat
		SELECT o.*, row_number() OVER (PARTITION BY o.case_key, o.variant
									   ORDER BY o.first, o.output COLLATE "C") AS nth
		  FROM (SELECT res.case_key, res.variant, res.output, min(res.repeat) AS first, count(*) AS times
				  FROM llm.eval_results res JOIN shown s ON s.case_key = res.case_key
				 WHERE res.run = r.id AND res.output IS NOT NULL
				 GROUP BY res.case_key, res.variant, res.output) o),
	cell_outputs AS (
		SELECT o.case_key, o.variant,
			   string_agg(format('<div class="o">%s%s</div>',
								 CASE WHEN length(o.output) > max_chars
									  THEN llm._html_escape(left(o.output, max_chars)) || '&hellip;'
									  ELSE llm._html_escape(o.output) END,
								 CASE WHEN o.times > 1 THEN ' <span class="na">(&times;' || o.times || ')</span>' END),
						  '' ORDER BY o.nth) FILTER (WHERE o.nth <= max_outputs)
			   || CASE WHEN count(*) > max_outputs
					   THEN '<div class="na">and ' || count(*) - max_outputs || ' other outputs</div>'
					   ELSE '' END AS html,
			   array_agg(o.output ORDER BY o.output COLLATE "C") AS output_set
		  FROM outputs o
		 GROUP BY o.case_key, o.variant),
	cell_errors AS (
		SELECT res.case_key, res.variant, count(*) AS errors, min(res.error COLLATE "C") AS error
		  FROM llm.eval_results res JOIN shown s ON s.case_key = res.case_key
		 WHERE res.run = r.id AND res.error IS NOT NULL
		 GROUP BY res.case_key, res.variant),
	cells AS (
		SELECT s.case_key, v.ord, co.output_set,
			   CASE WHEN cs.case_key IS NULL THEN '<td class="na">no results</td>'
					ELSE '<td><span class="s">'
						 || coalesce(round(cs.mean_score, 3)::text, na) || '</span>'
						 || coalesce(co.html, '')
						 || CASE WHEN ce.errors > 0
								 THEN format('<div class="e">%s: %s</div>',
											 CASE WHEN ce.errors = 1 THEN 'error' ELSE ce.errors || ' errors' END,
											 CASE WHEN length(ce.error) > max_chars
												  THEN llm._html_escape(left(ce.error, max_chars)) || '&hellip;'
												  ELSE llm._html_escape(ce.error) END)
								 ELSE '' END
						 || '</td>' END AS html
		  FROM shown s
		 CROSS JOIN unnest(names) WITH ORDINALITY AS v(name, ord)
		  LEFT JOIN llm.eval_case_stats cs
				 ON cs.run = r.id AND cs.variant = v.name AND cs.case_key = s.case_key
		  LEFT JOIN cell_outputs co ON co.case_key = s.case_key AND co.variant = v.name
		  LEFT JOIN cell_errors ce ON ce.case_key = s.case_key AND ce.variant = v.name),
	case_rows AS (
		SELECT x.case_key, count(DISTINCT x.output_set) > 1 AS differ,
			   string_agg(x.html, '' ORDER BY x.ord) AS html
		  FROM cells x
		 GROUP BY x.case_key)
	SELECT string_agg(format('<tr%s><th scope="row">%s</th><td>%s</td>%s</tr>',
							 CASE WHEN cr.differ THEN ' class="differ"' END,
							 llm._html_escape(cr.case_key),
							 coalesce('<div class="o">'
									  || CASE WHEN length(e.shown) > max_chars
											  THEN llm._html_escape(left(e.shown, max_chars)) || '&hellip;'
											  ELSE llm._html_escape(e.shown) END || '</div>', na),
							 cr.html),
					  E'\n' ORDER BY cr.case_key COLLATE "C")
	  INTO part
	  FROM case_rows cr
	  LEFT JOIN llm.eval_cases ec ON ec.set_name = r.set_name AND ec.case_key = cr.case_key
	  LEFT JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(ec.expected) = 'string' THEN ec.expected #>> '{}'
									 ELSE ec.expected::text END AS shown) e ON true;

	page := page || '<h2>Cases</h2>
';
	IF total_cases = 0 THEN
		page := page || '<p>No results yet.</p>
';
	ELSE
		page := page || format('<p class="note">%s Highlighted: cases whose variants gave different outputs. A cell shows the case''s mean score over its repeats, its distinct outputs and its errors.</p>
<table>
<thead><tr><th>case</th><th>expected</th>%s</tr></thead>
<tbody>
%s
</tbody>
</table>
',
			CASE WHEN total_cases > max_cases
				 THEN format('The first %s cases of %s by key are shown; %s are left out.',
							 max_cases, total_cases, total_cases - max_cases)
				 ELSE format('All %s cases are shown.', total_cases) END,
			(SELECT string_agg('<th>' || llm._html_escape(v) || '</th>', '' ORDER BY o)
			   FROM unnest(names) WITH ORDINALITY AS x(v, o)),
			part);
	END IF;
	RETURN page || '<p class="note">Made by llm_eval_report_html: everything is on this page, nothing is fetched from elsewhere.</p>
</body>
</html>';
END
$$;
COMMENT ON FUNCTION llm_eval_report_html(bigint) IS
	'an evaluation run as one self-contained HTML page: summary, charts, paired comparison, cases x variants';
REVOKE ALL ON FUNCTION llm_eval_report_html(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_eval_report_html(bigint) TO llm_user;

-- Evaluation drift: a watch re-runs an evaluation set against what a stored
-- prompt's label serves now, on a pg_cron schedule, and llm.eval_drift
-- compares the latest score with the score right after the label last
-- moved (a deploy, split or rollback: a promotion).  A drop beyond the
-- watch's threshold is announced on channel llm_eval_drift when the run
-- that shows it ends.
--
-- This file sorts before 99_eval_report.sql: the view reads the mean
-- score from llm.eval_variant_stats (98_eval_collect.sql), the same sums
-- llm.eval_report's mean_score is computed from, rather than the report.

CREATE TABLE llm.eval_watches (
	id				bigserial PRIMARY KEY,
	set_name		text NOT NULL REFERENCES llm.eval_sets,
	prompt			text NOT NULL,
	label			text NOT NULL,
	schedule		text NOT NULL,		-- pg_cron syntax, minutes (UTC with pg_cron 1.4)
	threshold		numeric NOT NULL CHECK (threshold >= 0 AND threshold < 1),
	scorer			jsonb NOT NULL DEFAULT '{"type": "exact"}' CHECK (jsonb_typeof(scorer) = 'object'),
	job_name		text NOT NULL,		-- the pg_cron job's name: 'llm-eval-watch-<id>'
	owner			name NOT NULL,
	login_role		name NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE llm.eval_watches IS
	'evaluation watches: a set re-run on a schedule against a prompt label''s current variant, with the drop in score that counts as drift';

-- Each run a watch queued, and where the label stood when it was queued:
-- runs queued under the same label move are comparable.
CREATE TABLE llm.eval_watch_runs (
	watch			bigint NOT NULL REFERENCES llm.eval_watches ON DELETE CASCADE,
	run				bigint NOT NULL REFERENCES llm.eval_runs ON DELETE CASCADE,
	label_move		bigint,				-- llm.prompt_label_history.id of the label's last move then
	variants		jsonb NOT NULL,		-- what the label pointed at then
	notified_at		timestamptz,		-- when its drift was announced on llm_eval_drift
	PRIMARY KEY (watch, run)
);
CREATE INDEX eval_watch_runs_run_idx ON llm.eval_watch_runs (run);
COMMENT ON TABLE llm.eval_watch_runs IS
	'the runs of each evaluation watch, with the label''s position when each was queued';

SELECT pg_catalog.pg_extension_config_dump('llm.eval_watches', '');
SELECT pg_catalog.pg_extension_config_dump('llm.eval_watches_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('llm.eval_watch_runs', '');

-- The rule of llm.eval_runs: own rows by acting and login role, and llm_admin.
ALTER TABLE llm.eval_watches ENABLE ROW LEVEL SECURITY;
CREATE POLICY eval_watches_own_rows ON llm.eval_watches FOR SELECT
	USING ((owner = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
ALTER TABLE llm.eval_watch_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY eval_watch_runs_own_rows ON llm.eval_watch_runs FOR SELECT
	USING (watch IN (SELECT w.id FROM llm.eval_watches w));
GRANT SELECT ON llm.eval_watches, llm.eval_watch_runs TO llm_user;

-- Per watch: the baseline (the first run queued after the label's last
-- move to have finished), the latest finished run queued since that move,
-- and the drop between their mean scores.  Runs are ordered by id (the
-- order they were queued in).  Runs queued before the move measured what
-- the label served before: they count for nothing here.
CREATE VIEW llm.eval_drift WITH (security_invoker = true) AS
SELECT w.id AS watch, w.set_name, w.prompt, w.label, w.schedule, w.threshold,
	   mv.changed_at AS label_moved_at,
	   b.run AS baseline_run, b.score AS baseline_score,
	   l.run AS latest_run, l.score AS latest_score, l.finished_at AS latest_finished_at,
	   b.score - l.score AS score_drop,
	   coalesce(b.score - l.score > w.threshold, false) AS drifted,
	   l.notified_at, n.runs, w.owner
  FROM llm.eval_watches w
  LEFT JOIN LATERAL (
		SELECT h.id, h.changed_at FROM llm.prompt_label_history h
		 WHERE h.name = w.prompt AND h.label = w.label
		 ORDER BY h.id DESC LIMIT 1) mv ON true
  LEFT JOIN LATERAL (
		SELECT wr.run, (s.score_sum / nullif(s.scored_cases, 0))::double precision AS score
		  FROM llm.eval_watch_runs wr
		  JOIN llm.eval_runs r ON r.id = wr.run AND r.state = 'done'
		  LEFT JOIN llm.eval_variant_stats s ON s.run = wr.run AND s.variant = w.label
		 WHERE wr.watch = w.id AND wr.label_move IS NOT DISTINCT FROM mv.id
		 ORDER BY wr.run LIMIT 1) b ON true
  LEFT JOIN LATERAL (
		SELECT wr.run, (s.score_sum / nullif(s.scored_cases, 0))::double precision AS score,
			   r.finished_at, wr.notified_at
		  FROM llm.eval_watch_runs wr
		  JOIN llm.eval_runs r ON r.id = wr.run AND r.state = 'done'
		  LEFT JOIN llm.eval_variant_stats s ON s.run = wr.run AND s.variant = w.label
		 WHERE wr.watch = w.id AND wr.label_move IS NOT DISTINCT FROM mv.id
		 ORDER BY wr.run DESC LIMIT 1) l ON true
  LEFT JOIN LATERAL (
		SELECT count(*) AS runs
		  FROM llm.eval_watch_runs wr
		  JOIN llm.eval_runs r ON r.id = wr.run AND r.state = 'done'
		 WHERE wr.watch = w.id AND wr.label_move IS NOT DISTINCT FROM mv.id) n ON true;
COMMENT ON VIEW llm.eval_drift IS
	'per evaluation watch: the score right after the label last moved, the latest score, the drop, and whether it exceeds the threshold';
GRANT SELECT ON llm.eval_drift TO llm_user;

-- A pg_cron schedule (five fields, minute granularity, as pg_cron 1.4
-- reads it), with its fields separated by one space; else 22023.  pg_cron
-- checks it again when it schedules the job; this check is what a watch
-- gets when pg_cron is not installed.
CREATE FUNCTION llm._eval_cron_schedule(schedule text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	fields text[] := regexp_split_to_array(btrim(lower(schedule)), '\s+');
	low integer[] := ARRAY[0, 0, 1, 1, 0];
	high integer[] := ARRAY[59, 23, 31, 12, 7];
	names text[] := ARRAY[NULL, NULL, NULL,
						  'jan feb mar apr may jun jul aug sep oct nov dec', 'sun mon tue wed thu fri sat'];
	item text;
	parts text[];
	value text;
	bad boolean := false;
BEGIN
	IF btrim(lower(schedule)) IN ('@yearly', '@annually', '@monthly', '@weekly', '@daily', '@hourly') THEN
		RETURN btrim(lower(schedule));
	END IF;
	IF cardinality(fields) <> 5 THEN
		bad := true;
	ELSE
		<<fields>>
		FOR i IN 1 .. 5 LOOP
			FOREACH item IN ARRAY string_to_array(fields[i], ',') LOOP
				parts := regexp_match(item, '^(\*|([0-9]+|[a-z]{3})(-([0-9]+|[a-z]{3}))?)(/([0-9]+))?$');
				IF parts IS NULL OR (parts[6] IS NOT NULL AND (length(parts[6]) > 3 OR parts[6]::integer < 1)) THEN
					bad := true;
					EXIT fields;
				END IF;
				FOREACH value IN ARRAY ARRAY[parts[2], parts[4]] LOOP
					CONTINUE WHEN value IS NULL;
					IF value ~ '^[0-9]+$' THEN
						bad := length(value) > 3 OR value::integer NOT BETWEEN low[i] AND high[i];
					ELSE
						bad := names[i] IS NULL OR NOT value = ANY (string_to_array(names[i], ' '));
					END IF;
					EXIT fields WHEN bad;
				END LOOP;
			END LOOP;
		END LOOP;
	END IF;
	IF bad THEN
		RAISE EXCEPTION 'invalid schedule "%"', schedule
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give a cron schedule: minute hour day-of-month month day-of-week, e.g. ''0 3 * * *'' for 03:00 every day (UTC with pg_cron 1.4, which has no seconds).';
	END IF;
	RETURN array_to_string(fields, ' ');
END
$$;
REVOKE ALL ON FUNCTION llm._eval_cron_schedule(text) FROM PUBLIC;

-- The watch, if caller may run, check or remove it; else 42704.
CREATE FUNCTION llm._eval_watch_of(caller name, login name, watch bigint)
RETURNS llm.eval_watches
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w llm.eval_watches;
BEGIN
	IF watch IS NULL THEN
		RAISE EXCEPTION 'the evaluation watch must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO w FROM llm.eval_watches e WHERE e.id = watch;
	IF NOT FOUND OR NOT llm._eval_owns(caller, login, w.owner, w.login_role) THEN
		RAISE EXCEPTION 'evaluation watch % does not exist', watch
			USING ERRCODE = 'undefined_object',
				  HINT = 'List yours with SELECT * FROM llm.eval_watches.';
	END IF;
	RETURN w;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_of(name, name, bigint) FROM PUBLIC;

-- Announces the watch's drift, once per run: when the latest finished run
-- since the label's last move dropped beyond the threshold and was not
-- announced yet.  The payload names the watch, the run and the drop, and
-- nothing else: NOTIFY has no privileges, every session that listens on
-- llm_eval_drift in the database receives it; the rest is in
-- llm.eval_drift, under row level security.  Whether the watch drifted.
CREATE FUNCTION llm._eval_watch_announce(watch_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	d record;
BEGIN
	SELECT * INTO d FROM llm.eval_drift e WHERE e.watch = watch_id;
	IF NOT FOUND OR NOT d.drifted THEN
		RETURN false;
	END IF;
	-- the row lock makes one of two sessions checking at once the announcer
	UPDATE llm.eval_watch_runs wr SET notified_at = now()
	 WHERE wr.watch = watch_id AND wr.run = d.latest_run AND wr.notified_at IS NULL;
	IF FOUND THEN
		PERFORM pg_notify('llm_eval_drift',
						  jsonb_build_object('watch', watch_id, 'run', d.latest_run,
											 'drop', round(d.score_drop::numeric, 6))::text);
	END IF;
	RETURN true;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_announce(bigint) FROM PUBLIC;

-- When a run ends done, its watches (if it is a watch's run) are checked:
-- the drift is announced as soon as the run that shows it is scored, by
-- whichever process ends the run (the scorer, the worker, llm_eval_wait).
-- A failed check must not undo the end of the run: it is a warning.
CREATE FUNCTION llm._eval_watch_run_ended()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	watch_id bigint;
BEGIN
	FOR watch_id IN SELECT wr.watch FROM llm.eval_watch_runs wr WHERE wr.run = NEW.id LOOP
		BEGIN
			PERFORM llm._eval_watch_announce(watch_id);
		EXCEPTION WHEN OTHERS THEN
			RAISE WARNING 'could not check evaluation watch % for drift: %', watch_id, SQLERRM
				USING HINT = format('SELECT llm_eval_watch_check(%s) checks it again.', watch_id);
		END;
	END LOOP;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_run_ended() FROM PUBLIC;
CREATE TRIGGER eval_runs_watch_ended AFTER UPDATE OF state ON llm.eval_runs
	FOR EACH ROW WHEN (NEW.state = 'done' AND OLD.state IS DISTINCT FROM 'done')
	EXECUTE FUNCTION llm._eval_watch_run_ended();

-- Records a watch for llm_eval_watch, which schedules it as the caller.
CREATE FUNCTION llm.llm_eval_watch_store(set text, label text, every text, threshold numeric,
										 prompt text, scorer jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;

CREATE FUNCTION llm._eval_watch_store(caller name, login name, set text, label text, every text,
									  threshold numeric, prompt text, scorer jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s llm.eval_sets;
	fn regprocedure;
	watch_id bigint;
BEGIN
	IF set IS NULL OR label IS NULL OR every IS NULL OR threshold IS NULL THEN
		RAISE EXCEPTION 'the set, label, schedule and threshold must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	s := llm._eval_set_of(caller, login, set);
	-- the label of a prompt: 'prompt:label', or the label with prompt => ...
	-- (neither name may hold a ":")
	IF prompt IS NULL THEN
		IF position(':' IN label) = 0 THEN
			RAISE EXCEPTION 'name the prompt of label "%"', label
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Give the label as ''prompt:label'', e.g. ''triage:production'', or add prompt => ''triage''.';
		END IF;
		prompt := split_part(label, ':', 1);
		label := substr(label, position(':' IN label) + 1);
	ELSIF position(':' IN label) > 0 THEN
		RAISE EXCEPTION 'give the prompt once: label "%" and prompt "%"', label, prompt
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT EXISTS (SELECT FROM llm.prompts p WHERE p.name = prompt) THEN
		RAISE EXCEPTION 'prompt "%" does not exist', prompt
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it with llm_prompt_create.';
	END IF;
	IF NOT EXISTS (SELECT FROM llm.prompt_labels l WHERE l.name = prompt AND l.label = _eval_watch_store.label) THEN
		RAISE EXCEPTION 'prompt "%" has no label "%"', prompt, label
			USING ERRCODE = 'undefined_object',
				  HINT = format('List them with SELECT label FROM llm.prompt_labels WHERE name = %L.', prompt);
	END IF;
	IF threshold = 'NaN' OR threshold < 0 OR threshold >= 1 THEN
		RAISE EXCEPTION 'invalid threshold %', threshold
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The threshold is the drop in mean score (0 to 1) that counts as drift, from 0 up to but not including 1: 0.05 is 5 points.';
	END IF;
	every := llm._eval_cron_schedule(every);
	-- the scorer is checked as llm_eval_run checks it, so that a mistake
	-- shows now rather than in the first scheduled run's error
	scorer := coalesce(scorer, '{"type": "exact"}');
	IF jsonb_typeof(scorer) <> 'object' OR jsonb_typeof(scorer -> 'type') IS DISTINCT FROM 'string' THEN
		RAISE EXCEPTION 'a scorer is a JSON object with a "type"' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF scorer ->> 'type' = 'function' THEN
		fn := to_regprocedure((scorer ->> 'function') || '(text, jsonb, jsonb)');
		IF fn IS NULL OR NOT has_function_privilege(caller, fn, 'EXECUTE') THEN
			RAISE EXCEPTION 'function %(text, jsonb, jsonb) does not exist', scorer ->> 'function'
				USING ERRCODE = 'undefined_function';
		END IF;
	ELSIF scorer ->> 'type' = 'judge' THEN
		IF NOT EXISTS (SELECT FROM llm.prompts p WHERE p.name = scorer ->> 'prompt') THEN
			RAISE EXCEPTION 'the judge scorer''s prompt "%" does not exist', scorer ->> 'prompt'
				USING ERRCODE = 'undefined_object';
		END IF;
	ELSE
		-- refuses an unknown scorer; with no output an embedding_similarity
		-- scorer checks its model and sends no request
		PERFORM @extschema@.llm_eval_score(scorer,
			CASE WHEN scorer ->> 'type' <> 'embedding_similarity' THEN 'x' END, '"x"', '{}');
	END IF;
	watch_id := nextval('llm.eval_watches_id_seq');
	INSERT INTO llm.eval_watches (id, set_name, prompt, label, schedule, threshold, scorer, job_name,
								  owner, login_role)
	VALUES (watch_id, s.name, prompt, label, every, threshold, scorer, 'llm-eval-watch-' || watch_id,
			caller, login);
	RETURN watch_id;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_store(name, name, text, text, text, numeric, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.llm_eval_watch_store(text, text, text, numeric, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.llm_eval_watch_store(text, text, text, numeric, text, jsonb) TO llm_user;

-- Records the watch (through the gate above), then schedules its job with
-- the caller's own rights: pg_cron runs a job as the role that scheduled
-- it, so a job scheduled by a SECURITY DEFINER body would run the
-- caller's watch as the extension's owner.  Without pg_cron, or without
-- the right to use it, the statement to run is returned as the recipe.
CREATE FUNCTION llm_eval_watch(set text, label text, every text, threshold numeric,
							   prompt text DEFAULT NULL, scorer jsonb DEFAULT '{"type": "exact"}',
							   OUT watch bigint, OUT job bigint, OUT recipe text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w llm.eval_watches;
BEGIN
	watch := llm.llm_eval_watch_store(set, label, every, threshold, prompt, scorer);
	SELECT * INTO w FROM llm.eval_watches e WHERE e.id = watch;
	recipe := format('SELECT cron.schedule(%L, %L, %L)', w.job_name, w.schedule,
					 format('SELECT %s.llm_eval_watch_run(%s)', '@extschema@', watch));
	IF NOT EXISTS (SELECT FROM pg_extension x WHERE x.extname = 'pg_cron') THEN
		RAISE NOTICE 'pg_cron is not installed in this database: watch % runs when llm_eval_watch_run(%) is called', watch, watch
			USING HINT = 'Install pg_cron here (the database of cron.database_name) and run the recipe: ' || recipe || ';';
	ELSIF NOT has_schema_privilege('cron', 'USAGE') THEN
		RAISE NOTICE 'role "%" may not schedule pg_cron jobs: watch % runs when llm_eval_watch_run(%) is called', current_user, watch, watch
			USING HINT = format('A superuser runs GRANT USAGE ON SCHEMA cron TO %I; then run the recipe as %I: %s;',
								current_user, current_user, recipe);
	ELSE
		EXECUTE recipe INTO job;
	END IF;
END
$$;
COMMENT ON FUNCTION llm_eval_watch(text, text, text, numeric, text, jsonb) IS
	'watch a prompt label''s score on an evaluation set: re-run it on a pg_cron schedule (the job, or the recipe to schedule it) and flag a drop beyond threshold';

-- One scheduled re-evaluation: queues the set against the label's
-- current variant (the label is resolved now, as llm_eval_run resolves
-- it), unless the watch's previous run is still running.  The run id, or
-- NULL when nothing was queued.
CREATE FUNCTION llm_eval_watch_run(watch bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_watch_run(bigint) IS
	'run an evaluation watch once (what its pg_cron job calls): the queued run''s id, NULL while the previous one still runs';

CREATE FUNCTION llm._eval_watch_run(caller name, login name, watch bigint)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w llm.eval_watches := llm._eval_watch_of(caller, login, watch);
	variants jsonb;
	move bigint;
	busy bigint;
	run_id bigint;
BEGIN
	-- a run that ended unannounced (its check failed) is announced now
	PERFORM llm._eval_watch_announce(w.id);
	SELECT wr.run INTO busy FROM llm.eval_watch_runs wr JOIN llm.eval_runs r ON r.id = wr.run
	 WHERE wr.watch = w.id AND r.state = 'running' ORDER BY wr.run DESC LIMIT 1;
	IF FOUND THEN
		RAISE NOTICE 'run % of evaluation watch % is still running: nothing queued', busy, w.id;
		RETURN NULL;
	END IF;
	-- the label cannot move until this run is queued: the move recorded is
	-- the one the run renders with
	SELECT l.variants INTO variants FROM llm.prompt_labels l
	 WHERE l.name = w.prompt AND l.label = w.label FOR SHARE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'prompt "%" has no label "%"', w.prompt, w.label
			USING ERRCODE = 'undefined_object';
	END IF;
	SELECT max(h.id) INTO move FROM llm.prompt_label_history h WHERE h.name = w.prompt AND h.label = w.label;
	run_id := llm._eval_run(caller, login, w.set_name,
							jsonb_build_array(jsonb_build_object('name', w.label, 'prompt', w.prompt,
																 'label', w.label)),
							1, w.scorer, NULL);
	INSERT INTO llm.eval_watch_runs (watch, run, label_move, variants) VALUES (w.id, run_id, move, variants);
	RETURN run_id;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_run(name, name, bigint) FROM PUBLIC;

CREATE FUNCTION llm_eval_watch_check(watch bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_watch_check(bigint) IS
	'whether an evaluation watch''s latest score dropped beyond its threshold; announces it on llm_eval_drift if not yet done';

CREATE FUNCTION llm._eval_watch_check(caller name, login name, watch bigint)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN llm._eval_watch_announce((llm._eval_watch_of(caller, login, watch)).id);
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_check(name, name, bigint) FROM PUBLIC;

-- Removes a watch for llm_eval_unwatch: its pg_cron job's name.
CREATE FUNCTION llm.llm_eval_watch_drop(watch bigint)
RETURNS text
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;

CREATE FUNCTION llm._eval_watch_drop(caller name, login name, watch bigint)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w llm.eval_watches := llm._eval_watch_of(caller, login, watch);
BEGIN
	DELETE FROM llm.eval_watches e WHERE e.id = w.id;
	RETURN w.job_name;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_drop(name, name, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.llm_eval_watch_drop(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.llm_eval_watch_drop(bigint) TO llm_user;

-- Removes the watch (its runs stay), then its pg_cron job with the
-- caller's own rights, as it was scheduled.  A job the caller may not
-- remove (another role's: an llm_admin removing a user's watch) is named
-- in a warning; it then fails on every run, as the watch is gone.
CREATE FUNCTION llm_eval_unwatch(watch bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	job_name text := llm.llm_eval_watch_drop(watch);
	removed bigint := 0;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_extension x WHERE x.extname = 'pg_cron') THEN
		RETURN true;
	END IF;
	IF has_schema_privilege('cron', 'USAGE') THEN
		-- cron.job shows a role its own jobs (a superuser all of them)
		EXECUTE 'SELECT count(cron.unschedule(j.jobid)) FROM cron.job j WHERE j.jobname = $1'
			INTO removed USING job_name;
	END IF;
	IF removed = 0 THEN
		RAISE WARNING 'no pg_cron job "%" of role "%" was removed', job_name, current_user
			USING HINT = format('If the watch had a job, the role that scheduled it removes it with SELECT cron.unschedule(%L).',
								job_name);
	END IF;
	RETURN true;
END
$$;
COMMENT ON FUNCTION llm_eval_unwatch(bigint) IS
	'remove an evaluation watch and its pg_cron job (its runs stay)';

REVOKE ALL ON FUNCTION llm_eval_watch(text, text, text, numeric, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_watch_run(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_watch_check(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_unwatch(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_eval_watch(text, text, text, numeric, text, jsonb) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_watch_run(bigint) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_watch_check(bigint) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_unwatch(bigint) TO llm_user;

-- The life cycle of a prompt and a tuned model after evaluation: whether a
-- fine-tuned model pays for its training (llm_breakeven), and moving a
-- label to a better variant only on the evidence of an evaluation run
-- (llm_prompt_promote).

-- The label history records promotions, and refused promotions, with their
-- evidence.  Written as ALTERs so that a fresh install and an upgrade run
-- the same statements.
ALTER TABLE llm.prompt_label_history ADD COLUMN evidence jsonb;
COMMENT ON COLUMN llm.prompt_label_history.evidence IS
	'for promote and promote_refused: the run, the paired test, the costs and the reasons (llm_prompt_promote)';
ALTER TABLE llm.prompt_label_history DROP CONSTRAINT prompt_label_history_action_check,
	ADD CONSTRAINT prompt_label_history_action_check
		CHECK (action IN ('deploy', 'split', 'rollback', 'promote', 'promote_refused'));

-- What a variant of an evaluation run ran: its stored prompt, version and
-- model (zero rows when the run has no such variant).  A variant that named
-- a version ran that version, with its own model or the version's; one
-- that named a label (or neither) ran what its requests recorded, when that
-- is one version and one model.  Read with the caller's rights.
CREATE FUNCTION llm._eval_variant_target(run bigint, variant text)
RETURNS TABLE (prompt text, version integer, model text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH picked AS (
		SELECT x.value AS spec
		  FROM llm.eval_runs r, jsonb_array_elements(r.variants) x
		 WHERE r.id = _eval_variant_target.run AND x.value ->> 'name' = _eval_variant_target.variant
		 LIMIT 1),
	asked AS (
		SELECT k.spec ->> 'prompt' AS prompt,
			   CASE WHEN k.spec ? 'prompt' THEN
					coalesce((k.spec ->> 'version')::integer,
							 (SELECT min(q.prompt_version) FROM llm.eval_results res
								JOIN llm.requests q ON q.id = res.request_id
							   WHERE res.run = _eval_variant_target.run
								 AND res.variant = _eval_variant_target.variant
							  HAVING count(DISTINCT q.prompt_version) = 1)) END AS version,
			   k.spec
		  FROM picked k)
	SELECT a.prompt, a.version,
		   coalesce(a.spec ->> 'model',
					CASE WHEN a.spec ? 'version'
						 THEN (SELECT p.model FROM llm.prompts p
								WHERE p.name = a.prompt AND p.version = a.version)
						 ELSE (SELECT min(q.model) FROM llm.eval_results res
								 JOIN llm.requests q ON q.id = res.request_id
								WHERE res.run = _eval_variant_target.run
								  AND res.variant = _eval_variant_target.variant
							   HAVING count(DISTINCT q.model) = 1) END)
	  FROM asked a
$$;
REVOKE ALL ON FUNCTION llm._eval_variant_target(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._eval_variant_target(bigint, text) TO llm_user;

-- Break-even of a fine-tuned model against a baseline.
--
-- Per call, for each side v: n = answered calls, C = everything they cost
-- (failed attempts included), E = what the failed ones cost, in and out =
-- mean input and output tokens of an answered call.  cost_per_call = C / n.
-- The saving (baseline b minus tuned t) is split in three parts that sum to
-- it exactly:
--	 from_tokens  = ((in_b - in_t) * input_price_b + (out_b - out_t) * output_price_b) / 1e6
--	 from_retries = E_b / n_b - E_t / n_t
--	 from_prices  = saving - from_tokens - from_retries
-- When every answered call cost its tokens at its model's prices,
-- from_prices is in_t * (input_price_b - input_price_t) + out_t *
-- (output_price_b - output_price_t), over 1e6; cached-input discounts and
-- prices changed since the calls land there too.
-- Break-even: n calls pay for the training when n * saving >= training
-- cost, so ceil(training / saving) with a positive saving, 0 when the
-- training cost nothing, and never (NULL) otherwise.
--
-- SECURITY INVOKER: the ledger, jobs and runs are read with the caller's
-- row level security.
CREATE FUNCTION llm_breakeven(tuned text, baseline text, run bigint DEFAULT NULL,
							  calls_per_day numeric DEFAULT NULL)
RETURNS TABLE (source text, tuned_model text, baseline_model text, training_job bigint,
			   training_cost_usd numeric, tuned_calls bigint, baseline_calls bigint,
			   tuned_cost_per_call numeric, baseline_cost_per_call numeric, saving_per_call numeric,
			   breakeven_calls numeric, never boolean, breakeven_days numeric,
			   saving_from_tokens numeric, saving_from_prices numeric, saving_from_retries numeric,
			   tuned_input_tokens_per_call numeric, baseline_input_tokens_per_call numeric,
			   tuned_output_tokens_per_call numeric, baseline_output_tokens_per_call numeric)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t_model text;
	b_model text;
	t_price llm.models;
	b_price llm.models;
	job_id bigint;
	job_ref text;
	job_cost numeric;
	train numeric;
	-- per side: answered calls, total cost, cost of failures, token sums
	t_n bigint; t_c numeric; t_e numeric; t_in numeric; t_out numeric;
	b_n bigint; b_c numeric; b_e numeric; b_in numeric; b_out numeric;
	t_cpc numeric; b_cpc numeric;
	saving numeric;
	part_tokens numeric;
	part_retries numeric;
	calls numeric;
	side text;
BEGIN
	IF tuned IS NULL OR baseline IS NULL THEN
		RAISE EXCEPTION 'the tuned and the baseline must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF calls_per_day IS NOT NULL AND calls_per_day <= 0 THEN
		RAISE EXCEPTION 'calls_per_day must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s.', calls_per_day);
	END IF;

	IF run IS NOT NULL THEN
		IF NOT EXISTS (SELECT FROM llm.eval_runs r WHERE r.id = llm_breakeven.run) THEN
			RAISE EXCEPTION 'evaluation run % does not exist', run
				USING ERRCODE = 'undefined_object',
					  HINT = 'SELECT id, set_name FROM llm.eval_runs lists the runs you can read.';
		END IF;
		FOREACH side IN ARRAY ARRAY[tuned, baseline] LOOP
			IF NOT EXISTS (SELECT FROM llm._eval_variant_target(run, side)) THEN
				RAISE EXCEPTION 'evaluation run % has no variant "%"', run, side
					USING ERRCODE = 'undefined_object',
						  HINT = format('Its variants: %s.',
										(SELECT string_agg(x.value ->> 'name', ', ')
										   FROM llm.eval_runs r, jsonb_array_elements(r.variants) x
										  WHERE r.id = llm_breakeven.run));
			END IF;
		END LOOP;
		t_model := (SELECT x.model FROM llm._eval_variant_target(run, tuned) x);
		b_model := (SELECT x.model FROM llm._eval_variant_target(run, baseline) x);
		IF t_model IS NULL OR b_model IS NULL THEN
			RAISE EXCEPTION 'the model variant "%" ran is not known',
							CASE WHEN t_model IS NULL THEN tuned ELSE baseline END
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'It named a label, and its requests are gone or ran more than one model.';
		END IF;
		-- answered: with an output; a failed request's cost counts as a retry's
		SELECT count(*) FILTER (WHERE res.output IS NOT NULL),
			   coalesce(sum(res.cost_usd), 0),
			   coalesce(sum(res.cost_usd) FILTER (WHERE res.output IS NULL), 0),
			   coalesce(sum(res.input_tokens) FILTER (WHERE res.output IS NOT NULL), 0),
			   coalesce(sum(res.output_tokens) FILTER (WHERE res.output IS NOT NULL), 0)
		  INTO t_n, t_c, t_e, t_in, t_out
		  FROM llm.eval_results res WHERE res.run = llm_breakeven.run AND res.variant = tuned;
		SELECT count(*) FILTER (WHERE res.output IS NOT NULL),
			   coalesce(sum(res.cost_usd), 0),
			   coalesce(sum(res.cost_usd) FILTER (WHERE res.output IS NULL), 0),
			   coalesce(sum(res.input_tokens) FILTER (WHERE res.output IS NOT NULL), 0),
			   coalesce(sum(res.output_tokens) FILTER (WHERE res.output IS NOT NULL), 0)
		  INTO b_n, b_c, b_e, b_in, b_out
		  FROM llm.eval_results res WHERE res.run = llm_breakeven.run AND res.variant = baseline;
	ELSE
		t_model := tuned;
		b_model := baseline;
		FOREACH side IN ARRAY ARRAY[tuned, baseline] LOOP
			IF NOT EXISTS (SELECT FROM llm.models m WHERE m.name = side) THEN
				RAISE EXCEPTION 'model "%" does not exist', side
					USING ERRCODE = 'undefined_object',
						  HINT = 'Without a run, tuned and baseline are model names: SELECT name FROM llm.models lists them.';
			END IF;
		END LOOP;
		-- the last 30 days of calls to each model; training rows (source
		-- finetune, booked on the base model) and cache hits are not calls
		-- of the model
		SELECT count(*) FILTER (WHERE c.outcome = 'ok'),
			   coalesce(sum(c.cost_usd), 0),
			   coalesce(sum(c.cost_usd) FILTER (WHERE c.outcome <> 'ok'), 0),
			   coalesce(sum(c.input_tokens) FILTER (WHERE c.outcome = 'ok'), 0),
			   coalesce(sum(c.output_tokens) FILTER (WHERE c.outcome = 'ok'), 0)
		  INTO t_n, t_c, t_e, t_in, t_out
		  FROM llm.calls c
		 WHERE c.model = tuned AND c.created_at >= now() - interval '30 days'
		   AND NOT c.cache_hit AND c.source <> 'finetune';
		SELECT count(*) FILTER (WHERE c.outcome = 'ok'),
			   coalesce(sum(c.cost_usd), 0),
			   coalesce(sum(c.cost_usd) FILTER (WHERE c.outcome <> 'ok'), 0),
			   coalesce(sum(c.input_tokens) FILTER (WHERE c.outcome = 'ok'), 0),
			   coalesce(sum(c.output_tokens) FILTER (WHERE c.outcome = 'ok'), 0)
		  INTO b_n, b_c, b_e, b_in, b_out
		  FROM llm.calls c
		 WHERE c.model = baseline AND c.created_at >= now() - interval '30 days'
		   AND NOT c.cache_hit AND c.source <> 'finetune';
	END IF;
	IF t_n = 0 OR b_n = 0 THEN
		RAISE EXCEPTION '% "%" has no answered call to measure',
						CASE WHEN run IS NULL THEN 'model' ELSE 'variant' END,
						CASE WHEN t_n = 0 THEN tuned ELSE baseline END
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = CASE WHEN run IS NULL
								THEN 'No successful call of it in the last 30 days of the ledger that you can read.'
								ELSE format('No result of it in run %s has an output.', run) END,
				  HINT = 'Measure it in an evaluation run, or after some calls.';
	END IF;

	-- the training cost: what the ledger booked for the tuned model's job
	SELECT * INTO t_price FROM llm.models m WHERE m.name = t_model;
	SELECT * INTO b_price FROM llm.models m WHERE m.name = b_model;
	job_id := t_price.finetune_job;
	IF job_id IS NULL THEN
		RAISE EXCEPTION 'model "%" was not fine-tuned by llmext: its training cost is not on record', t_model
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = CASE WHEN t_price.kind = 'fine_tuned'
								THEN 'It was registered with llm_model_create, without a fine-tuning job.'
								ELSE 'It is a base model.' END,
				  HINT = 'Compare per-call costs with llm_eval_compare, or llm.usage_by_model.';
	END IF;
	SELECT j.provider_job_id, j.cost_usd INTO job_ref, job_cost FROM llm.finetune_jobs j WHERE j.id = job_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'permission denied to read the training cost of model "%"', t_model
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Fine-tuning job %s belongs to another role.', job_id),
				  HINT = 'Its submitter or an llm_admin can compute the break-even.';
	END IF;
	-- the worker books the cost once, with the provider's job id; the job's
	-- own figure stands in when the ledger has no row of it
	SELECT sum(c.cost_usd) INTO train FROM llm.calls c
	 WHERE c.source = 'finetune' AND c.request_id = job_ref;
	train := coalesce(train, job_cost, 0);

	t_cpc := trim_scale(round(t_c / t_n, 12));
	b_cpc := trim_scale(round(b_c / b_n, 12));
	saving := trim_scale(b_cpc - t_cpc);
	part_tokens := trim_scale(round(((b_in / b_n - t_in / t_n) * b_price.input_price
									 + (b_out / b_n - t_out / t_n) * b_price.output_price) / 1000000, 12));
	part_retries := trim_scale(round(b_e / b_n - t_e / t_n, 12));
	calls := CASE WHEN train = 0 THEN 0
				  WHEN saving > 0 THEN ceil(train / saving) END;

	RETURN QUERY SELECT
		CASE WHEN run IS NULL THEN 'ledger' ELSE 'run' END, t_model, b_model, job_id,
		train, t_n, b_n, t_cpc, b_cpc, saving,
		calls, calls IS NULL,
		trim_scale(round(calls / calls_per_day, 2)),
		part_tokens, trim_scale(saving - part_tokens - part_retries), part_retries,
		trim_scale(round(t_in / t_n, 6)), trim_scale(round(b_in / b_n, 6)),
		trim_scale(round(t_out / t_n, 6)), trim_scale(round(b_out / b_n, 6));
END
$$;
COMMENT ON FUNCTION llm_breakeven(text, text, bigint, numeric) IS
	'whether a fine-tuned model pays for its training: per-call costs (from a run or the last 30 days of the ledger), the saving split into tokens, prices and retries, the calls and days to break even';
REVOKE ALL ON FUNCTION llm_breakeven(text, text, bigint, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_breakeven(text, text, bigint, numeric) TO llm_user;

-- Promotion gated by evidence: the gate (llm_gate) calls
-- llm._prompt_promote with the caller's roles.
CREATE FUNCTION llm_prompt_promote(name text, label text, run bigint, candidate text,
								   min_gain numeric DEFAULT 0, alpha numeric DEFAULT 0.05,
								   max_cost_ratio numeric DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;

-- The candidate beats the variant serving the label now when, paired per
-- case in the run (llm_eval_compare(run, candidate, current)), mean_diff >=
-- min_gain, it won more cases than it lost, and the sign test's p < alpha;
-- and, with max_cost_ratio, its cost per case is at most max_cost_ratio
-- times the current one's (llm.eval_report).  Otherwise the label stays and
-- the reasons are returned.  Either way the decision and its evidence are a
-- row of the label history: 'promote' (undone by llm_prompt_rollback like
-- a deploy) or 'promote_refused'.
CREATE FUNCTION llm._prompt_promote(caller name, login name, name text, label text, run bigint,
									candidate text, min_gain numeric, alpha numeric,
									max_cost_ratio numeric)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	serving jsonb;
	served_version integer;
	served_model text;
	run_row llm.eval_runs;
	cand record;
	cur_name text;
	cur record;
	cmp record;
	test jsonb;
	cand_cost numeric;
	cur_cost numeric;
	pending bigint;
	reasons text[] := '{}';
	proof jsonb;
	promoted boolean;
	new_variants jsonb;
BEGIN
	IF name IS NULL OR label IS NULL OR run IS NULL OR candidate IS NULL
	   OR min_gain IS NULL OR alpha IS NULL THEN
		RAISE EXCEPTION 'name, label, run, candidate, min_gain and alpha must not be NULL'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Leave max_cost_ratio NULL to promote whatever the candidate costs.';
	END IF;
	IF alpha <= 0 OR alpha >= 1 THEN
		RAISE EXCEPTION 'alpha must be between 0 and 1'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s.', alpha),
				  HINT = 'It is the largest p-value of the sign test that counts as significant, such as 0.05.';
	END IF;
	-- a negative gain would promote a worse variant; scores are 0..1
	IF min_gain < 0 OR min_gain > 1 THEN
		RAISE EXCEPTION 'min_gain must be from 0 to 1'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s.', min_gain),
				  HINT = 'It is the least mean score difference (scores are 0 to 1) the candidate must win by.';
	END IF;
	IF max_cost_ratio IS NOT NULL AND max_cost_ratio <= 0 THEN
		RAISE EXCEPTION 'max_cost_ratio must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s.', max_cost_ratio),
				  HINT = 'For example 1.2: the candidate may cost 20 % more per case than the current variant.';
	END IF;
	IF NOT EXISTS (SELECT FROM llm.prompts p WHERE p.name = _prompt_promote.name) THEN
		RAISE EXCEPTION 'prompt "%" does not exist', name
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it with llm_prompt_create.';
	END IF;
	-- the decision and the move see the same label
	SELECT l.variants INTO serving FROM llm.prompt_labels l
	 WHERE l.name = _prompt_promote.name AND l.label = _prompt_promote.label FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'prompt "%" has no label "%"', name, label
			USING ERRCODE = 'undefined_object',
				  HINT = 'A promotion moves a label that serves a variant now: deploy one first with llm_prompt_deploy.';
	END IF;
	SELECT * INTO run_row FROM llm.eval_runs r WHERE r.id = _prompt_promote.run;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'evaluation run % does not exist', run
			USING ERRCODE = 'undefined_object',
				  HINT = 'SELECT id, set_name, variants FROM llm.eval_runs lists the runs.';
	END IF;
	SELECT * INTO cand FROM llm._eval_variant_target(run, candidate);
	IF NOT FOUND THEN
		RAISE EXCEPTION 'evaluation run % has no variant "%"', run, candidate
			USING ERRCODE = 'undefined_object',
				  HINT = format('Its variants: %s.',
								(SELECT string_agg(x.value ->> 'name', ', ')
								   FROM jsonb_array_elements(run_row.variants) x));
	END IF;
	IF cand.prompt IS DISTINCT FROM name THEN
		RAISE EXCEPTION 'variant "%" of run % is not a version of prompt "%"', candidate, run, name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = CASE WHEN cand.prompt IS NULL THEN 'It is a model with a plain system prompt.'
								ELSE format('It ran prompt "%s".', cand.prompt) END,
				  HINT = 'A label can only be moved to a stored version of its own prompt.';
	END IF;
	IF cand.version IS NULL OR cand.model IS NULL THEN
		RAISE EXCEPTION 'the version and model variant "%" of run % ran are not known', candidate, run
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'It named a label, and its requests are gone or ran more than one version or model.',
				  HINT = 'Evaluate variants that name a version.';
	END IF;

	-- the evidence: which variant serves the label now, and the paired test
	IF jsonb_array_length(serving) > 1 THEN
		reasons := reasons || format('label "%s" is split between %s variants: a promotion replaces one variant',
									 label, jsonb_array_length(serving));
	ELSE
		served_version := (serving -> 0 ->> 'version')::integer;
		served_model := coalesce(serving -> 0 ->> 'model',
								 (SELECT p.model FROM llm.prompts p
								   WHERE p.name = _prompt_promote.name AND p.version = served_version));
		IF served_version = cand.version AND served_model IS NOT DISTINCT FROM cand.model THEN
			reasons := reasons || format('label "%s" already serves version %s with model %s',
										 label, served_version, coalesce(served_model, 'NULL'));
		ELSE
			-- the first variant of the run (in its order) that ran the same
			SELECT x.value ->> 'name' INTO cur_name
			  FROM jsonb_array_elements(run_row.variants) WITH ORDINALITY x(value, i),
				   LATERAL llm._eval_variant_target(run, x.value ->> 'name') t
			 WHERE t.prompt = _prompt_promote.name AND t.version = served_version
			   AND t.model IS NOT DISTINCT FROM served_model
			 ORDER BY x.i LIMIT 1;
			IF cur_name IS NULL THEN
				reasons := reasons || format('run %s has no variant of what label "%s" serves now (version %s with model %s)',
											 run, label, served_version, coalesce(served_model, 'NULL'));
			END IF;
		END IF;
	END IF;
	IF cur_name IS NOT NULL THEN
		SELECT coalesce(sum(s.pending), 0) INTO pending FROM llm.eval_variant_stats s
		 WHERE s.run = _prompt_promote.run AND s.variant IN (candidate, cur_name);
		IF pending > 0 THEN
			reasons := reasons || format('run %s still waits for %s of the results of these variants', run, pending);
		END IF;
		SELECT * INTO cmp FROM @extschema@.llm_eval_compare(run, candidate, cur_name);
		test := jsonb_build_object(
			'method', 'paired sign test', 'cases', cmp.cases, 'wins', cmp.wins, 'ties', cmp.ties,
			'losses', cmp.losses, 'mean_diff', cmp.mean_diff, 'diff_low', cmp.diff_low,
			'diff_high', cmp.diff_high, 'sign_test_p', cmp.sign_test_p,
			'candidate_only_passed', cmp.a_only_passed, 'current_only_passed', cmp.b_only_passed,
			'mcnemar_p', cmp.mcnemar_p);
		IF coalesce(cmp.cases, 0) = 0 THEN
			reasons := reasons || format('no case of run %s was scored for both variants', run);
		ELSE
			IF cmp.mean_diff < min_gain THEN
				reasons := reasons || format('the mean score gain %s is below min_gain %s',
											 trim_scale(round(cmp.mean_diff::numeric, 6)), min_gain);
			END IF;
			IF cmp.wins <= cmp.losses OR cmp.sign_test_p >= alpha THEN
				reasons := reasons || format('not significant: %s wins, %s losses, sign test p = %s, not below alpha %s',
											 cmp.wins, cmp.losses, trim_scale(round(cmp.sign_test_p::numeric, 6)), alpha);
			END IF;
		END IF;
		SELECT e.cost_per_case INTO cand_cost FROM llm.eval_report e
		 WHERE e.run = _prompt_promote.run AND e.variant = candidate;
		SELECT e.cost_per_case INTO cur_cost FROM llm.eval_report e
		 WHERE e.run = _prompt_promote.run AND e.variant = cur_name;
		IF max_cost_ratio IS NOT NULL THEN
			IF cand_cost IS NULL OR cur_cost IS NULL THEN
				reasons := reasons || format('the cost per case of %s was not measured',
											 CASE WHEN cand_cost IS NULL THEN 'the candidate' ELSE 'the current variant' END);
			-- multiplied, not divided: a current variant that cost nothing
			-- admits only a candidate that costs nothing
			ELSIF cand_cost > max_cost_ratio * cur_cost THEN
				reasons := reasons || format('it costs %s USD per case, %s times the current variant''s %s: more than max_cost_ratio %s',
											 trim_scale(round(cand_cost, 12)),
											 coalesce(trim_scale(round(cand_cost / nullif(cur_cost, 0), 6))::text, 'infinitely many'),
											 trim_scale(round(cur_cost, 12)), max_cost_ratio);
			END IF;
		END IF;
	END IF;

	promoted := cardinality(reasons) = 0;
	proof := jsonb_build_object(
		'run', run, 'set', run_row.set_name,
		'candidate', jsonb_build_object('variant', candidate, 'version', cand.version, 'model', cand.model),
		'current', CASE WHEN jsonb_array_length(serving) = 1 THEN
						jsonb_build_object('variant', cur_name, 'version', served_version, 'model', served_model) END,
		'test', test,
		'cost', CASE WHEN cur_name IS NOT NULL THEN jsonb_build_object(
					'candidate_per_case', trim_scale(round(cand_cost, 12)),
					'current_per_case', trim_scale(round(cur_cost, 12)),
					'ratio', trim_scale(round(cand_cost / nullif(cur_cost, 0), 6))) END,
		'criteria', jsonb_build_object('min_gain', min_gain, 'alpha', alpha, 'max_cost_ratio', max_cost_ratio),
		'reasons', to_jsonb(reasons));

	IF promoted THEN
		new_variants := jsonb_build_array(jsonb_build_object(
			'version', cand.version,
			'model', (SELECT x.value ->> 'model' FROM jsonb_array_elements(run_row.variants) x
					   WHERE x.value ->> 'name' = candidate LIMIT 1),
			'weight', 1));
		-- a variant that named a label or no model ran a model found above:
		-- the label keeps to it explicitly unless it is the version's own
		IF new_variants -> 0 ->> 'model' IS NULL
		   AND cand.model IS DISTINCT FROM (SELECT p.model FROM llm.prompts p
											 WHERE p.name = _prompt_promote.name AND p.version = cand.version) THEN
			new_variants := jsonb_set(new_variants, '{0,model}', to_jsonb(cand.model));
		END IF;
		PERFORM llm._prompt_move_label(caller, name, label, new_variants, 'promote');
	ELSE
		INSERT INTO llm.prompt_label_history (name, label, action, from_variants, to_variants, changed_by)
		VALUES (name, label, 'promote_refused', serving, serving, caller);
	END IF;
	-- the row just written, by this session
	UPDATE llm.prompt_label_history h SET evidence = proof
	 WHERE h.id = currval('llm.prompt_label_history_id_seq');
	RETURN jsonb_build_object('promoted', promoted, 'name', name, 'label', label,
							  'from', serving, 'to', coalesce(new_variants, serving),
							  'reasons', to_jsonb(reasons), 'evidence', proof);
END
$$;
COMMENT ON FUNCTION llm_prompt_promote(text, text, bigint, text, numeric, numeric, numeric) IS
	'move a label to a variant of an evaluation run only if it beats the current one by min_gain (sign test under alpha) at most max_cost_ratio times the cost: the decision and its evidence, recorded in the label history';
REVOKE ALL ON FUNCTION llm._prompt_promote(name, name, text, text, bigint, text, numeric, numeric, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_prompt_promote(text, text, bigint, text, numeric, numeric, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_prompt_promote(text, text, bigint, text, numeric, numeric, numeric) TO llm_admin;

-- a rollback undoes a promotion like a deploy, never a refusal
CREATE OR REPLACE FUNCTION llm._prompt_rollback(caller name, login name, name text, label text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	current_variants jsonb;
	move record;
BEGIN
	label := coalesce(label, 'production');
	SELECT l.variants INTO current_variants FROM llm.prompt_labels l
	 WHERE l.name = _prompt_rollback.name AND l.label = _prompt_rollback.label FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'prompt "%" has no label "%"', coalesce(name, 'NULL'), label
			USING ERRCODE = 'undefined_object',
				  HINT = 'Deploy a version first with llm_prompt_deploy.';
	END IF;
	-- the move that set the label to what it is now, not itself undone (a
	-- refused promotion, 'promote_refused', moved nothing)
	SELECT h.* INTO move FROM llm.prompt_label_history h
	 WHERE h.name = _prompt_rollback.name AND h.label = _prompt_rollback.label
	   AND h.action IN ('deploy', 'split', 'promote') AND NOT h.rolled_back
	   AND h.to_variants = current_variants
	 ORDER BY h.id DESC LIMIT 1;
	IF NOT FOUND OR move.from_variants IS NULL THEN
		RAISE EXCEPTION 'label "%" of prompt "%" has no earlier version to roll back to', label, name
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'See llm.prompt_label_history; deploy a version explicitly with llm_prompt_deploy.';
	END IF;
	UPDATE llm.prompt_label_history SET rolled_back = true WHERE id = move.id;
	PERFORM llm._prompt_move_label(caller, name, label, move.from_variants, 'rollback');
END
$$;
COMMENT ON FUNCTION llm_prompt_rollback(text, text) IS
	'move a label back to where it pointed before its last deploy, split or promotion';

-- Providers and modes: the provider kind 'anthropic' (Messages API),
-- prompt-cache write prices, and embedding models (llm_embed).
ALTER TABLE llm.providers DROP CONSTRAINT providers_kind_check,
	ADD CONSTRAINT providers_kind_check CHECK (kind IN ('openai', 'anthropic'));
ALTER TABLE llm.models ADD COLUMN cache_write_price numeric CHECK (cache_write_price >= 0);
ALTER TABLE llm.models ADD COLUMN use text NOT NULL DEFAULT 'chat' CHECK (use IN ('chat', 'embedding'));
COMMENT ON COLUMN llm.models.cache_write_price IS 'price of input tokens written to the provider''s prompt cache (Anthropic); NULL means the input price';
COMMENT ON COLUMN llm.models.limits IS 'this model''s own max_concurrency, requests_per_minute and tokens_per_minute, on top of its provider''s; max_training_example_tokens bounds the examples it is fine-tuned on; max_batch_inputs (default 100) the inputs of one embedding request';
COMMENT ON COLUMN llm.models.use IS 'what the model is called for: chat (llm_complete, llm_chat, ...) or embedding (llm_embed, llm_embed_batch); added in 0.4.0';
CREATE OR REPLACE FUNCTION llm._check_model_limits(limits jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	v jsonb;
BEGIN
	IF jsonb_typeof(limits) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'model limits must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example ''{"max_concurrency": 8, "requests_per_minute": 500}''.';
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(limits) LOOP
		IF k NOT IN ('max_concurrency', 'requests_per_minute', 'tokens_per_minute',
					 'max_training_example_tokens', 'max_batch_inputs') THEN
			RAISE EXCEPTION 'unknown model limit "%"', k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Known limits: max_concurrency, requests_per_minute, tokens_per_minute, max_training_example_tokens, max_batch_inputs.';
		END IF;
		PERFORM llm._check_limit('model limit', k, v);
	END LOOP;
END
$$;

DROP FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer);
CREATE FUNCTION llm_model_create(
	name text,
	provider text,
	remote_model text,
	kind text DEFAULT 'base',
	base_model text DEFAULT NULL,
	input_price numeric DEFAULT 0,
	output_price numeric DEFAULT 0,
	cached_input_price numeric DEFAULT NULL,
	params jsonb DEFAULT '{}',
	limits jsonb DEFAULT '{}',
	training_price numeric DEFAULT NULL,
	tuned_input_price numeric DEFAULT NULL,
	tuned_cached_input_price numeric DEFAULT NULL,
	tuned_output_price numeric DEFAULT NULL,
	training_set text DEFAULT NULL,
	training_version integer DEFAULT NULL,
	cache_write_price numeric DEFAULT NULL,
	use text DEFAULT 'chat')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	base_kind text;
	bad_key text;
	set_prompt text;
	set_prompt_version integer;
	requested_version integer := training_version;
BEGIN
	IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$' THEN
		RAISE EXCEPTION 'invalid model name "%"', coalesce(name, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use up to 128 letters, digits, "_", ".", ":", "/" or "-", starting with a letter or digit.';
	END IF;
	IF NOT EXISTS (SELECT FROM llm.providers p WHERE p.name = llm_model_create.provider) THEN
		RAISE EXCEPTION 'provider "%" does not exist', coalesce(provider, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it first with llm_provider_create(name, base_url).';
	END IF;
	IF remote_model IS NULL OR remote_model = '' THEN
		RAISE EXCEPTION 'remote_model must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'It is the id the provider knows the model by, such as gpt-4o-mini.';
	END IF;
	kind := coalesce(kind, 'base');
	IF kind NOT IN ('base', 'fine_tuned') THEN
		RAISE EXCEPTION 'invalid model kind "%"', kind
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use ''base'' or ''fine_tuned''.';
	END IF;
	IF kind = 'fine_tuned' AND base_model IS NULL THEN
		RAISE EXCEPTION 'a fine-tuned model must name its base_model'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass base_model => the registered model it was trained from.';
	END IF;
	IF kind = 'base' AND base_model IS NOT NULL THEN
		RAISE EXCEPTION 'only a fine-tuned model has a base_model'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass kind => ''fine_tuned''.';
	END IF;
	IF base_model IS NOT NULL THEN
		SELECT m.kind INTO base_kind FROM llm.models m WHERE m.name = llm_model_create.base_model;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'base model "%" does not exist', base_model
				USING ERRCODE = 'undefined_object',
					  HINT = 'Register the base model first.';
		END IF;
	END IF;
	IF coalesce(input_price, 0) < 0 OR coalesce(output_price, 0) < 0 OR cached_input_price < 0 OR cache_write_price < 0
	   OR training_price < 0 OR tuned_input_price < 0 OR tuned_cached_input_price < 0 OR tuned_output_price < 0 THEN
		RAISE EXCEPTION 'prices must not be negative'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Prices are in USD per million tokens.';
	END IF;
	use := coalesce(use, 'chat');
	IF use NOT IN ('chat', 'embedding') THEN
		RAISE EXCEPTION 'invalid model use "%"', use
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use ''chat'' (the default) or ''embedding''.';
	END IF;
	IF base_model IS NOT NULL AND use IS DISTINCT FROM
	   (SELECT m.use FROM llm.models m WHERE m.name = llm_model_create.base_model) THEN
		RAISE EXCEPTION 'a fine-tuned model has the use of its base model'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass use => the base model''s use.';
	END IF;
	params := coalesce(params, '{}');
	IF jsonb_typeof(params) <> 'object' THEN
		RAISE EXCEPTION 'params must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example ''{"temperature": 0}''.';
	END IF;
	SELECT k INTO bad_key FROM jsonb_object_keys(params) k
	 WHERE k IN ('model', 'messages', 'input', 'stream', 'on_error', 'on_invalid', 'cache', 'cache_ttl') LIMIT 1;
	IF bad_key IS NOT NULL THEN
		RAISE EXCEPTION 'params must not set "%"', bad_key
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'params holds provider parameters such as temperature or max_completion_tokens.';
	END IF;
	limits := coalesce(limits, '{}');
	PERFORM llm._check_model_limits(limits);
	IF training_version IS NOT NULL AND training_set IS NULL THEN
		RAISE EXCEPTION 'a training_version needs a training_set'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF training_set IS NOT NULL THEN
		-- lineage of a model trained elsewhere: the set (its latest version
		-- when none is named) and the prompt it was rendered through
		IF kind <> 'fine_tuned' THEN
			RAISE EXCEPTION 'only a fine-tuned model has a training set'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Pass kind => ''fine_tuned'' and its base_model.';
		END IF;
		SELECT s.version, s.prompt_name, s.prompt_version INTO training_version, set_prompt, set_prompt_version
		  FROM llm.training_sets s
		 WHERE s.name = llm_model_create.training_set
		   AND (requested_version IS NULL OR s.version = requested_version)
		 ORDER BY s.version DESC LIMIT 1;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'training set "%" has no version %', training_set,
							coalesce(requested_version::text, 'at all')
				USING ERRCODE = 'undefined_object',
					  HINT = 'SELECT name, version FROM llm.training_sets lists them.';
		END IF;
	END IF;
	IF EXISTS (SELECT FROM llm.models m WHERE m.name = llm_model_create.name) THEN
		RAISE EXCEPTION 'model "%" already exists', name
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Drop it with llm_model_drop, or register the new version under another name.';
	END IF;

	INSERT INTO llm.models (name, provider, remote_model, kind, base_model,
							input_price, output_price, cached_input_price, params, limits,
							training_price, tuned_input_price, tuned_cached_input_price,
							tuned_output_price, training_set, training_version, prompt_name,
							prompt_version, cache_write_price, use)
	VALUES (name, provider, remote_model, kind, base_model,
			coalesce(input_price, 0), coalesce(output_price, 0), cached_input_price, params,
			limits, training_price, tuned_input_price, tuned_cached_input_price,
			tuned_output_price, training_set, training_version, set_prompt, set_prompt_version,
			cache_write_price, use);
END
$$;
COMMENT ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer, numeric, text) IS
	'register a base or fine-tuned model, for chat or embeddings, under a name SQL can use';

REVOKE ALL ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer, numeric, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer, numeric, text) TO llm_admin;

CREATE OR REPLACE FUNCTION llm_provider_create(
	name text,
	base_url text,
	kind text DEFAULT 'openai',
	api_key text DEFAULT NULL,
	key_env text DEFAULT NULL,
	options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid provider name "%"', coalesce(name, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use up to 63 letters, digits, "_", "." or "-", starting with a letter or digit.';
	END IF;
	IF base_url IS NULL OR base_url !~ '^https?://[^\s/@]+(/[^\s]*)?$' THEN
		RAISE EXCEPTION 'invalid base_url "%" for provider "%"', coalesce(base_url, 'NULL'), name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give an http:// or https:// URL without credentials, such as https://api.openai.com/v1.';
	END IF;
	kind := coalesce(kind, 'openai');
	IF kind NOT IN ('openai', 'anthropic') THEN
		RAISE EXCEPTION 'provider kind "%" is not supported', kind
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Use kind ''anthropic'' for the Anthropic Messages API, and kind ''openai'' for OpenAI and every OpenAI-compatible server (Azure OpenAI, vLLM, Ollama, llama.cpp).';
	END IF;
	IF api_key IS NOT NULL AND key_env IS NOT NULL THEN
		RAISE EXCEPTION 'give api_key or key_env, not both'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF api_key = '' THEN
		RAISE EXCEPTION 'api_key must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL for a provider that needs no key.';
	END IF;
	IF key_env IS NOT NULL AND key_env !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
		RAISE EXCEPTION 'invalid environment variable name "%"', key_env
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM llm._check_provider_target(name, base_url, key_env);
	options := coalesce(options, '{}');
	PERFORM llm._check_provider_options(options);
	IF EXISTS (SELECT FROM llm.providers p WHERE p.name = llm_provider_create.name) THEN
		RAISE EXCEPTION 'provider "%" already exists', name
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Drop it with llm_provider_drop, or rotate its key with llm_provider_set_key.';
	END IF;

	INSERT INTO llm.providers (name, kind, base_url, key_source, key_env, options)
	VALUES (name, kind, base_url,
			CASE WHEN api_key IS NOT NULL THEN 'stored'
				 WHEN key_env IS NOT NULL THEN 'env'
				 ELSE 'none' END,
			key_env, options);
	IF api_key IS NOT NULL THEN
		INSERT INTO llm.provider_keys (provider, api_key) VALUES (name, api_key);
	END IF;
END
$$;
COMMENT ON FUNCTION llm_provider_create(text, text, text, text, text, jsonb) IS
	'register an LLM API endpoint (kind openai: any OpenAI-compatible server; kind anthropic: the Anthropic Messages API)';

CREATE OR REPLACE FUNCTION llm_provider_set_key(name text, api_key text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM llm.providers p WHERE p.name = llm_provider_set_key.name) THEN
		RAISE EXCEPTION 'provider "%" does not exist', coalesce(name, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'List the providers with SELECT name FROM llm.providers.';
	END IF;
	IF api_key = '' THEN
		RAISE EXCEPTION 'api_key must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL to remove the stored key.';
	END IF;
	DELETE FROM llm.provider_keys k WHERE k.provider = name;
	IF api_key IS NOT NULL THEN
		INSERT INTO llm.provider_keys (provider, api_key) VALUES (name, api_key);
	END IF;
	UPDATE llm.providers p
	   SET key_source = CASE WHEN api_key IS NOT NULL THEN 'stored' ELSE 'none' END,
		   key_env = NULL,
		   updated_at = now()
	 WHERE p.name = llm_provider_set_key.name;
END
$$;
COMMENT ON FUNCTION llm_provider_set_key(text, text) IS
	'store (or, with NULL, remove) a provider''s API key';


-- Embeddings: the vectors of texts, from models registered with use 'embedding'.

CREATE FUNCTION llm_embed(
	input text,
	model text DEFAULT NULL,
	options jsonb DEFAULT NULL)
RETURNS real[]
AS 'MODULE_PATHNAME', 'llm_embed'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_embed(text, text, jsonb) IS
	'the embedding of a text, from an embedding model (NULL input gives NULL); cast to vector with pgvector';

CREATE FUNCTION llm_embed_batch(
	inputs text[],
	model text DEFAULT NULL,
	options jsonb DEFAULT NULL,
	concurrency integer DEFAULT 8)
RETURNS TABLE (ord integer, embedding real[], error text)
AS 'MODULE_PATHNAME', 'llm_embed_batch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_embed_batch(text[], text, jsonb, integer) IS
	'many embeddings, many inputs per request (the model''s max_batch_inputs, default 100) and up to concurrency requests at once: one row per input, in order, failures as error text';

REVOKE ALL ON FUNCTION llm_embed(text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_embed_batch(text[], text, jsonb, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_embed(text, text, jsonb) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_embed_batch(text[], text, jsonb, integer) TO llm_user;

-- llm_eval_score calls a model for embedding_similarity: VOLATILE
CREATE OR REPLACE FUNCTION llm_eval_score(scorer jsonb, output text, expected jsonb, vars jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_eval_score'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_score(jsonb, text, jsonb, jsonb) IS
	'score one output against the expected answer: {"score", "passed", "reason"}';

-- llm_eval_score acting for an evaluation run's submitter and login: what
-- the scorer process calls, so that a scorer that calls a model
-- (embedding_similarity) does so on the submitter's ledger and budgets.
CREATE FUNCTION llm._eval_score_for(submitter name, login name, scorer jsonb, output text,
									expected jsonb, vars jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_eval_score_for'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION llm._eval_score_for(name, name, jsonb, text, jsonb, jsonb) FROM PUBLIC;


-- the aggregates of the runs there are
SELECT llm._eval_stats_rebuild(r.id) FROM llm.eval_runs r ORDER BY r.id;
