-- The demo's story: prompt engineering or fine-tuning, decided on a small
-- ticket-triage data set made for the demo.  psql variables (test/demo.sh):
--   finetune  true to run a fine-tuning job (always with the fake provider;
--             with OpenAI only when LLMEXT_DEMO_FINETUNE=1: it costs money)
--   html      where to write the evaluation's page
-- The model "base" is registered by demo.sh: the fake's learner, or gpt-4o-mini.

\echo
\echo '######## The story: prompt engineering or fine-tuning? ########'
SELECT CASE WHEN p.base_url LIKE 'http://127.0.0.1:%'
			THEN 'The fake provider''s "learner" answers with the label of the most similar example it has seen (the few-shot examples in the prompt, or a fine-tuned model''s training set) and echoes the ticket when it has seen none: its numbers show how llmext measures, not how good a real model is.'
			ELSE 'Against OpenAI: every number below is what the real model answered.' END AS "how to read the numbers"
  FROM llm.models m JOIN llm.providers p ON p.name = m.provider WHERE m.name = 'base';

-- the data: labelled tickets, 30 to train on and 18 to evaluate with
CREATE TEMP TABLE tickets (body text, label text, part text);
INSERT INTO tickets VALUES
	('the app crashes when I open settings', 'bug', 'train'), ('error 500 when saving a report', 'bug', 'train'),
	('login fails with an exception', 'bug', 'train'), ('the export button is broken', 'bug', 'train'),
	('screen freezes after upload', 'bug', 'train'), ('sync fails every night', 'bug', 'train'),
	('crash on startup after update', 'bug', 'train'), ('error message when deleting a user', 'bug', 'train'),
	('the page is broken on mobile', 'bug', 'train'), ('upload fails with a timeout', 'bug', 'train'),
	('please add a dark mode', 'feature', 'train'), ('would like to export to excel', 'feature', 'train'),
	('add support for two factor login', 'feature', 'train'), ('an option to schedule reports', 'feature', 'train'),
	('please support single sign on', 'feature', 'train'), ('would like a mobile app', 'feature', 'train'),
	('add a search box to the dashboard', 'feature', 'train'), ('an option to archive old projects', 'feature', 'train'),
	('please add keyboard shortcuts', 'feature', 'train'), ('would like slack notifications', 'feature', 'train'),
	('how do I reset my password', 'question', 'train'), ('where can I find my invoices', 'question', 'train'),
	('how can I invite a colleague', 'question', 'train'), ('what is the limit on file size', 'question', 'train'),
	('where is the api documentation', 'question', 'train'), ('how do I change my email', 'question', 'train'),
	('can I use it offline', 'question', 'train'), ('what does the pro plan include', 'question', 'train'),
	('how do I delete my account', 'question', 'train'), ('where are the usage reports', 'question', 'train'),
	('the app crashes when I upload a photo', 'bug', 'eval'), ('error when saving settings', 'bug', 'eval'),
	('export fails with an exception', 'bug', 'eval'), ('dashboard freezes after login', 'bug', 'eval'),
	('the report page is broken', 'bug', 'eval'), ('crash after the last update', 'bug', 'eval'),
	('please add an export to pdf', 'feature', 'eval'), ('would like a dark theme option', 'feature', 'eval'),
	('add support for teams', 'feature', 'eval'), ('an option to schedule exports', 'feature', 'eval'),
	('please add slack support', 'feature', 'eval'), ('would like keyboard navigation', 'feature', 'eval'),
	('how do I reset two factor login', 'question', 'eval'), ('where can I find the api keys', 'question', 'eval'),
	('how can I change my plan', 'question', 'eval'), ('what is the limit on users', 'question', 'eval'),
	('where is the documentation for exports', 'question', 'eval'), ('how do I invite my team', 'question', 'eval');

\echo
\echo '== prompt v1 (zero-shot) and v2 (a role, six few-shot examples, a JSON schema); v1 serves production'
SELECT llm_prompt_create('triage', 'Classify this support ticket as bug, feature or question: {{body}}',
						 model => 'base') AS v1;
SELECT llm_prompt_create('triage', '{{body}}',
	system => 'You triage support tickets. Answer with JSON: {"label": "bug" | "feature" | "question"}.',
	examples => (SELECT jsonb_agg(jsonb_build_object('input', jsonb_build_object('body', body),
													 'output', jsonb_build_object('label', label)::text)
								  ORDER BY label, body)
				   FROM (SELECT *, row_number() OVER (PARTITION BY label ORDER BY body) AS n
						   FROM tickets WHERE part = 'train') t
				  WHERE n <= 2),
	response_schema => '{"type": "object", "properties": {"label": {"enum": ["bug", "feature", "question"]}},
						 "required": ["label"]}',
	model => 'base') AS v2;
SELECT llm_prompt_deploy('triage', 1, 'production');
SELECT label, variants FROM llm.prompt_labels WHERE name = 'triage';

\echo
\echo '== a short prompt (v3: the ticket alone) to fine-tune through; the training set rendered with it'
SELECT llm_prompt_create('triage', '{{body}}', model => 'base') AS v3;
SELECT llm_training_set_create('triage', $$
	SELECT body AS id, jsonb_build_object('body', body) AS vars,
		   jsonb_build_object('label', label)::text AS output
	  FROM tickets WHERE part = 'train'$$, prompt => 'triage', version => 3) AS training_version;
SELECT examples, held_out, estimated_tokens FROM llm.training_sets WHERE name = 'triage';

\if :finetune
\echo
\echo '== a fine-tuning job, run to completion by the background worker'
SELECT llm_finetune_create('triage', 'base', 'triage', 1, hyperparameters => '{"n_epochs": 3}') AS job \gset
DO $$
DECLARE
	state text;
BEGIN
	FOR i IN 1 .. 600 LOOP
		SELECT f.state INTO state FROM llm.finetunes f WHERE f.id = (SELECT max(id) FROM llm.finetunes);
		EXIT WHEN state IN ('succeeded', 'failed', 'cancelled');
		PERFORM pg_sleep(0.1);
	END LOOP;
END
$$;
SELECT state, model, trained_tokens, estimated_cost_usd, cost_usd FROM llm.finetunes WHERE id = :job;
SELECT name, base_model, training_set, training_version, prompt_name, prompt_version,
	   input_price, output_price
  FROM llm.models WHERE name = 'triage-v1';
\set variants '[{"name": "v1-zero-shot", "prompt": "triage", "version": 1}, {"name": "v2-few-shot", "prompt": "triage", "version": 2}, {"name": "tuned", "prompt": "triage", "version": 3, "model": "triage-v1"}]'
\set candidate tuned
\else
\echo
\echo '== no fine-tuning (it costs money: set LLMEXT_DEMO_FINETUNE=1 to run it against OpenAI)'
\set variants '[{"name": "v1-zero-shot", "prompt": "triage", "version": 1}, {"name": "v2-few-shot", "prompt": "triage", "version": 2}]'
\set candidate v2-few-shot
\endif

\echo
\echo '== the evaluation: every variant on the 18 held-back tickets, 3 repeats at temperature 0.7'
SELECT llm_eval_set_create('triage', 'demo tickets');
SELECT llm_eval_cases_add('triage', $$
	SELECT body AS key, jsonb_build_object('body', body) AS vars,
		   jsonb_build_object('label', label) AS expected, ARRAY[label] AS tags
	  FROM tickets WHERE part = 'eval'$$) AS cases;
SELECT llm_eval_run('triage', :'variants', repeats => 3,
					scorer => '{"type": "json_match", "fields": ["label"]}',
					options => '{"temperature": 0.7}') AS run \gset
SELECT llm_eval_wait(:run, '5 minutes') - 'run' AS finished;

\echo
\echo '== the report: quality, consistency, JSON validity, latency, tokens, cost'
SELECT variant, cases, round(mean_score::numeric, 3) AS score,
	   round(score_low::numeric, 3) AS low, round(score_high::numeric, 3) AS high,
	   round(consistency::numeric, 2) AS consistent, round(json_valid_rate, 2) AS json_valid,
	   round(latency_p95_ms::numeric, 1) AS p95_ms, round(input_tokens_per_case, 1) AS in_tokens,
	   round(output_tokens_per_case, 1) AS out_tokens, round(cost_per_1000_cases, 4) AS usd_per_1000
  FROM llm.eval_report WHERE run = :run ORDER BY variant;

\echo
\echo '== the paired comparisons: the few-shot prompt against zero-shot (and the tuned model against the few-shot prompt)'
SELECT 'v2-few-shot vs v1-zero-shot' AS comparison, cases, wins, ties, losses,
	   round(mean_diff::numeric, 3) AS mean_diff, round(diff_low::numeric, 3) AS low,
	   round(diff_high::numeric, 3) AS high, round(sign_test_p::numeric, 4) AS sign_p,
	   round(mcnemar_p::numeric, 4) AS mcnemar_p
  FROM llm_eval_compare(:run, 'v2-few-shot', 'v1-zero-shot');
\if :finetune
SELECT 'tuned vs v2-few-shot' AS comparison, cases, wins, ties, losses,
	   round(mean_diff::numeric, 3) AS mean_diff, round(diff_low::numeric, 3) AS low,
	   round(diff_high::numeric, 3) AS high, round(sign_test_p::numeric, 4) AS sign_p,
	   round(mcnemar_p::numeric, 4) AS mcnemar_p
  FROM llm_eval_compare(:run, 'tuned', 'v2-few-shot');
\endif

\if :finetune
\echo
\echo '== the break-even: when has the fine-tuning paid for itself, at 10,000 calls a day?'
SELECT training_cost_usd, tuned_cost_per_call, baseline_cost_per_call, saving_per_call,
	   breakeven_calls, never, breakeven_days, saving_from_tokens, saving_from_prices, saving_from_retries,
	   round(tuned_input_tokens_per_call, 1) AS tuned_in_tokens,
	   round(baseline_input_tokens_per_call, 1) AS baseline_in_tokens
  FROM llm_breakeven('tuned', 'v2-few-shot', :run, 10000);
\endif

\echo
\echo '== a promotion gated by evidence: production moves only if the candidate wins, by enough, at a cost we accept'
\echo '   first the few-shot prompt, at no more than 1.2 times the cost of what serves now:'
SELECT d ->> 'promoted' AS promoted, d -> 'reasons' AS reasons,
	   d -> 'evidence' -> 'test' ->> 'mean_diff' AS mean_diff,
	   d -> 'evidence' -> 'test' ->> 'sign_test_p' AS sign_p,
	   d -> 'evidence' -> 'cost' ->> 'ratio' AS cost_ratio
  FROM llm_prompt_promote('triage', 'production', :run, 'v2-few-shot', min_gain => 0.05, alpha => 0.05,
						  max_cost_ratio => 1.2) d;
\echo '   then the candidate, at no more than 3 times:'
SELECT d ->> 'promoted' AS promoted, d -> 'reasons' AS reasons,
	   d -> 'evidence' -> 'test' ->> 'mean_diff' AS mean_diff,
	   d -> 'evidence' -> 'test' ->> 'sign_test_p' AS sign_p,
	   d -> 'evidence' -> 'cost' ->> 'ratio' AS cost_ratio
  FROM llm_prompt_promote('triage', 'production', :run, :'candidate', min_gain => 0.05, alpha => 0.05,
						  max_cost_ratio => 3) d;
\echo '   the label history keeps every decision and its evidence (a rollback is one call: llm_prompt_rollback)'
SELECT action, to_variants, evidence -> 'candidate' ->> 'variant' AS candidate,
	   evidence -> 'test' ->> 'sign_test_p' AS sign_p
  FROM llm.prompt_label_history WHERE name = 'triage' ORDER BY id;

\echo
\echo '== a picture of the run (self-contained HTML)'
SELECT llm_eval_report_html(:run) AS page \gset
\o :html
\qecho :page
\o
SELECT :'html' AS written, length(:'page') AS characters;
