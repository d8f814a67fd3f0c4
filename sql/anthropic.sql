-- Provider kind 'anthropic': the Anthropic Messages API, served by the fake
-- provider at POST /v1/messages.  last_request() is the body the fake last
-- received (its "stats" model reports it, with which auth headers came).
SET llmext.cache = off;

CREATE FUNCTION last_request() RETURNS jsonb
LANGUAGE sql AS $$ SELECT llm_complete('stats', 'stats')::jsonb -> 'last_request' $$;

-- 'anthropic' is accepted; a kind llmext does not implement is refused
SELECT llm_provider_create('claude-fake', current_setting('llmext_test.fake_url'),
						   kind => 'anthropic', api_key => 'sk-test-fake-0123456789');
SELECT name, kind FROM llm.providers WHERE name = 'claude-fake';
SELECT error_of($$SELECT llm_provider_create('other', 'http://localhost/v1', kind => 'gemini')$$);
SELECT split_part(error_of($$INSERT INTO llm.providers (name, kind, base_url, key_source)
							 VALUES ('other', 'gemini', 'http://localhost/v1', 'none')$$), E'\n', 1) AS error;

SELECT llm_model_create('claude', 'claude-fake', 'claude-echo',
						input_price => 3, output_price => 15, cached_input_price => 0.3,
						cache_write_price => 3.75);
SELECT llm_model_create('claude-capped', 'claude-fake', 'claude-echo',
						params => '{"max_tokens": 3}');
SELECT error_of($$SELECT llm_model_create('bad', 'claude-fake', 'x', cache_write_price => -1)$$);

-- a plain call: x-api-key and anthropic-version sent, no Authorization
SELECT llm_complete('What is SQL?', 'claude') AS content;
SELECT r ->> 'model' AS model, r ->> 'x_api_key' AS x_api_key,
	   r ->> 'authorization' AS authorization, r ->> 'anthropic_version' AS anthropic_version
  FROM last_request() r;

-- the full normalised result, the request id from the request-id header
SELECT r - 'latency_ms' - 'request_id' - 'call_id' AS result,
	   r ->> 'request_id' LIKE 'req_fake_%' AS has_request_id
  FROM llm_chat('[{"role": "user", "content": "What is SQL?"}]', 'claude') r;

-- system and developer messages become the top-level system, in order
SELECT llm_chat('[{"role": "system", "content": "Be brief."},
				  {"role": "developer", "content": [{"type": "text", "text": "Use SQL."}]},
				  {"role": "user", "content": "first"},
				  {"role": "assistant", "content": "echo: first"},
				  {"role": "user", "content": "second"}]', 'claude') ->> 'content' AS content;
SELECT r -> 'system' AS system, r -> 'messages' AS messages FROM last_request() r;
SELECT llm_complete('hi', 'claude', system => 'You are terse.') AS content;
SELECT r -> 'system' AS system FROM last_request() r;

-- max_tokens: the call's options, else the model's params, else 1024
SELECT llm_complete('one two three four', 'claude', options => '{"max_tokens": 2}') AS content;
SELECT r -> 'max_tokens' AS max_tokens, r ? 'max_completion_tokens' AS sent_openai_name
  FROM last_request() r;
SELECT llm_chat('[{"role": "user", "content": "one two three four"}]', 'claude',
				'{"max_completion_tokens": 1}') ->> 'finish_reason' AS finish_reason;
SELECT r -> 'max_tokens' AS max_tokens, r ? 'max_completion_tokens' AS sent_openai_name
  FROM last_request() r;
SELECT llm_complete('one two three four', 'claude-capped') AS content;
SELECT r -> 'max_tokens' AS max_tokens FROM last_request() r;
SELECT llm_complete('one two three four', 'claude-capped', options => '{"max_tokens": 4}') AS content;
SELECT r -> 'max_tokens' AS max_tokens FROM last_request() r;
SELECT llm_complete('hi', 'claude') IS NOT NULL AS answered;
SELECT r -> 'max_tokens' AS max_tokens FROM last_request() r;

-- stop becomes stop_sequences; temperature and top_p pass through
SELECT r ->> 'content' AS content, r ->> 'finish_reason' AS finish_reason
  FROM llm_chat('[{"role": "user", "content": "alpha beta gamma"}]', 'claude',
				'{"stop": "gamma", "temperature": 0.5, "top_p": 0.9}') r;
SELECT r -> 'stop_sequences' AS stop_sequences, r ? 'stop' AS sent_stop,
	   r -> 'temperature' AS temperature, r -> 'top_p' AS top_p
  FROM last_request() r;
SELECT llm_complete('alpha beta', 'claude', options => '{"stop": ["zeta", "beta"]}') AS content;
SELECT r -> 'stop_sequences' AS stop_sequences FROM last_request() r;

-- usage and cost: Anthropic's input_tokens excludes cache reads (30) and
-- writes (20); llmext's includes both.  The fake counts 4 + 3 = 7 uncached
-- input tokens and 4 output tokens: 7 at 3, 30 at 0.3, 20 at 3.75 and 4 at
-- 15 USD per million
SELECT llm_model_create('claude-cached', 'claude-fake', 'cache-30-20',
						input_price => 3, output_price => 15, cached_input_price => 0.3,
						cache_write_price => 3.75);
SELECT r -> 'usage' AS usage, (r ->> 'cost_usd')::numeric AS cost_usd,
	   (r ->> 'cost_usd')::numeric = (7 * 3 + 30 * 0.3 + 20 * 3.75 + 4 * 15) / 1e6 AS as_expected
  FROM llm_chat('[{"role": "user", "content": "one two three"}]', 'claude-cached') r;
-- the ledger keeps the three counts apart
SELECT llm_flush() AS flushed;
SELECT input_tokens, cached_input_tokens, cache_write_tokens, output_tokens
  FROM llm.calls WHERE model = 'claude-cached' ORDER BY id DESC LIMIT 1;
-- without the cache prices, reads and writes cost the input price
SELECT llm_model_create('claude-cached-plain', 'claude-fake', 'cache-30-20',
						input_price => 3, output_price => 15);
SELECT (r ->> 'cost_usd')::numeric = ((7 + 30 + 20) * 3 + 4 * 15) / 1e6 AS input_price_for_cache
  FROM llm_chat('[{"role": "user", "content": "one two three"}]', 'claude-cached-plain') r;

-- a stored prompt's response schema: a forced tool whose input is the answer
-- (in a transaction rolled back: prompt versions cannot be deleted, and the
-- prompts suite lists them all; the unpriced model's calls are deleted
-- below, which leaves the spend per day as it was)
SELECT llm_model_create('claude-json', 'claude-fake', 'claude-echo');
BEGIN;
SELECT llm_prompt_create('city', 'Which city: {{q}}', model => 'claude-json',
						 response_schema => '{"type": "object",
											  "properties": {"city": {"type": "string"}},
											  "required": ["city"]}') AS version;
SELECT llm_complete_json('city', '{"q": "Paris"}') AS answer;
SELECT r -> 'tools' AS tools, r -> 'tool_choice' AS tool_choice,
	   r ? 'response_format' AS sent_response_format
  FROM last_request() r;
ROLLBACK;
-- a tool of the caller's own is a tool call, as OpenAI's
SELECT r ->> 'content' AS content, r ->> 'finish_reason' AS finish_reason,
	   r #>> '{tool_calls,0,id}' LIKE 'toolu_fake_%' AS has_id, r -> 'tool_calls' #- '{0,id}' AS tool_calls
  FROM llm_chat('[{"role": "user", "content": "x"}]', 'claude',
		'{"tools": [{"name": "lookup", "input_schema": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}}],
		  "tool_choice": {"type": "tool", "name": "lookup"}}') r;

-- errors: Anthropic's error body, the same SQLSTATEs by status as OpenAI's
SELECT llm_model_create('claude-' || m, 'claude-fake', m)
  FROM unnest(ARRAY['fail-400', 'fail-401', 'fail-403', 'fail-404', 'fail-413', 'fail-429',
					'fail-500', 'fail-503', 'fail-529', 'nonjson', 'truncated']) AS m;
-- (the fake's message ids count its answers: masked)
SELECT m AS model, regexp_replace(error_of(format('SELECT llm_complete(%L, %L)', 'hi', 'claude-' || m)),
								  'msg_fake_[0-9]+', 'msg_fake_N') AS error
  FROM unnest(ARRAY['fail-400', 'fail-403', 'fail-404', 'fail-413', 'fail-429', 'fail-500',
					'fail-503', 'fail-529', 'nonjson', 'truncated']) AS m;
-- the 401 body echoes the x-api-key the fake received: llmext redacts it
SELECT error_of($$SELECT llm_complete('hi', 'claude-fail-401')$$);
SELECT position('sk-test-fake' IN error_of($$SELECT llm_complete('hi', 'claude-fail-401')$$)) AS key_shown;

-- a wrong key, and no key at all
SELECT llm_provider_create('claude-badkey', current_setting('llmext_test.fake_url'),
						   kind => 'anthropic', api_key => 'sk-wrong');
SELECT llm_provider_create('claude-nokey', current_setting('llmext_test.fake_url'),
						   kind => 'anthropic');
SELECT llm_model_create('claude-badkey', 'claude-badkey', 'claude-echo');
SELECT llm_model_create('claude-nokey', 'claude-nokey', 'claude-echo');
SELECT error_of($$SELECT llm_complete('hi', 'claude-badkey')$$);
SELECT error_of($$SELECT llm_complete('hi', 'claude-nokey')$$);

-- a provider's headers option replaces the version header; an empty value
-- sends none, which Anthropic refuses
SELECT llm_provider_create('claude-version', current_setting('llmext_test.fake_url'),
						   kind => 'anthropic', api_key => 'sk-test-fake-0123456789',
						   options => '{"headers": {"anthropic-version": "2099-01-01"}}');
SELECT llm_model_create('claude-version', 'claude-version', 'claude-echo');
SELECT llm_complete('hi', 'claude-version') AS content;
SELECT r ->> 'anthropic_version' AS anthropic_version FROM last_request() r;
SELECT llm_provider_create('claude-noversion', current_setting('llmext_test.fake_url'),
						   kind => 'anthropic', api_key => 'sk-test-fake-0123456789',
						   options => '{"headers": {"anthropic-version": ""}}');
SELECT llm_model_create('claude-noversion', 'claude-noversion', 'claude-echo');
SELECT error_of($$SELECT llm_complete('hi', 'claude-noversion')$$);

-- 529 (overloaded) is retried in a batch, like 503: two 529s, then an answer
SELECT llm_model_create('claude-flaky', 'claude-fake', 'flaky-2-anthropic');
SELECT ord, completion, error FROM llm_complete_batch(ARRAY['retry me'], 'claude-flaky');
SELECT fake_requests('flaky-2-anthropic') AS attempts_made;
-- and in the queue: the worker retries it, the request ends done on its third attempt
SELECT llm_model_create('claude-flaky-q', 'claude-fake', 'flaky-2-anthropic-queue');
SELECT llm_submit('retry me', 'claude-flaky-q', tag => 'anthropic-529') AS qid \gset
SELECT llm_wait_batch('anthropic-529', '30 seconds') ->> 'done' AS done;
SELECT state, attempts, completion FROM llm.requests WHERE id = :qid;
SELECT fake_requests('flaky-2-anthropic-queue') AS attempts_made;

-- the ledger: the cost with cache prices, and the key nowhere
SELECT llm_flush() AS flushed;
SELECT input_tokens, cached_input_tokens, output_tokens, cost_usd
  FROM llm.calls WHERE model = 'claude-cached';
SELECT count(*) AS calls_with_key FROM llm.calls
 WHERE provider LIKE 'claude%'
   AND concat(error, request_id, remote_model) LIKE '%sk-test-fake%';

-- leave nothing for the suites that follow
DELETE FROM llm.calls WHERE prompt_name = 'city' AND cost_usd = 0;
SELECT llm_provider_drop(name, cascade => true) FROM llm.providers WHERE kind = 'anthropic';
DROP FUNCTION last_request();
