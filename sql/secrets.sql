-- Secrets and bad input (docs/security.md, items 7, 8 and 10): the key never
-- shows in what a provider says, key_env and base URLs stay within the
-- superuser's settings, and JSON that llmext cannot hold is refused.
SET client_min_messages = warning;

-- A provider with the fake's key that does not retry, so that a 500 is
-- answered at once.
SELECT llm_provider_create('leaky', current_setting('llmext_test.fake_url'),
						   api_key => 'sk-test-fake-0123456789',
						   options => '{"max_attempts": 1}');
SELECT llm_model_create(m, 'leaky', m)
  FROM unnest(ARRAY['leak-181', 'leak-190', 'leak-ids', 'leak-long-id', 'nul']) AS m;

-- 7a: the key at byte 181 of a non-JSON error body: redacted before the
-- 200-byte cut, so none of it shows
SELECT replace(error_of($$SELECT llm_complete('hi', 'leak-181')$$), repeat('x', 181), '<181 x>') AS error;
SELECT replace(error_of($$SELECT llm_complete('hi', 'leak-190')$$), repeat('x', 190), '<190 x>') AS error;

-- 7b: the key echoed in request_id, the model's name, the id and the answer
SELECT r ->> 'content' AS content, r ->> 'remote_model' AS remote_model,
	   r ->> 'request_id' AS request_id
  FROM llm_chat('[{"role": "user", "content": "ids"}]', 'leak-ids') AS r;
-- a request id the client cut to 127 bytes ends inside the key: masked too
SELECT replace(llm_chat('[{"role": "user", "content": "long"}]', 'leak-long-id') ->> 'request_id',
			   repeat('r', 110), '<110 r>') AS request_id;

-- the same through the queue
SELECT llm_submit('hi', 'leak-181', tag => 'secrets') AS q181 \gset
SELECT llm_submit('queued ids', 'leak-ids', tag => 'secrets') AS qids \gset
SELECT r ->> 'state' AS state, replace(r ->> 'error', repeat('x', 181), '<181 x>') AS error
  FROM llm_wait(:q181, '10 seconds') AS r;
SELECT r ->> 'completion' AS completion, r -> 'response' ->> 'remote_model' AS remote_model,
	   r -> 'response' ->> 'request_id' AS request_id
  FROM llm_wait(:qids, '10 seconds') AS r;

-- and nothing stored holds a piece of it: the ledger, the queue, the cache
SELECT llm_flush() AS flushed;
SELECT model, remote_model,
	   regexp_replace(replace(request_id, repeat('r', 110), '<110 r>'), '^req_fake_\d+$', 'req_fake_<n>') AS request_id,
	   replace(replace(error, repeat('x', 190), '<190 x>'), repeat('x', 181), '<181 x>') AS error
  FROM llm.calls WHERE provider = 'leaky' ORDER BY id;
SELECT count(*) AS calls_with_key FROM llm.calls
 WHERE concat(remote_model, request_id, error) ~ 'sk-t|fake-0|0123';
SELECT count(*) AS requests_with_key FROM llm.requests
 WHERE concat(error, completion, response::text) ~ 'sk-t|fake-0|0123';
SELECT count(*) AS cached_with_key FROM llm.cache WHERE concat(remote_model, result::text) ~ 'sk-t|fake-0|0123';

-- 8: key_env is limited to llmext.key_env_allowed (default *_API_KEY)
SHOW llmext.key_env_allowed;
SHOW llmext.allowed_hosts;
SELECT error_of($$SELECT llm_provider_create('x', 'http://attacker/', key_env => 'PGDATA')$$);
SELECT error_of($$SELECT llm_provider_create('x', 'http://attacker/', key_env => 'PATH')$$);
SELECT error_of($$SELECT llm_provider_create('x', 'http://attacker/', key_env => 'openai_api_key')$$);
SELECT count(*) AS created FROM llm.providers WHERE name = 'x';
SELECT llm_provider_create('envp', current_setting('llmext_test.fake_url'),
						   key_env => 'LLMEXT_TEST_UNSET_API_KEY');
SELECT llm_model_create('envm', 'envp', 'echo');
-- a setting tightened later holds at call time
SET llmext.key_env_allowed = 'OPENAI_API_KEY, AZURE_*';
SELECT error_of($$SELECT llm_complete('tightened', 'envm')$$);
RESET llmext.key_env_allowed;
SELECT error_of($$SELECT llm_complete('tightened', 'envm')$$);
-- only a superuser sets them
CREATE ROLE regress_secrets_admin IN ROLE llm_admin;
SET ROLE regress_secrets_admin;
SELECT error_of($$SET llmext.key_env_allowed = '*'$$);
SELECT error_of($$SET llmext.allowed_hosts = '*'$$);
SELECT error_of($$SELECT llm_provider_create('x', 'http://attacker/', key_env => 'PGDATA')$$);
RESET ROLE;
DROP ROLE regress_secrets_admin;

-- 8: base URLs are limited to llmext.allowed_hosts (default any)
SELECT fake_requests('echo') AS echo_requests_before \gset
SET llmext.allowed_hosts = 'api.openai.com, *.openai.azure.com';
SELECT error_of($$SELECT llm_provider_create('x', 'http://attacker/v1')$$);
SELECT error_of($$SELECT llm_provider_create('x', 'https://openai.azure.com.attacker/v1')$$);
SELECT error_of($$SELECT llm_provider_create('x', 'http://attacker#.openai.azure.com/v1')$$);
SELECT llm_provider_create('azure', 'https://Team.OpenAI.Azure.com/openai/v1');
SELECT llm_provider_drop('azure');
-- the fake provider, created before, is refused at call time: nothing is sent
SELECT regexp_replace(error_of($$SELECT llm_complete('hosts tightened', 'echo')$$),
					  'port \d+', 'port <port>') AS error;
SET llmext.allowed_hosts = '127.0.0.1:1';
SELECT regexp_replace(error_of($$SELECT llm_complete('hosts tightened', 'echo')$$),
					  'port \d+', 'port <port>') AS error;
SET llmext.allowed_hosts = 'localhost, 127.0.0.1:*';
SELECT llm_complete('hosts allowed', 'echo');
RESET llmext.allowed_hosts;
SELECT fake_requests('echo') - :echo_requests_before AS echo_requests_sent;
-- the background worker reads the settings of the server's configuration
ALTER SYSTEM SET llmext.allowed_hosts = 'api.openai.com';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SELECT llm_submit('worker tightened', 'echo', tag => 'secrets') AS qhost \gset
SELECT r ->> 'state' AS state, regexp_replace(r ->> 'error', 'port \d+', 'port <port>') AS error
  FROM llm_wait(:qhost, '10 seconds') AS r;
ALTER SYSTEM RESET llmext.allowed_hosts;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SELECT llm_submit('worker allowed', 'echo', tag => 'secrets') AS qhost \gset
SELECT r ->> 'state' AS state, r ->> 'completion' AS completion FROM llm_wait(:qhost, '10 seconds') AS r;

-- 10: JSON nested deeper than llmext reads (cJSON's 1000 levels)
SELECT error_of(format($$SELECT llm_complete('deep', 'echo', options => %L)$$,
					   repeat('{"a":', 5000) || '1' || repeat('}', 5000)));
SELECT error_of(format($$SELECT llm_chat(%L, 'echo')$$,
					   '[{"role": "user", "content": ' || repeat('[', 10000) || repeat(']', 10000) || '}]'));
SELECT error_of(format($$SELECT llm_prompt_create('deep', 'x', response_schema => %L)$$,
					   repeat('{"items":', 1001) || '{}' || repeat('}', 1001)));
-- 10: numbers that do not fit a double are refused, never sent as null
SELECT fake_requests('echo') AS echo_requests_before \gset
SELECT error_of($$SELECT llm_complete('big seed', 'echo', options => '{"seed": 1e400}')$$);
SELECT error_of($$SELECT llm_complete('big limit', 'echo', options => '{"max_completion_tokens": 1e400}')$$);
SELECT error_of($$SELECT llm_complete('nested', 'echo', options => '{"metadata": {"n": [-1e400]}}')$$);
SELECT error_of($$SELECT llm_complete('half', 'echo', options => '{"max_completion_tokens": 2.5}')$$);
SELECT error_of($$SELECT llm_complete('huge seed', 'echo', options => '{"seed": 1e20}')$$);
SELECT error_of($$SELECT llm_complete('text limit', 'echo', options => '{"max_tokens": "10"}')$$);
SELECT fake_requests('echo') - :echo_requests_before AS echo_requests_sent;
SELECT count(*) AS cached FROM llm.cache WHERE result ->> 'content' ~ 'big|huge|half|nested|text limit';
SELECT llm_complete('fine seed', 'echo', options => '{"seed": -42, "max_completion_tokens": 3}');

-- 10: an answer with a NUL character is refused, never cut
SELECT error_of($$SELECT llm_complete('hi', 'nul')$$);
SELECT llm_complete('hi', 'nul', options => '{"on_error": "null"}') IS NULL AS null_on_error;
SELECT llm_submit('hi', 'nul', tag => 'secrets') AS qnul \gset
SELECT r ->> 'state' AS state, r ->> 'error' AS error FROM llm_wait(:qnul, '10 seconds') AS r;
SELECT llm_flush() AS flushed;
SELECT outcome, error, output_tokens > 0 AS charged FROM llm.calls
 WHERE model = 'nul' ORDER BY id LIMIT 1;

SELECT llm_provider_drop('envp', cascade => true);
SELECT llm_provider_drop('leaky', cascade => true);
