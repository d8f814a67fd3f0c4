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
