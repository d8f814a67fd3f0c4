-- Evaluation: sets, cases, runs of variants through the queue, results,
-- reports (their statistics: llm.eval_mean_interval, llm.eval_bootstrap,
-- llm.eval_sign_test, llm.eval_mcnemar; checked on their own in scorers).
SET client_min_messages = warning;
CREATE ROLE regress_ev_alice LOGIN;
CREATE ROLE regress_ev_bob LOGIN;
GRANT llm_user TO regress_ev_alice, regress_ev_bob;
SELECT llm_model_create('learner', 'fake', 'learner');
SELECT llm_model_create('learner-hot', 'fake', 'learner');
SELECT llm_model_create('ev-judge', 'fake', 'judge', input_price => 1000, output_price => 1000);
SELECT llm_model_create('ev-emb', 'fake', 'ev-emb', use => 'embedding');
SELECT llm_model_create('ev-emb-500', 'fake', 'fail-500', use => 'embedding');
CREATE FUNCTION public.ev_starts_a(output text, expected jsonb, vars jsonb) RETURNS numeric
LANGUAGE sql AS $$ SELECT CASE WHEN output LIKE 'A%' THEN 1 ELSE 0 END $$;
-- llm.eval_report summed up from the rows, the plain way (sorts and groups
-- every row): what the aggregates kept by triggers must equal
CREATE VIEW public.eval_report_from_rows WITH (security_invoker = true) AS
WITH per_case AS (
	SELECT res.run, res.variant, res.case_key, avg(res.score) AS score,
		   count(res.output) AS answers, count(DISTINCT res.output) AS distinct_outputs,
		   bool_or(res.contaminated) AS contaminated,
		   (SELECT c.weight FROM llm.eval_runs r JOIN llm.eval_cases c ON c.set_name = r.set_name
			 WHERE r.id = res.run AND c.case_key = res.case_key) AS weight
	  FROM llm.eval_results res GROUP BY res.run, res.variant, res.case_key),
pairs AS (
	SELECT run, variant, case_key, sum(n * (n - 1) / 2) AS agreeing
	  FROM (SELECT run, variant, case_key, output, count(*) AS n FROM llm.eval_results
			 WHERE output IS NOT NULL GROUP BY 1, 2, 3, 4) o
	 GROUP BY 1, 2, 3),
by_case AS (
	SELECT p.run, p.variant, count(*) AS cases, avg(p.score) AS mean_score,
		   stddev_samp(p.score) AS sd, count(p.score) AS n,
		   avg((p.distinct_outputs = 1)::integer::float8) FILTER (WHERE p.answers >= 2) AS consistency,
		   avg(pr.agreeing::float8 / (p.answers * (p.answers - 1) / 2)) FILTER (WHERE p.answers >= 2) AS pairwise_agreement,
		   count(*) FILTER (WHERE p.contaminated) AS contaminated_cases,
		   sum(p.weight * p.score) / nullif(sum(p.weight) FILTER (WHERE p.score IS NOT NULL), 0) AS weighted_mean_score
	  FROM per_case p LEFT JOIN pairs pr USING (run, variant, case_key)
	 GROUP BY p.run, p.variant),
by_row AS (
	SELECT res.run, res.variant, count(*) AS results,
		   count(*) FILTER (WHERE res.error IS NOT NULL) AS errors,
		   count(*) FILTER (WHERE res.scored_at IS NULL) AS pending,
		   count(*) FILTER (WHERE res.passed)::numeric / nullif(count(res.passed), 0) AS pass_rate,
		   count(res.output_json)::numeric / nullif(count(res.output), 0) AS json_valid_rate,
		   percentile_cont(0.5) WITHIN GROUP (ORDER BY res.latency_ms) AS latency_p50_ms,
		   percentile_cont(0.95) WITHIN GROUP (ORDER BY res.latency_ms) AS latency_p95_ms,
		   avg(res.input_tokens) FILTER (WHERE res.output IS NOT NULL) AS input_tokens_per_case,
		   avg(res.output_tokens) FILTER (WHERE res.output IS NOT NULL) AS output_tokens_per_case,
		   avg(res.cost_usd) FILTER (WHERE res.output IS NOT NULL) AS cost_per_case,
		   sum(res.cost_usd) AS cost_usd, sum(res.judge_cost_usd) AS judge_cost_usd
	  FROM llm.eval_results res GROUP BY res.run, res.variant)
SELECT r.*, c.cases, c.mean_score,
	   c.mean_score - llm.eval_t975(c.n - 1) * c.sd / sqrt(c.n) AS score_low,
	   c.mean_score + llm.eval_t975(c.n - 1) * c.sd / sqrt(c.n) AS score_high,
	   c.consistency, c.pairwise_agreement, c.contaminated_cases, c.weighted_mean_score
  FROM by_row r JOIN by_case c USING (run, variant);
GRANT SELECT ON public.eval_report_from_rows TO PUBLIC;
RESET client_min_messages;

SET SESSION AUTHORIZATION regress_ev_alice;
-- sets and their refusals
SELECT llm_eval_set_create('colors', 'A or B by colour');
SELECT error_of($$SELECT llm_eval_set_create('colors')$$);
SELECT error_of($$SELECT llm_eval_set_create(NULL)$$);
SELECT error_of($$SELECT llm_eval_set_create('')$$);
SELECT error_of($$SELECT llm_eval_set_create('no spaces')$$);
-- cases from a query run with the caller's rights
SELECT llm_eval_cases_add('colors', $$
	SELECT * FROM (VALUES ('k1', 'red green', '"A"'::jsonb, ARRAY['warm']),
						  ('k2', 'blue yellow', '"B"', ARRAY['cold']),
						  ('k3', 'red purple', '"A"', ARRAY['warm'])) AS t(key, input, expected, tags)$$)
	AS added;
SELECT case_key, input, expected, tags, weight, source FROM llm.eval_cases ORDER BY case_key;
SELECT error_of($$SELECT llm_eval_cases_add('colors', NULL)$$);
SELECT error_of($$SELECT llm_eval_cases_add('colors', '  ')$$);
SELECT error_of($$SELECT llm_eval_cases_add('colors', 'SELEC 1')$$);
SELECT error_of($$SELECT llm_eval_cases_add('nosuch', 'SELECT ''k'' AS key, ''x'' AS input')$$);
SELECT error_of($$SELECT llm_eval_cases_add('colors', 'SELECT ''k9'' AS key')$$);
SELECT error_of($$SELECT llm_eval_cases_add('colors', 'SELECT ''x'' AS input')$$);
SELECT error_of($$SELECT llm_eval_cases_add('colors', 'SELECT ''k1'' AS key, ''x'' AS input')$$);
SELECT error_of($$SELECT llm_eval_cases_add('colors', 'SELECT * FROM llm.providers')$$);
-- an internal body is not callable
SELECT error_of($$SELECT llm._eval_cases_store('regress_ev_bob', 'regress_ev_bob', 'colors', '[]')$$);

-- a stored prompt with few-shot examples, and one without
SELECT llm_prompt_create('ev-fewshot', '{{input}}', system => 'Answer A or B.',
						 examples => '[{"input": {"input": "red green"}, "output": "A"},
									   {"input": {"input": "blue yellow"}, "output": "B"}]',
						 model => 'learner');
SELECT llm_prompt_create('ev-fewshot', 'Colours: {{input}}', model => 'learner');

-- variants are refused before anything is queued
SELECT error_of($$SELECT llm_eval_run('colors', '[{"name": "a", "prompt": "nosuch"}]')$$);
SELECT error_of($$SELECT llm_eval_run('colors', '[{"name": "a", "prompt": "ev-fewshot", "version": 9}]')$$);
SELECT error_of($$SELECT llm_eval_run('colors', '[{"name": "a", "prompt": "ev-fewshot", "label": "prod"}]')$$);
SELECT error_of($$SELECT llm_eval_run('colors', '[{"name": "a", "model": "nosuch"}]')$$);
SELECT error_of($$SELECT llm_eval_run('colors', '[{"name": "a", "model": "learner"}, {"name": "a", "model": "learner"}]')$$);
SELECT error_of($$SELECT llm_eval_run('colors', '[{"model": "learner"}]')$$);
SELECT error_of($$SELECT llm_eval_run('colors', '[]')$$);
SELECT error_of($$SELECT llm_eval_run('colors', '[{"name": "a", "model": "learner"}]', 0)$$);
SELECT error_of($$SELECT llm_eval_run('nosuch', '[{"name": "a", "model": "learner"}]')$$);
SELECT error_of($$SELECT llm_eval_run('colors', '[{"name": "a", "model": "learner"}]',
									   scorer => '{"type": "function", "function": "public.nosuch"}')$$);
SELECT count(*) AS nothing_queued FROM llm.requests WHERE tag LIKE 'eval-%';
SELECT count(*) AS no_runs FROM llm.eval_runs;

-- a run end to end: few-shot prompt against a plain system prompt, and a
-- model that fails; two repeats
SELECT llm_eval_run('colors',
	'[{"name": "fewshot", "prompt": "ev-fewshot", "version": 1},
	  {"name": "plain", "model": "learner", "system": "Answer A or B."},
	  {"name": "broken", "model": "fail-400", "system": "x", "options": {"temperature": 0.5, "seed": 7}}]',
	repeats => 2) AS run \gset
SELECT tag = 'eval-' || :run AS tagged, state, cases, requests FROM llm.eval_runs WHERE id = :run;
SELECT llm_eval_wait(:run, '60 seconds') - 'run' AS waited;
SELECT state, finished_at IS NOT NULL AS finished FROM llm.eval_runs WHERE id = :run;
SELECT total, done, error FROM llm.batches WHERE tag = 'eval-' || :run;
SELECT variant, case_key, repeat, output, score, passed, input_tokens, output_tokens,
	   latency_ms IS NOT NULL AS has_latency, temperature, seed, error IS NOT NULL AS failed
  FROM llm.eval_results WHERE run = :run ORDER BY variant, case_key, repeat;
-- every request was sent with the cache off
SELECT DISTINCT options ->> 'cache' AS cache FROM llm.requests WHERE tag = 'eval-' || :run;
SELECT DISTINCT prompt_name, prompt_version FROM llm.requests WHERE tag = 'eval-' || :run ORDER BY 1;

-- the report, the comparison and the differing cases
SELECT variant, cases, results, errors, pending, mean_score, score_low, score_high, pass_rate,
	   consistency, pairwise_agreement, json_valid_rate, input_tokens_per_case,
	   output_tokens_per_case, contaminated_cases
  FROM llm.eval_report WHERE run = :run ORDER BY variant;
SELECT cases, wins, ties, losses, mean_diff, diff_low, diff_high, sign_test_p, a_only_passed,
	   b_only_passed, mcnemar_p, input_tokens_diff_per_case, output_tokens_diff_per_case,
	   latency_diff_ms IS NOT NULL AS has_latency_diff
  FROM llm_eval_compare(:run, 'fewshot', 'plain');
SELECT case_key, a_score, b_score, a_outputs, b_outputs FROM llm_eval_cases_diff(:run, 'fewshot', 'plain');
SELECT error_of(format('SELECT * FROM llm_eval_compare(%s, %L, %L)', :run, 'fewshot', 'nosuch'));

-- a function scorer, run with the submitter's rights
SELECT llm_eval_run('colors', '[{"name": "fs", "prompt": "ev-fewshot", "version": 1}]',
					scorer => '{"type": "function", "function": "public.ev_starts_a"}') AS frun \gset
SELECT llm_eval_wait(:frun, '60 seconds') ->> 'state' AS state;
SELECT case_key, output, score, passed, reason FROM llm.eval_results WHERE run = :frun ORDER BY case_key;
-- a function scorer that fails on some outputs: those results are errors
RESET SESSION AUTHORIZATION;
CREATE FUNCTION public.ev_fails_on_b(output text, expected jsonb, vars jsonb) RETURNS numeric
LANGUAGE plpgsql AS $$
BEGIN
	IF output = 'B' THEN
		RAISE EXCEPTION 'cannot score %', output;
	END IF;
	RETURN 1;
END $$;
GRANT EXECUTE ON FUNCTION public.ev_fails_on_b(text, jsonb, jsonb) TO regress_ev_alice;
SET SESSION AUTHORIZATION regress_ev_alice;
SELECT llm_eval_run('colors', '[{"name": "fs", "prompt": "ev-fewshot", "version": 1}]',
					scorer => '{"type": "function", "function": "public.ev_fails_on_b"}') AS f2run \gset
SELECT llm_eval_wait(:f2run, '60 seconds') - 'run' AS waited;
SELECT case_key, output, score, passed, error FROM llm.eval_results WHERE run = :f2run ORDER BY case_key;
-- a regex scorer whose pattern (the expected answer) is invalid for one case:
-- that case's error says why, the others are scored, the run ends
SELECT llm_eval_set_create('patterns');
SELECT llm_eval_cases_add('patterns', $$
	SELECT * FROM (VALUES ('p1', 'red green', '"^echo"'::jsonb), ('p2', 'blue', '"(unclosed"'),
						  ('p3', 'red purple', '"purple$"')) AS t(key, input, expected)$$) AS added;
SELECT llm_eval_run('patterns', '[{"name": "e", "model": "echo"}]', scorer => '{"type": "regex"}') AS rrun \gset
SELECT llm_eval_wait(:rrun, '60 seconds') - 'run' AS waited;
SELECT case_key, output, score, passed, error FROM llm.eval_results WHERE run = :rrun ORDER BY case_key;
-- an embedding_similarity scorer: an unknown or a chat model is refused
-- before anything is queued
SELECT count(*) AS requests_before FROM llm.requests \gset
SELECT fake_requests('ev-emb') AS emb_before \gset
SELECT error_of($$SELECT llm_eval_run('patterns', '[{"name": "e", "model": "echo"}]',
									   scorer => '{"type": "embedding_similarity", "model": "nosuch"}')$$);
SELECT error_of($$SELECT llm_eval_run('patterns', '[{"name": "e", "model": "echo"}]',
									   scorer => '{"type": "embedding_similarity", "model": "learner"}')$$);
SELECT error_of($$SELECT llm_eval_run('patterns', '[{"name": "e", "model": "echo"}]',
									   scorer => '{"type": "embedding_similarity"}')$$);
SELECT count(*) - :requests_before AS nothing_queued FROM llm.requests;
-- each answer ("echo: " + input) embedded with its expected text: one request each
SELECT llm_eval_set_create('phrases');
SELECT llm_eval_cases_add('phrases', $$
	SELECT * FROM (VALUES ('s1', 'red fox', '"echo: red fox"'::jsonb), ('s2', 'red fox', '"a red fox"'),
						  ('s3', 'red fox', '"blue whale"'), ('s4', 'red fox', NULL)) AS t(key, input, expected)$$) AS added;
SELECT llm_eval_run('phrases', '[{"name": "e", "model": "echo"}]',
					scorer => '{"type": "embedding_similarity", "model": "ev-emb", "threshold": 0.5}') AS erun \gset
SELECT llm_eval_wait(:erun, '60 seconds') ->> 'state' AS state;
SELECT case_key, output, score = 1 AS same, score > 0 AND score < 1 AS between, passed, reason, error
  FROM llm.eval_results WHERE run = :erun ORDER BY case_key;
SELECT fake_requests('ev-emb') - :emb_before AS emb_requests;
-- the scorer process makes the embedding calls for the run's submitter:
-- their ledger rows (and budgets) are alice's, not the superuser's
RESET SESSION AUTHORIZATION;
SELECT llm_flush() AS flushed;
SELECT role = 'regress_ev_alice' AS submitters, source, count(*) AS rows
  FROM llm.calls WHERE model = 'ev-emb' GROUP BY 1, 2;
SET SESSION AUTHORIZATION regress_ev_alice;
-- a failing embedding model: every result's error says why, the run ends
SELECT llm_eval_run('phrases', '[{"name": "e", "model": "echo"}]',
					scorer => '{"type": "embedding_similarity", "model": "ev-emb-500"}') AS e5run \gset
SELECT llm_eval_wait(:e5run, '60 seconds') ->> 'state' AS state;
SELECT case_key, score, passed, reason, error LIKE 'scoring failed: %' AS scoring_failed
  FROM llm.eval_results WHERE run = :e5run ORDER BY case_key;
-- the callback only scores rows of one's own runs, from the stored answer
SELECT llm.eval_collect(request_id, '{"content": "forged"}') FROM llm.eval_results WHERE run = :frun;
SELECT count(*) FILTER (WHERE output = 'forged') AS forged FROM llm.eval_results WHERE run = :frun;

-- a judge scorer: a stored prompt run on a judge model ("judge" in the fake:
-- word overlap of Expected: and Output:), refused before anything is queued
SELECT llm_prompt_create('ev-judge', E'Case: {{input}}\nExpected: {{expected}}\nOutput: {{output}}',
						 system => 'Score the output from 0 to 1.', model => 'ev-judge');
SELECT count(*) AS requests_before FROM llm.requests \gset
SELECT error_of($$SELECT llm_eval_run('colors', '[{"name": "p", "model": "learner"}]',
									   scorer => '{"type": "judge", "prompt": "nosuch"}')$$);
SELECT error_of($$SELECT llm_eval_run('colors', '[{"name": "p", "model": "learner"}]',
									   scorer => '{"type": "judge", "prompt": "ev-judge", "model": "nosuch"}')$$);
SELECT error_of($$SELECT llm_eval_run('colors', '[{"name": "p", "model": "learner"}]',
									   scorer => '{"type": "judge", "prompt": "ev-judge", "version": 9}')$$);
SELECT error_of($$SELECT llm_eval_run('colors', '[{"name": "p", "model": "learner"}]',
									   scorer => '{"type": "judge", "model": "ev-judge"}')$$);
SELECT error_of($$SELECT llm_eval_run('colors', '[{"name": "p", "model": "learner"}]',
									   scorer => '{"type": "judge", "prompt": "ev-judge", "threshold": "high"}')$$);
SELECT count(*) - :requests_before AS nothing_queued FROM llm.requests;
-- end to end: scores and reasons from the judge, its cost reported apart
SELECT llm_eval_run('colors',
	'[{"name": "fs", "prompt": "ev-fewshot", "version": 1},
	  {"name": "plain", "model": "learner", "system": "Answer A or B."}]',
	scorer => '{"type": "judge", "prompt": "ev-judge", "threshold": 0.9}') AS jrun \gset
SELECT scorer FROM llm.eval_runs WHERE id = :jrun;
SELECT llm_eval_wait(:jrun, '60 seconds') - 'run' AS waited;
SELECT variant, case_key, output, score, passed, reason, cost_usd, judge_cost_usd > 0 AS judge_paid,
	   judge_request_id IS NOT NULL AS judged, error
  FROM llm.eval_results WHERE run = :jrun ORDER BY variant, case_key;
SELECT model, count(*) AS requests, count(*) FILTER (WHERE state = 'done') AS done,
	   min(options ->> 'cache') AS cache, min(prompt_name) AS prompt
  FROM llm.requests WHERE tag = 'eval-' || :jrun GROUP BY model ORDER BY model;
SELECT messages FROM llm.requests
 WHERE id = (SELECT judge_request_id FROM llm.eval_results WHERE run = :jrun AND variant = 'fs' AND case_key = 'k2');
SELECT variant, mean_score, pass_rate, cost_usd, judge_cost_usd =
	   (SELECT sum(q.cost_usd) FROM llm.eval_results res JOIN llm.requests q ON q.id = res.judge_request_id
		 WHERE res.run = :jrun AND res.variant = rep.variant) AS judge_cost_reported
  FROM llm.eval_report rep WHERE run = :jrun ORDER BY variant;
-- a judge whose answer is not JSON: no score, and the error says why
SELECT llm_eval_run('colors', '[{"name": "plain", "model": "learner", "system": "Answer A or B."}]',
					scorer => '{"type": "judge", "prompt": "ev-judge", "model": "echo"}') AS xrun \gset
SELECT llm_eval_wait(:xrun, '60 seconds') ->> 'state' AS state;
SELECT case_key, output, score, passed, reason, left(error, 40) AS error, judge_cost_usd IS NOT NULL AS judge_cost
  FROM llm.eval_results WHERE run = :xrun ORDER BY case_key;
-- a judge that fails at the provider: the output is kept, the error says so,
-- and the run goes on to its end
SELECT llm_eval_run('colors', '[{"name": "plain", "model": "learner", "system": "Answer A or B."}]',
					scorer => '{"type": "judge", "prompt": "ev-judge", "model": "fail-400"}') AS brun \gset
SELECT llm_eval_wait(:brun, '60 seconds') - 'run' AS waited;
SELECT case_key, output, score, left(error, 36) AS error, judge_request_id IS NOT NULL AS judged
  FROM llm.eval_results WHERE run = :brun ORDER BY case_key;
SELECT variant, results, errors, pending, mean_score FROM llm.eval_report WHERE run = :brun;
-- the report's aggregates, kept as answers were recorded, equal the report
-- summed up from the rows of every run
SELECT count(*) AS report_rows,
	   count(*) FILTER (WHERE rep.cases = ref.cases AND rep.results = ref.results
						AND rep.errors = ref.errors AND rep.pending = ref.pending
						AND rep.mean_score::numeric(20, 9) IS NOT DISTINCT FROM ref.mean_score::numeric(20, 9)
						AND rep.score_low::numeric(20, 9) IS NOT DISTINCT FROM ref.score_low::numeric(20, 9)
						AND rep.score_high::numeric(20, 9) IS NOT DISTINCT FROM ref.score_high::numeric(20, 9)
						AND rep.pass_rate IS NOT DISTINCT FROM ref.pass_rate
						AND rep.consistency IS NOT DISTINCT FROM ref.consistency
						AND rep.pairwise_agreement::numeric(20, 9) IS NOT DISTINCT FROM ref.pairwise_agreement::numeric(20, 9)
						AND rep.json_valid_rate IS NOT DISTINCT FROM ref.json_valid_rate
						AND rep.latency_p50_ms IS NOT DISTINCT FROM ref.latency_p50_ms
						AND rep.latency_p95_ms::numeric(20, 6) IS NOT DISTINCT FROM ref.latency_p95_ms::numeric(20, 6)
						AND rep.input_tokens_per_case IS NOT DISTINCT FROM ref.input_tokens_per_case
						AND rep.output_tokens_per_case IS NOT DISTINCT FROM ref.output_tokens_per_case
						AND rep.cost_per_case IS NOT DISTINCT FROM ref.cost_per_case
						AND rep.cost_usd IS NOT DISTINCT FROM ref.cost_usd
						AND rep.judge_cost_usd IS NOT DISTINCT FROM ref.judge_cost_usd
						AND rep.contaminated_cases = ref.contaminated_cases
						AND rep.weighted_mean_score::numeric(20, 9)
							IS NOT DISTINCT FROM ref.weighted_mean_score::numeric(20, 9)) AS equal
  FROM llm.eval_report rep
  FULL JOIN eval_report_from_rows ref USING (run, variant);
-- every result names its ledger row
SELECT llm_flush() AS flushed;
SELECT count(*) AS results, count(c.entry_id) AS in_ledger, count(*) FILTER (WHERE c.model = 'learner') AS learner
  FROM llm.eval_results res LEFT JOIN llm.calls c ON c.entry_id = res.call_entry_id
 WHERE res.run IN (:run, :frun, :jrun) AND res.output IS NOT NULL;
RESET SESSION AUTHORIZATION;

-- RLS: bob sees none of alice's sets, cases, runs or results
SET SESSION AUTHORIZATION regress_ev_bob;
SELECT (SELECT count(*) FROM llm.eval_sets) AS sets, (SELECT count(*) FROM llm.eval_cases) AS cases,
	   (SELECT count(*) FROM llm.eval_runs) AS runs, (SELECT count(*) FROM llm.eval_results) AS results,
	   (SELECT count(*) FROM llm.eval_report) AS report_rows;
SELECT error_of($$SELECT llm_eval_run('colors', '[{"name": "a", "model": "learner"}]')$$);
SELECT error_of(format('SELECT llm_eval_wait(%s)', :run));
SELECT error_of($$SELECT llm_eval_cases_add('colors', 'SELECT ''b1'' AS key, ''x'' AS input')$$);
SELECT count(*) FILTER (WHERE recorded) AS recorded FROM (SELECT llm.llm_eval_record(id, 1, NULL) AS recorded FROM generate_series(1, 50) id) x;
RESET SESSION AUTHORIZATION;
SELECT count(*) AS alice_results_changed FROM llm.eval_results WHERE run = :frun AND reason IS NULL AND score = 1 AND output = 'B';

-- summing a run up again from its rows gives the same aggregates
CREATE TEMP TABLE stats_before AS SELECT * FROM llm.eval_variant_stats WHERE run = :run;
SELECT llm._eval_stats_rebuild(:run) AS variants_summed;
SELECT count(*) AS variants, count(*) FILTER (WHERE a = b) AS same
  FROM (SELECT s AS a, (SELECT b FROM stats_before b WHERE b.variant = s.variant) AS b
		  FROM llm.eval_variant_stats s WHERE s.run = :run) x;

SET client_min_messages = warning;
DELETE FROM llm.eval_runs;
SELECT (SELECT count(*) FROM llm.eval_case_stats) + (SELECT count(*) FROM llm.eval_variant_stats)
	   AS aggregates_left;
DELETE FROM llm.eval_sets;
DROP FUNCTION public.ev_starts_a(text, jsonb, jsonb);
DROP FUNCTION public.ev_fails_on_b(text, jsonb, jsonb);
DROP VIEW public.eval_report_from_rows;
DROP OWNED BY regress_ev_alice, regress_ev_bob;
DROP ROLE regress_ev_alice, regress_ev_bob;
RESET client_min_messages;
