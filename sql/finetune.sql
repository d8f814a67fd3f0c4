-- Fine-tuning jobs from SQL (the SQL side: the worker runs them).  Uses the
-- roles, sets and models of the training suite.  Jobs are made and
-- cancelled or registered in one transaction, so that the worker never
-- finds one queued: what it would do with one is not this suite's subject.
SET client_min_messages = warning;
CREATE ROLE regress_ft_tuner LOGIN;
GRANT llm_finetune TO regress_ft_alice, regress_ft_tuner;
RESET client_min_messages;

-- 1. only llm_finetune and llm_admin launch jobs
SET SESSION AUTHORIZATION regress_ft_bob;
SELECT error_of($$SELECT llm_finetune_create('ft-bob', 'ft-base', 'ft-bob')$$);
RESET SESSION AUTHORIZATION;
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = 'llm_finetune';
SELECT pg_has_role('llm_finetune', 'llm_user', 'MEMBER') AS finetune_is_user;

-- 2. what a job is checked for
SET SESSION AUTHORIZATION regress_ft_alice;
SELECT error_of($$SELECT llm_finetune_create('ft support', 'ft-base', 'ft-plain')$$);
SELECT error_of($$SELECT llm_finetune_create('ft-support', 'nomodel', 'ft-plain')$$);
SELECT error_of($$SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-none')$$);
SELECT error_of($$SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-plain', 7)$$);
-- bob's set is not alice's to train on
SELECT error_of($$SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-bob')$$);
SELECT error_of($$SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-plain', validation_set => 'ft-bob')$$);
SELECT error_of($$SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-plain', method => 'rlhf')$$);
SELECT error_of($$SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-plain', hyperparameters => '{"beta": 0.1}')$$);
SELECT error_of($$SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-plain', hyperparameters => '{"n_epochs": 0}')$$);
SELECT error_of($$SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-plain', hyperparameters => '{"learning_rate_multiplier": "fast"}')$$);
SELECT error_of($$SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-plain', hyperparameters => '[]')$$);
SELECT error_of($$SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-plain', suffix => 'no spaces')$$);
SELECT error_of($$SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-plain', suffix => repeat('x', 65))$$);
RESET SESSION AUTHORIZATION;
-- the base model's own limit on one example (a model limit)
SELECT llm_model_set_limits('ft-base', '{"max_training_example_tokens": 5}');
SET SESSION AUTHORIZATION regress_ft_alice;
SELECT error_of($$SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-plain')$$);
RESET SESSION AUTHORIZATION;
SELECT error_of($$SELECT llm_model_set_limits('ft-base', '{"max_training_example_tokens": 0}')$$);
SELECT llm_model_set_limits('ft-base', '{}');

-- 3. the estimate is held to the caller's budgets first
SELECT llm_budget_set('regress_ft_alice', 'day', 0.005);
SET SESSION AUTHORIZATION regress_ft_alice;
SELECT error_of($$SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-plain', 1)$$);
-- fewer epochs fit
BEGIN;
SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-plain', 1, hyperparameters => '{"n_epochs": 1}') > 0 AS queued;
ROLLBACK;
RESET SESSION AUTHORIZATION;
SELECT llm_budget_set('regress_ft_alice', 'day', NULL);

-- 4. a job queued, its status and progress view, seen by its owner and
-- llm_admin only, cancelled at once while queued
BEGIN;
SET SESSION AUTHORIZATION regress_ft_alice;
SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-plain', 2, validation_set => 'ft-dups',
						   hyperparameters => '{"n_epochs": 2, "batch_size": "auto"}',
						   suffix => 'support') AS job \gset
SELECT name, submitted_by, login_role, base_model, provider, training_set, training_version,
	   validation_set, validation_version, method, hyperparameters, suffix, state,
	   estimated_tokens, estimated_cost_usd
  FROM llm.finetune_jobs WHERE id = :job;
SELECT llm_finetune_status(:job) - ARRAY['id', 'created_at'] AS status;
SELECT name, state, progress, last_event, estimated_cost_usd, cost_usd, model FROM llm.finetunes;
SET ROLE llm_user;		-- a role switch shows no more and no less than its rows
SELECT count(*) AS jobs_seen_as_llm_user FROM llm.finetunes;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_ft_bob;
SELECT count(*) AS bob_sees FROM llm.finetune_jobs;
SELECT error_of(format('SELECT llm_finetune_status(%s)', :job));
SELECT error_of(format('SELECT llm_finetune_cancel(%s)', :job));
RESET SESSION AUTHORIZATION;
SET ROLE llm_admin;
SELECT count(*) AS admin_sees FROM llm.finetunes WHERE id = :job;
RESET ROLE;
SET SESSION AUTHORIZATION regress_ft_alice;
SELECT llm_finetune_cancel(:job) AS cancelled;
SELECT llm_finetune_cancel(:job) AS cancelled_again;
SELECT state, finished_at IS NOT NULL AS finished FROM llm.finetune_jobs WHERE id = :job;
RESET SESSION AUTHORIZATION;
-- a started job is cancelled through the worker
UPDATE llm.finetune_jobs SET state = 'running' WHERE id = :job;
SET SESSION AUTHORIZATION regress_ft_alice;
SELECT llm_finetune_cancel(:job) AS asks_the_worker;
SELECT state FROM llm.finetune_jobs WHERE id = :job;
RESET SESSION AUTHORIZATION;
UPDATE llm.finetune_jobs SET state = 'cancelled' WHERE id = :job;
COMMIT;

-- 5. progress comes from the provider's events and checkpoints
BEGIN;
SET SESSION AUTHORIZATION regress_ft_tuner;
SELECT error_of($$SELECT llm_finetune_create('ft-tuner', 'ft-base', 'ft-plain')$$);
RESET SESSION AUTHORIZATION;
SET ROLE llm_admin;
SELECT llm_finetune_create('ft-support', 'ft-base', 'ft-plain', 1) AS job2 \gset
RESET ROLE;
UPDATE llm.finetune_jobs SET state = 'running', provider_status = 'running', provider_job_id = 'ftjob-fake-1'
 WHERE id = :job2;
INSERT INTO llm.finetune_events (job, event_id, created_at, level, type, message, data) VALUES
	(:job2, 'ev1', '2025-01-01 10:00', 'info', 'message', 'Job started', NULL),
	(:job2, 'ev2', '2025-01-01 10:05', 'info', 'metrics', 'Step 30/120: training loss=0.52',
	 '{"step": 30, "total_steps": 120, "train_loss": 0.52}');
SELECT state, provider_status, progress, step, total_steps, last_event FROM llm.finetunes WHERE id = :job2;

-- 6. success: the worker registers the model, with lineage and prices (the fake
-- answers an id that is not "ft:..." as its echo model does)
SELECT llm._finetune_register(:job2, 'echo-tuned-support', 7000) AS model;
SELECT llm._finetune_register(:job2, 'echo-tuned-support', 7000) AS registered_once;
SELECT name, provider, remote_model, kind, base_model, input_price, output_price, cached_input_price,
	   training_set, training_version, prompt_name, prompt_version, finetune_job = :job2 AS from_job
  FROM llm.models WHERE finetune_job IS NOT NULL;
SELECT state, model, trained_tokens, cost_usd, finished_at IS NOT NULL AS finished
  FROM llm.finetune_jobs WHERE id = :job2;
SELECT llm_finetune_status(:job2) ->> 'progress' AS progress, llm_finetune_status(:job2) ->> 'model' AS model;
COMMIT;
-- it is callable, and deployable with the prompt it was trained through
SELECT llm_complete('hello tuned', 'ft-support-v1');
SELECT llm_prompt_deploy('ft-support', 1, 'tuned', model => 'ft-support-v1');
SELECT llm_render('ft-support', '{"body": "x"}', label => 'tuned') ->> 'model' AS deployed_model;
SELECT llm_complete_prompt('ft-support', '{"body": "x"}', label => 'tuned');
SELECT FROM llm_flush();
SELECT model, kind, base_model FROM llm.usage_by_model WHERE model = 'ft-support-v1';
-- a model trained elsewhere, with its lineage
SELECT llm_model_create('ft-elsewhere', 'fake', 'ft:echo:elsewhere', kind => 'fine_tuned', base_model => 'ft-base',
						training_set => 'ft-plain', training_version => 2);
SELECT training_set, training_version, prompt_name, prompt_version FROM llm.models WHERE name = 'ft-elsewhere';
SELECT error_of($$SELECT llm_model_create('ft-x', 'fake', 'x', kind => 'fine_tuned', base_model => 'ft-base',
						training_set => 'ft-plain', training_version => 9)$$);
SELECT error_of($$SELECT llm_model_create('ft-x', 'fake', 'x', training_set => 'ft-plain')$$);
SELECT error_of($$SELECT llm_model_create('ft-x', 'fake', 'x', training_price => -1)$$);
-- a fine-tuned model is no base for a job
SET ROLE llm_admin;
SELECT error_of($$SELECT llm_finetune_create('ft-again', 'ft-support-v1', 'ft-plain')$$);
RESET ROLE;
-- the worker's own functions are nobody's
SET SESSION AUTHORIZATION regress_ft_alice;
SELECT error_of(format('SELECT llm._finetune_register(%s, ''x'', 1)', :job2));
SELECT error_of($$SELECT llm._finetune_create('regress_ft_alice', 'regress_ft_alice', 'x', 'ft-base', 'ft-plain', NULL, NULL, NULL, NULL, NULL)$$);
RESET SESSION AUTHORIZATION;

-- clean up: sets and jobs stay, for the models' lineage
SET client_min_messages = warning;
DROP TABLE ft_tickets;
DROP OWNED BY regress_ft_alice, regress_ft_bob, regress_ft_tuner;
DROP ROLE regress_ft_alice, regress_ft_bob, regress_ft_tuner;
RESET client_min_messages;
