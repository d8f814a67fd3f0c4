-- The life cycle after evaluation: llm_breakeven (does a fine-tuned model
-- pay for its training, and where its saving per call comes from) and
-- llm_prompt_promote (a label moves to a variant of an evaluation run only
-- on the evidence of that run; the decision is kept in the label history).
-- Ledger rows, runs and results are written directly as superuser, so that
-- every number below is exact and computed by hand in the comments.
SET client_min_messages = warning;
CREATE ROLE regress_lc_user LOGIN;
CREATE ROLE regress_lc_admin LOGIN;
GRANT llm_user TO regress_lc_user;
GRANT llm_admin TO regress_lc_admin;
GRANT EXECUTE ON FUNCTION error_of(text) TO PUBLIC;
-- prices in USD per million tokens; models tuned from lc-base cost 2 and 8
SELECT llm_model_create('lc-base', 'fake', 'echo', input_price => 1, output_price => 4,
						training_price => 8, tuned_input_price => 2, tuned_output_price => 8);
SELECT llm_model_create('lc-cheap', 'fake', 'echo', input_price => 0.10, output_price => 0.40);
SELECT llm_model_create('lc-same', 'fake', 'echo', input_price => 1, output_price => 4);
SELECT llm_model_create('lc-idle', 'fake', 'echo', input_price => 1, output_price => 4);
SELECT llm_prompt_create('lc', 'Classify this ticket carefully, thinking of every category: {{input}}',
						 model => 'lc-base');
SELECT llm_prompt_create('lc', 'Classify: {{input}}', model => 'lc-base');
SELECT llm_prompt_create('lc', 'Category of: {{input}}', model => 'lc-base');
SELECT llm_prompt_create('lc-other', 'Other: {{input}}', model => 'lc-base');
SELECT llm_prompt_deploy('lc', 1);
SELECT llm_training_set_create('lc-train',
	'SELECT i::text AS id, ''q'' || i AS input, ''a'' || i AS output FROM generate_series(1, 10) i');
-- run and job ids depend on the suites run before: messages show them as N
CREATE FUNCTION lc_error(sql text) RETURNS text LANGUAGE sql
AS $$ SELECT regexp_replace(error_of(sql), '(run|job) [0-9]+', '\1 N', 'g') $$;
GRANT EXECUTE ON FUNCTION lc_error(text) TO PUBLIC;
RESET client_min_messages;

-- A fine-tuning job of lc-base that succeeded: the worker registers
-- lc-tuned-v1 and books the training (1,000,000 tokens at 8 USD per
-- million: 8 USD) to the ledger with source finetune, on the base model,
-- with the provider's job id (as finetune_remote.c does).  In one
-- transaction, so that the worker never sees the job queued.
BEGIN;
SELECT llm_finetune_create('lc-tuned', 'lc-base', 'lc-train') AS job \gset
UPDATE llm.finetune_jobs SET state = 'running', provider_job_id = 'ftjob-lc-1' WHERE id = :job;
SELECT llm._finetune_register(:job, 'ft:echo:lc', 1000000) AS tuned_model;
SELECT llm._persist(jsonb_build_array(jsonb_build_object(
	'entry_id', 'lc-train-1', 'created_at', now() - interval '40 days', 'role', current_user,
	'database', current_database(), 'source', 'finetune', 'model', 'lc-base', 'outcome', 'ok',
	'input_tokens', 1000000, 'cost_usd', 8, 'request_id', 'ftjob-lc-1', 'http_status', 200)));
COMMIT;
SELECT name, base_model, input_price, output_price, finetune_job = :job AS from_job
  FROM llm.models WHERE name = 'lc-tuned-v1';

-- The ledger of the last 30 days (and older rows that must not count):
--   lc-base      4 answers of 1000 in + 100 out: 1000 * 1 + 100 * 4 = 1400 µUSD each;
--                a failed attempt that cost the same (an answer refused, retried);
--                a cache hit (no call); a call 40 days ago; the training row above
--   lc-tuned-v1  2 answers of 200 in + 100 out: 200 * 2 + 100 * 8 = 1200 µUSD each
--   lc-cheap     1 answer of 1000 in + 100 out at 0.10 / 0.40: 140 µUSD
--   lc-same      1 answer of 400 in + 200 out at 1 / 4: 1200 µUSD
SELECT llm._persist(jsonb_agg(jsonb_build_object(
	'entry_id', 'lc-' || n, 'created_at', now() - coalesce(age, interval '1 day'), 'role', current_user,
	'database', current_database(), 'model', model, 'outcome', outcome, 'cache_hit', hit,
	'input_tokens', tin, 'output_tokens', tout, 'cost_usd', cost)))
  FROM (VALUES
	(1, 'lc-base', 'ok', false, 1000, 100, 0.0014, NULL::interval),
	(2, 'lc-base', 'ok', false, 1000, 100, 0.0014, NULL),
	(3, 'lc-base', 'ok', false, 1000, 100, 0.0014, NULL),
	(4, 'lc-base', 'ok', false, 1000, 100, 0.0014, NULL),
	(5, 'lc-base', 'error', false, 1000, 100, 0.0014, NULL),
	(6, 'lc-base', 'ok', true, 1000, 100, 0, NULL),
	(7, 'lc-base', 'ok', false, 5, 5, 1, interval '40 days'),
	(8, 'lc-tuned-v1', 'ok', false, 200, 100, 0.0012, NULL),
	(9, 'lc-tuned-v1', 'ok', false, 200, 100, 0.0012, NULL),
	(10, 'lc-cheap', 'ok', false, 1000, 100, 0.00014, NULL),
	(11, 'lc-same', 'ok', false, 400, 200, 0.0012, NULL))
	AS x(n, model, outcome, hit, tin, tout, cost, age);

-- 1. break-even from the ledger.
-- tuned: 2400 / 2 = 0.0012 per call.  baseline: (4 * 1400 + 1400) / 4 =
-- 0.00175 per answered call.  saving 0.00055.  8 / 0.00055 = 14545.45: the
-- 14546th call pays; at 1000 calls a day 14.55 days.
-- tokens at the baseline's prices: ((1000 - 200) * 1 + (100 - 100) * 4) / 1e6 = 0.0008
-- retries: 1400 / 4 - 0 = 0.00035
-- prices: 0.00055 - 0.0008 - 0.00035 = -0.0006, which is the tuned tokens at the
--   price difference: (200 * (1 - 2) + 100 * (4 - 8)) / 1e6
\x on
SELECT source, tuned_model, baseline_model, training_job = :job AS training_job_is_the_job,
	   training_cost_usd, tuned_calls, baseline_calls, tuned_cost_per_call, baseline_cost_per_call,
	   saving_per_call, breakeven_calls, never, breakeven_days, saving_from_tokens,
	   saving_from_prices, saving_from_retries, tuned_input_tokens_per_call,
	   baseline_input_tokens_per_call, tuned_output_tokens_per_call, baseline_output_tokens_per_call
  FROM llm_breakeven('lc-tuned-v1', 'lc-base', calls_per_day => 1000);
\x off
SELECT saving_from_tokens + saving_from_prices + saving_from_retries = saving_per_call AS parts_sum_up
  FROM llm_breakeven('lc-tuned-v1', 'lc-base');
-- never: the tuned model costs more per call than lc-cheap (140 µUSD).
-- saving 0.00014 - 0.0012 = -0.00106; tokens ((1000 - 200) * 0.10) / 1e6 =
-- 0.00008; prices -0.00106 - 0.00008 = -0.00114 = (200 * (0.10 - 2) + 100 * (0.40 - 8)) / 1e6
SELECT tuned_cost_per_call, baseline_cost_per_call, saving_per_call, breakeven_calls, never,
	   breakeven_days, saving_from_tokens, saving_from_prices, saving_from_retries
  FROM llm_breakeven('lc-tuned-v1', 'lc-cheap', calls_per_day => 1000);
-- a zero saving never pays either: lc-same costs 1200 µUSD a call too, with
-- 400 - 200 more input and 200 - 100 more output tokens: 200 * 1 + 100 * 4 =
-- 600 µUSD from tokens, -600 from prices
SELECT saving_per_call, breakeven_calls, never, saving_from_tokens, saving_from_prices,
	   saving_from_retries
  FROM llm_breakeven('lc-tuned-v1', 'lc-same');
-- refusals
SELECT lc_error($$SELECT * FROM llm_breakeven(NULL, 'lc-base')$$);
SELECT lc_error($$SELECT * FROM llm_breakeven('lc-tuned-v1', 'nomodel')$$);
SELECT lc_error($$SELECT * FROM llm_breakeven('lc-tuned-v1', 'lc-base', calls_per_day => 0)$$);
SELECT lc_error($$SELECT * FROM llm_breakeven('lc-tuned-v1', 'lc-idle')$$);
SELECT lc_error($$SELECT * FROM llm_breakeven('lc-cheap', 'lc-base')$$);
SELECT lc_error($$SELECT * FROM llm_breakeven('lc-tuned-v1', 'lc-base', 999999)$$);
-- the ledger and the jobs are read with the caller's rights: another user
-- sees none of the calls above, and, with calls of its own, not the job
SET SESSION AUTHORIZATION regress_lc_user;
SELECT lc_error($$SELECT * FROM llm_breakeven('lc-tuned-v1', 'lc-base')$$);
RESET SESSION AUTHORIZATION;
BEGIN;
SELECT llm._persist(jsonb_agg(jsonb_build_object(
	'entry_id', 'lc-user-' || m, 'created_at', now(), 'role', 'regress_lc_user',
	'login_role', 'regress_lc_user', 'database', current_database(), 'model', m, 'outcome', 'ok',
	'input_tokens', 10, 'output_tokens', 10, 'cost_usd', 0.0001)))
  FROM unnest(ARRAY['lc-tuned-v1', 'lc-base']) m;
SET SESSION AUTHORIZATION regress_lc_user;
SELECT lc_error($$SELECT * FROM llm_breakeven('lc-tuned-v1', 'lc-base')$$);
RESET SESSION AUTHORIZATION;
ROLLBACK;

-- An evaluation set of 9 cases and run A of three variants of prompt lc:
--   long   version 1 (its model lc-base), what production serves: scores 0.5 on
--          c1..c8 (not passed), 1000 in + 100 out, 1400 µUSD; c9 failed and cost 700 µUSD
--   short  version 2 on lc-base: scores 1 on c1..c7 (passed), 0.5 on c8; 500 in +
--          50 out: 700 µUSD
--   tuned  version 2 on lc-tuned-v1: scores 1 on c1..c8; 200 in + 100 out: 1200 µUSD
SELECT llm_eval_set_create('lc-set');
INSERT INTO llm.eval_cases (set_name, case_key, input, expected)
SELECT 'lc-set', 'c' || i, 'ticket ' || i, '"billing"' FROM generate_series(1, 9) i;
INSERT INTO llm.eval_runs (set_name, variants, tag, state, submitted_by, login_role, cases, requests)
VALUES ('lc-set', '[{"name": "long", "prompt": "lc", "version": 1},
					{"name": "short", "prompt": "lc", "version": 2, "model": "lc-base"},
					{"name": "tuned", "prompt": "lc", "version": 2, "model": "lc-tuned-v1"}]',
		'lc-eval-a', 'done', current_user, current_user, 9, 27)
RETURNING id AS run_a \gset
INSERT INTO llm.eval_results (run, case_key, variant, repeat, output, score, passed, input_tokens,
							  output_tokens, cost_usd, error, scored_at)
SELECT :run_a, 'c' || i, v,  1,
	   CASE WHEN v = 'long' AND i = 9 THEN NULL ELSE 'billing' END,
	   CASE WHEN v = 'long' AND i = 9 THEN NULL
			WHEN v = 'long' OR (v = 'short' AND i = 8) THEN 0.5 ELSE 1 END,
	   CASE WHEN v = 'long' AND i = 9 THEN NULL
			ELSE NOT (v = 'long' OR (v = 'short' AND i = 8)) END,
	   CASE WHEN v = 'long' AND i = 9 THEN NULL
			ELSE CASE v WHEN 'long' THEN 1000 WHEN 'short' THEN 500 ELSE 200 END END,
	   CASE WHEN v = 'long' AND i = 9 THEN NULL
			ELSE CASE v WHEN 'long' THEN 100 WHEN 'short' THEN 50 ELSE 100 END END,
	   CASE WHEN v = 'long' AND i = 9 THEN 0.0007
			ELSE CASE v WHEN 'long' THEN 0.0014 WHEN 'short' THEN 0.0007 ELSE 0.0012 END END,
	   CASE WHEN v = 'long' AND i = 9 THEN 'the provider failed' END,
	   now()
  FROM generate_series(1, 9) i, unnest(ARRAY['long', 'short', 'tuned']) v
 WHERE i < 9 OR v = 'long';
SELECT variant, cases, errors, mean_score, cost_per_case FROM llm.eval_report WHERE run = :run_a ORDER BY variant;

-- 2. break-even measured in the run: tuned against long.
-- tuned 0.0012 per case; long (8 * 1400 + 700) / 8 = 0.0014875 per answered case.
-- saving 0.0002875; 8 / 0.0002875 = 27826.09: 27827 calls, 278.27 days at 100 a day.
-- tokens (1000 - 200) * 1 / 1e6 = 0.0008; retries 700 / 8 = 0.0000875;
-- prices 0.0002875 - 0.0008 - 0.0000875 = -0.0006
\x on
SELECT source, tuned_model, baseline_model, training_cost_usd, tuned_calls, baseline_calls,
	   tuned_cost_per_call, baseline_cost_per_call, saving_per_call, breakeven_calls, never,
	   breakeven_days, saving_from_tokens, saving_from_prices, saving_from_retries,
	   tuned_input_tokens_per_call, baseline_input_tokens_per_call
  FROM llm_breakeven('tuned', 'long', :run_a, 100);
\x off
SELECT lc_error(format($$SELECT * FROM llm_breakeven('tuned', 'nosuch', %s)$$, :run_a));
-- a variant on a model without a fine-tuning job has no training cost on record
SELECT lc_error(format($$SELECT * FROM llm_breakeven('short', 'long', %s)$$, :run_a));

-- 3. promotion.  short against long in run A (llm_eval_compare(run, short, long)):
-- 7 wins, 1 tie, 0 losses; mean_diff 7 * 0.5 / 8 = 0.4375; sign test p =
-- 2 * 0.5^7 = 0.015625; 7 cases only short passed, 0 only long: McNemar
-- p = 0.015625 too.  Cost per case 0.0007 against 0.0014: ratio 0.5.
-- Each criterion refuses on its own; the label stays.
SELECT r - 'evidence' AS refused
  FROM llm_prompt_promote('lc', 'production', :run_a, 'short', min_gain => 0.5) r;
SELECT r -> 'reasons' AS refused
  FROM llm_prompt_promote('lc', 'production', :run_a, 'short', alpha => 0.01) r;
SELECT r -> 'reasons' AS refused
  FROM llm_prompt_promote('lc', 'production', :run_a, 'short', max_cost_ratio => 0.4) r;
SELECT jsonb_array_elements_text(r -> 'reasons') AS all_three
  FROM llm_prompt_promote('lc', 'production', :run_a, 'short', 0.5, 0.01, 0.4) r;
SELECT variants FROM llm.prompt_labels WHERE name = 'lc' AND label = 'production';
-- an llm_user may not promote; an llm_admin may
SET SESSION AUTHORIZATION regress_lc_user;
SELECT lc_error(format($$SELECT llm_prompt_promote('lc', 'production', %s, 'short')$$, :run_a));
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_lc_admin;
SELECT jsonb_pretty(llm_prompt_promote('lc', 'production', :run_a, 'short', min_gain => 0.25,
									   max_cost_ratio => 1)
					#- '{evidence,run}' #- '{evidence,test,diff_low}' #- '{evidence,test,diff_high}') AS promoted;
RESET SESSION AUTHORIZATION;
SELECT variants, updated_by FROM llm.prompt_labels WHERE name = 'lc' AND label = 'production';
SELECT llm_render('lc', '{"input": "x"}') ->> 'version' AS production_version;
-- the bootstrap interval is in the evidence, around the mean difference
SELECT (evidence #>> '{test,diff_low}')::float8 <= 0.4375
	   AND (evidence #>> '{test,diff_high}')::float8 >= 0.4375 AS interval_holds_the_mean
  FROM llm.prompt_label_history WHERE action = 'promote';
-- promoting it again: it is what production serves already
SELECT r -> 'reasons' AS refused
  FROM llm_prompt_promote('lc', 'production', :run_a, 'short') r;
-- the decisions in the history, with their evidence
SELECT action, from_variants -> 0 ->> 'version' AS from_v, to_variants -> 0 ->> 'version' AS to_v,
	   rolled_back, nullif(changed_by, current_user) AS by_other, evidence ->> 'run' = :'run_a' AS run_ok,
	   evidence #>> '{current,variant}' AS current, evidence #>> '{test,wins}' AS wins,
	   evidence #>> '{test,sign_test_p}' AS p, evidence #>> '{test,mcnemar_p}' AS mcnemar_p,
	   evidence #>> '{cost,ratio}' AS cost_ratio, evidence -> 'criteria' AS criteria,
	   jsonb_array_length(evidence -> 'reasons') AS reasons
  FROM llm.prompt_label_history WHERE name = 'lc' AND label = 'production' ORDER BY id;

-- 4. one call rolls a promotion back, as it does a deploy; the refusals moved
-- nothing, so the next rollback finds nothing earlier than the first deploy
SELECT llm_prompt_rollback('lc');
SELECT variants FROM llm.prompt_labels WHERE name = 'lc' AND label = 'production';
SELECT action, rolled_back FROM llm.prompt_label_history
 WHERE name = 'lc' AND label = 'production' AND action IN ('promote', 'rollback') ORDER BY id;
SELECT lc_error($$SELECT llm_prompt_rollback('lc')$$);

-- 5. run B, three cases: terse (version 3) beats long on all three (1 against
-- 0.5), but 3 wins give a sign test p of 2 * 0.5^3 = 0.25: not significant
INSERT INTO llm.eval_runs (set_name, variants, tag, state, submitted_by, login_role, cases, requests)
VALUES ('lc-set', '[{"name": "long", "prompt": "lc", "version": 1},
					{"name": "terse", "prompt": "lc", "version": 3},
					{"name": "other", "prompt": "lc-other", "version": 1},
					{"name": "plain", "model": "lc-base", "system": "Be brief."},
					{"name": "bylabel", "prompt": "lc", "label": "production"}]',
		'lc-eval-b', 'done', current_user, current_user, 3, 15)
RETURNING id AS run_b \gset
INSERT INTO llm.eval_results (run, case_key, variant, repeat, output, score, passed, input_tokens,
							  output_tokens, cost_usd, scored_at)
SELECT :run_b, 'c' || i, v, 1, 'billing', CASE v WHEN 'long' THEN 0.5 ELSE 1 END, v <> 'long',
	   100, 10, 0.0001, now()
  FROM generate_series(1, 3) i, unnest(ARRAY['long', 'terse']) v;
SELECT jsonb_array_elements_text(r -> 'reasons') AS refused,
	   r #>> '{evidence,test,sign_test_p}' AS p
  FROM llm_prompt_promote('lc', 'production', :run_b, 'terse') r;
-- a split label, and a label serving a variant the run did not evaluate
SELECT llm_prompt_split('lc', 'canary', ARRAY[1, 3], ARRAY[9, 1]);
SELECT r -> 'reasons' AS refused, r #> '{evidence,current}' AS current
  FROM llm_prompt_promote('lc', 'canary', :run_b, 'terse') r;
SELECT llm_prompt_deploy('lc', 2, 'staging', model => 'lc-tuned-v1');
SELECT regexp_replace(r ->> 'reasons', 'run [0-9]+', 'run N') AS refused
  FROM llm_prompt_promote('lc', 'staging', :run_b, 'terse') r;
SELECT action, count(*) FROM llm.prompt_label_history
 WHERE name = 'lc' AND label IN ('canary', 'staging') GROUP BY action ORDER BY action;

-- a result of run B still waiting for its answer: the run is not the evidence yet
INSERT INTO llm.eval_results (run, case_key, variant, repeat) VALUES (:run_b, 'c4', 'terse', 1);
SELECT regexp_replace(jsonb_array_elements_text(r -> 'reasons'), 'run [0-9]+', 'run N') AS refused
  FROM llm_prompt_promote('lc', 'production', :run_b, 'terse', alpha => 0.5) r;
SELECT count(*) AS moves_before FROM llm.prompt_label_history \gset

-- 6. errors: NULLs, numbers out of range, unknown names, variants that are not
-- a version of the prompt
SELECT lc_error($$SELECT llm_prompt_promote(NULL, 'production', 1, 'x')$$);
SELECT lc_error(format($$SELECT llm_prompt_promote('lc', 'production', %s, 'terse', alpha => NULL)$$, :run_b));
SELECT lc_error(format($$SELECT llm_prompt_promote('lc', 'production', %s, 'terse', alpha => 0)$$, :run_b));
SELECT lc_error(format($$SELECT llm_prompt_promote('lc', 'production', %s, 'terse', alpha => 1)$$, :run_b));
SELECT lc_error(format($$SELECT llm_prompt_promote('lc', 'production', %s, 'terse', min_gain => -0.1)$$, :run_b));
SELECT lc_error(format($$SELECT llm_prompt_promote('lc', 'production', %s, 'terse', max_cost_ratio => 0)$$, :run_b));
SELECT lc_error(format($$SELECT llm_prompt_promote('nosuch', 'production', %s, 'terse')$$, :run_b));
SELECT lc_error(format($$SELECT llm_prompt_promote('lc', 'nolabel', %s, 'terse')$$, :run_b));
SELECT lc_error($$SELECT llm_prompt_promote('lc', 'production', 999999, 'terse')$$);
SELECT lc_error(format($$SELECT llm_prompt_promote('lc', 'production', %s, 'nosuch')$$, :run_b));
SELECT lc_error(format($$SELECT llm_prompt_promote('lc', 'production', %s, 'other')$$, :run_b));
SELECT lc_error(format($$SELECT llm_prompt_promote('lc', 'production', %s, 'plain')$$, :run_b));
SELECT lc_error(format($$SELECT llm_prompt_promote('lc', 'production', %s, 'bylabel')$$, :run_b));
-- errors record nothing
SELECT count(*) = :moves_before AS history_unchanged FROM llm.prompt_label_history;

SET client_min_messages = warning;
DROP OWNED BY regress_lc_user, regress_lc_admin;
DROP ROLE regress_lc_user, regress_lc_admin;
DROP FUNCTION lc_error(text);
RESET client_min_messages;
