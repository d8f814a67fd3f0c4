-- llmext demo: register a provider and a model, then ask questions from SQL.
\pset footer off
\echo
\echo '== the registered models'
SELECT name, provider, remote_model, kind, input_price, output_price FROM llm.models;

\echo '== one question'
SELECT llm_complete('In one sentence: why keep prompts in the database?', 'demo') AS answer;

\echo '== a system prompt and options'
SELECT llm_complete('Name three uses of PostgreSQL.', 'demo',
					system => 'Answer in at most ten words.',
					options => '{"temperature": 0, "max_completion_tokens": 40}') AS answer;

\echo '== one call per row'
SELECT t.ticket, llm_complete('Classify this support ticket as bug, question or praise: ' || t.body,
							  'demo', options => '{"temperature": 0}') AS label
  FROM (VALUES (1, 'The export button crashes the app.'),
			   (2, 'How do I change my password?'),
			   (3, 'Love the new dashboard!')) AS t(ticket, body);

\echo '== the full result of a chat call: tokens, cost, latency'
SELECT r ->> 'content' AS content,
	   r -> 'usage' ->> 'input_tokens' AS input_tokens,
	   r -> 'usage' ->> 'output_tokens' AS output_tokens,
	   r ->> 'cost_usd' AS cost_usd,
	   r ->> 'latency_ms' AS latency_ms
  FROM llm_chat('[{"role": "system", "content": "You are a helpful DBA."},
				  {"role": "user", "content": "What does VACUUM do?"}]', 'demo') r;

\echo '== a stored, versioned prompt: create, deploy, call'
SELECT llm_prompt_create('classify', 'Classify this support ticket as bug, question or praise: {{body}}',
						 system => 'Answer with one word.', params => '{"temperature": 0}') AS version;
SELECT llm_prompt_deploy('classify', 1);
SELECT llm_complete_prompt('classify', jsonb_build_object('body', 'The app freezes on login.'), model => 'demo') AS label;

\echo '== the same deterministic call again: answered from the cache, at no cost'
SELECT r ->> 'cache_hit' AS cache_hit, r ->> 'cost_usd' AS cost_usd, r ->> 'cost_saved_usd' AS cost_saved_usd
  FROM llm_chat(llm_render('classify', jsonb_build_object('body', 'The app freezes on login.')) -> 'messages',
				'demo', '{"temperature": 0}') r;

\echo '== many prompts at once from one statement'
SELECT ord, completion
  FROM llm_complete_prompt_batch('classify',
								 ARRAY['{"body": "Crash on save"}', '{"body": "Where are the docs?"}']::jsonb[],
								 model => 'demo');

\echo '== a nightly batch through the background worker, then its progress'
SELECT count(llm_submit_prompt('classify', jsonb_build_object('body', 'ticket ' || g), model => 'demo',
							   tag => 'demo-batch')) AS queued
  FROM generate_series(1, 20) g;
SELECT llm_wait_batch('demo-batch', '60 seconds') - 'tag' AS finished;
SELECT tag, total, done, error, tokens, cost_usd FROM llm.batches WHERE tag = 'demo-batch';

\echo '== every call is on the ledger, even those of rolled-back transactions'
SELECT llm_flush() AS flushed;
SELECT model, prompt_name, prompt_version, calls, cache_hits, input_tokens, output_tokens, cost_usd
  FROM llm.usage_daily ORDER BY calls DESC;
