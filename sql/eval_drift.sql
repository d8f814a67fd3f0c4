-- Evaluation drift: watches, their runs, llm.eval_drift, the refusals, row
-- level security.  This cluster has no pg_cron: llm_eval_watch returns the
-- recipe, and the runs are made by calling llm_eval_watch_run as the job
-- would (test/t/017_eval_drift.pl runs the job with pg_cron, and listens
-- on llm_eval_drift: psql prints a notification with the sender's PID,
-- which differs from run to run; here the announcement shows as the run's
-- notified_at).
--
-- How the score drops without moving the label: the label serves version
-- 1 of prompt dr-colors, on model dr-model, which is the fake provider's
-- "learner" (it answers from the prompt's few-shot examples).  The
-- provider then changes what is behind the model's name: dr-model is
-- pointed at the fake's "echo" by a superuser, which is drift as it
-- happens (same prompt, same label, worse answers).  Moving the label
-- instead would be a promotion, which starts a new baseline.
SET client_min_messages = warning;
CREATE ROLE regress_dr_alice LOGIN;
CREATE ROLE regress_dr_bob LOGIN;
GRANT llm_user TO regress_dr_alice, regress_dr_bob;
SELECT llm_model_create('dr-model', 'fake', 'learner');
SELECT llm_model_create('dr-model-2', 'fake', 'learner');
RESET client_min_messages;

SET SESSION AUTHORIZATION regress_dr_alice;
SELECT llm_prompt_create('dr-colors', '{{input}}', system => 'Answer A or B.',
						 examples => '[{"input": {"input": "red green"}, "output": "A"},
									   {"input": {"input": "blue yellow"}, "output": "B"}]',
						 model => 'dr-model') AS v1;
-- the fix, later: the same prompt on a model that still answers well
SELECT llm_prompt_create('dr-colors', '{{input}}', system => 'Answer A or B.',
						 examples => '[{"input": {"input": "red green"}, "output": "A"},
									   {"input": {"input": "blue yellow"}, "output": "B"}]',
						 model => 'dr-model-2') AS v2;
SELECT llm_eval_set_create('dr-set');
-- learner answers the first three from the examples; "plain" shares no word
-- with them, so it is echoed, as echo would: 4 of 4 now, 1 of 4 with echo
SELECT llm_eval_cases_add('dr-set', $$
	SELECT * FROM (VALUES ('k1', 'red green', '"A"'::jsonb), ('k2', 'blue yellow', '"B"'),
						  ('k3', 'red purple', '"A"'), ('k4', 'plain', '"echo: plain"'))
		AS t(key, input, expected)$$) AS added;
RESET SESSION AUTHORIZATION;
SELECT llm_prompt_deploy('dr-colors', 1, 'production');
SET SESSION AUTHORIZATION regress_dr_alice;

-- refusals: NULLs, unknown set, prompt or label, a label with no prompt,
-- invalid schedules and thresholds, an unknown scorer
SELECT error_of($$SELECT llm_eval_watch(NULL, 'dr-colors:production', '0 3 * * *', 0.1)$$);
SELECT error_of($$SELECT llm_eval_watch('dr-set', NULL, '0 3 * * *', 0.1)$$);
SELECT error_of($$SELECT llm_eval_watch('dr-set', 'dr-colors:production', NULL, 0.1)$$);
SELECT error_of($$SELECT llm_eval_watch('dr-set', 'dr-colors:production', '0 3 * * *', NULL)$$);
SELECT error_of($$SELECT llm_eval_watch('nosuch', 'dr-colors:production', '0 3 * * *', 0.1)$$);
SELECT error_of($$SELECT llm_eval_watch('dr-set', 'nosuch:production', '0 3 * * *', 0.1)$$);
SELECT error_of($$SELECT llm_eval_watch('dr-set', 'dr-colors:staging', '0 3 * * *', 0.1)$$);
SELECT error_of($$SELECT llm_eval_watch('dr-set', 'production', '0 3 * * *', 0.1)$$);
SELECT error_of($$SELECT llm_eval_watch('dr-set', 'dr-colors:production', '0 3 * * *', 0.1, prompt => 'dr-colors')$$);
SELECT every, error_of(format('SELECT llm_eval_watch(%L, %L, %L, 0.1)', 'dr-set', 'dr-colors:production', every))
  FROM unnest(ARRAY['', 'daily', '0 3 * *', '0 3 * * * *', '60 3 * * *', '0 24 * * *', '0 3 0 * *',
					'0 3 * 13 *', '0 3 * * 8', '*/0 * * * *', '0 3 * * funday', '5-x * * * *',
					'1 seconds']) AS every;
SELECT threshold, error_of(format('SELECT llm_eval_watch(%L, %L, %L, %s)', 'dr-set', 'dr-colors:production',
								  '0 3 * * *', threshold))
  FROM unnest(ARRAY['-0.01', '1', '1.5', '''NaN''']) AS threshold;
SELECT error_of($$SELECT llm_eval_watch('dr-set', 'dr-colors:production', '0 3 * * *', 0.1,
										scorer => '{"type": "nosuch"}')$$);
SELECT error_of($$SELECT llm_eval_watch('dr-set', 'dr-colors:production', '0 3 * * *', 0.1,
										scorer => '{"type": "embedding_similarity", "model": "nosuch"}')$$);
SELECT error_of($$SELECT llm_eval_watch('dr-set', 'dr-colors:production', '0 3 * * *', 0.1,
										scorer => '{"type": "function", "function": "public.nosuch"}')$$);
SELECT count(*) AS no_watches FROM llm.eval_watches;
-- schedules pg_cron 1.4 reads are accepted, with their fields spaced once
-- (the check is internal: a superuser calls it here)
SELECT error_of($$SELECT llm._eval_cron_schedule('0 3 * * *')$$);
RESET SESSION AUTHORIZATION;
SELECT every, llm._eval_cron_schedule(every) AS schedule
  FROM unnest(ARRAY['0 3 * * *', ' */15  0-6,22-23 1,15 jan-mar mon-fri ', '@daily', '0 0 * * 7',
					'30 2 1-31/2 * sun']) AS every;
SET SESSION AUTHORIZATION regress_dr_alice;
-- an internal body is not callable
SELECT error_of($$SELECT llm._eval_watch_store('regress_dr_bob', 'regress_dr_bob', 'dr-set', 'dr-colors:production',
											   '0 3 * * *', 0.1, NULL, NULL)$$);

-- a watch: without pg_cron, the recipe to schedule it, and a notice
SELECT watch AS w, job IS NULL AS no_job, recipe
  FROM llm_eval_watch('dr-set', 'dr-colors:production', '0 3 * * *', 0.2) \gset
SELECT :'recipe' = format('SELECT cron.schedule(%L, %L, %L)', 'llm-eval-watch-' || :w, '0 3 * * *',
						  format('SELECT public.llm_eval_watch_run(%s)', :w)) AS recipe_schedules_the_run;
-- a second watch of the same label, with the prompt apart and a larger threshold
SET client_min_messages = warning;
SELECT watch AS w2 FROM llm_eval_watch('dr-set', 'production', '30 4 * * 1', 0.8, prompt => 'dr-colors') \gset
RESET client_min_messages;
SELECT id = :w AS first, set_name, prompt, label, schedule, threshold, scorer,
	   job_name = 'llm-eval-watch-' || id AS job_named, owner, login_role
  FROM llm.eval_watches ORDER BY id;
-- no run yet: nothing to compare
SELECT watch = :w AS first, baseline_run, latest_run, score_drop, drifted, runs,
	   label_moved_at = (SELECT max(changed_at) FROM llm.prompt_label_history WHERE name = 'dr-colors') AS moved_at
  FROM llm.eval_drift ORDER BY watch;

-- the first run: the label is resolved when it is queued; a second call
-- while it still runs queues nothing
BEGIN;
SELECT llm_eval_watch_run(:w) AS r1 \gset
SET LOCAL client_min_messages = warning;
SELECT llm_eval_watch_run(:w) IS NULL AS nothing_queued;
COMMIT;
SELECT llm_eval_wait(:r1, '60 seconds') ->> 'state' AS state;
SELECT variants FROM llm.eval_runs WHERE id = :r1;
SELECT run = :r1 AS r1, label_move = (SELECT max(id) FROM llm.prompt_label_history WHERE name = 'dr-colors') AS at_last_move,
	   variants, notified_at FROM llm.eval_watch_runs WHERE watch = :w;
SELECT DISTINCT prompt_name, prompt_version, model FROM llm.requests WHERE tag = 'eval-' || :r1;
SELECT case_key, output, score FROM llm.eval_results WHERE run = :r1 ORDER BY case_key;
SELECT baseline_run = :r1 AS baseline_r1, baseline_score, latest_run = :r1 AS latest_r1, latest_score,
	   score_drop, drifted, runs, notified_at
  FROM llm.eval_drift WHERE watch = :w;
SELECT llm_eval_watch_check(:w) AS drifted;

-- the provider changes what is behind dr-model: the same label scores worse
RESET SESSION AUTHORIZATION;
UPDATE llm.models SET remote_model = 'echo' WHERE name = 'dr-model';
SET SESSION AUTHORIZATION regress_dr_alice;
SELECT llm_eval_watch_run(:w) AS r2 \gset
SELECT llm_eval_wait(:r2, '60 seconds') ->> 'state' AS state;
SELECT case_key, output, score FROM llm.eval_results WHERE run = :r2 ORDER BY case_key;
-- the baseline stays the first run since the label moved; the drop (0.75)
-- exceeds 0.2 and was announced when the run ended (the trigger on
-- llm.eval_runs), and not 0.8
SELECT baseline_run = :r1 AS baseline_r1, baseline_score, latest_run = :r2 AS latest_r2, latest_score,
	   score_drop, threshold, drifted, runs, notified_at IS NOT NULL AS announced
  FROM llm.eval_drift WHERE watch = :w;
SELECT notified_at AS announced_at FROM llm.eval_watch_runs WHERE watch = :w AND run = :r2 \gset
-- checking again says so, and announces nothing more
SELECT llm_eval_watch_check(:w) AS drifted;
SELECT notified_at = :'announced_at' AS announced_once FROM llm.eval_watch_runs WHERE watch = :w AND run = :r2;
-- the second watch, run now, has its first run as its baseline: no drop yet
SELECT llm_eval_watch_run(:w2) AS r3 \gset
SELECT llm_eval_wait(:r3, '60 seconds') ->> 'state' AS state;
SELECT baseline_run = :r3 AS baseline_r3, baseline_score, latest_score, score_drop, drifted
  FROM llm.eval_drift WHERE watch = :w2;

-- what to do next: promote a fixed version (here the same prompt on a
-- model that still answers well).  The label moved: runs queued before
-- count for nothing, until the next run sets the new baseline
RESET SESSION AUTHORIZATION;
SELECT llm_prompt_deploy('dr-colors', 2, 'production');
SET SESSION AUTHORIZATION regress_dr_alice;
SELECT baseline_run, latest_run, score_drop, drifted, runs FROM llm.eval_drift WHERE watch = :w;
SELECT llm_eval_watch_run(:w) AS r4 \gset
SELECT llm_eval_wait(:r4, '60 seconds') ->> 'state' AS state;
SELECT DISTINCT prompt_name, prompt_version, model FROM llm.requests WHERE tag = 'eval-' || :r4;
SELECT baseline_run = :r4 AS baseline_r4, baseline_score, latest_score, score_drop, drifted, runs
  FROM llm.eval_drift WHERE watch = :w;
SELECT CASE run WHEN :r1 THEN 'r1' WHEN :r2 THEN 'r2' WHEN :r4 THEN 'r4' END AS run, variants
  FROM llm.eval_watch_runs WHERE watch = :w ORDER BY run;
RESET SESSION AUTHORIZATION;

-- RLS: bob sees none of alice's watches, may not run, check or remove them,
-- nor watch her set
SET SESSION AUTHORIZATION regress_dr_bob;
SELECT (SELECT count(*) FROM llm.eval_watches) AS watches, (SELECT count(*) FROM llm.eval_watch_runs) AS runs,
	   (SELECT count(*) FROM llm.eval_drift) AS drift_rows;
SELECT error_of(format('SELECT llm_eval_watch_run(%s)', :w));
SELECT error_of(format('SELECT llm_eval_watch_check(%s)', :w));
SELECT error_of(format('SELECT llm_eval_unwatch(%s)', :w));
SELECT error_of($$SELECT llm_eval_watch('dr-set', 'dr-colors:production', '0 3 * * *', 0.1)$$);
SELECT error_of('SELECT llm_eval_watch_run(NULL)');
SELECT error_of('SELECT llm_eval_unwatch(NULL)');
RESET SESSION AUTHORIZATION;
SELECT count(*) AS superuser_sees FROM llm.eval_drift;

-- removing a watch: its runs stay, its record of them goes
SET SESSION AUTHORIZATION regress_dr_alice;
SELECT llm_eval_unwatch(:w) AS removed;
SELECT error_of(format('SELECT llm_eval_unwatch(%s)', :w));
SELECT (SELECT count(*) FROM llm.eval_watches) AS watches, (SELECT count(*) FROM llm.eval_watch_runs) AS watch_runs,
	   (SELECT count(*) FROM llm.eval_runs WHERE id IN (:r1, :r2, :r4)) AS runs_kept;
SELECT llm_eval_unwatch(:w2) AS removed;
RESET SESSION AUTHORIZATION;

SET client_min_messages = warning;
DELETE FROM llm.eval_runs;
DELETE FROM llm.eval_sets;
SELECT llm_model_drop('dr-model');
SELECT llm_model_drop('dr-model-2');
DROP OWNED BY regress_dr_alice, regress_dr_bob;
DROP ROLE regress_dr_alice, regress_dr_bob;
RESET client_min_messages;
