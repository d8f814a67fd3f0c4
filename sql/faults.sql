-- A provider that misbehaves: each failure is a clear error with its own
-- SQLSTATE (class LL), the provider's message in DETAIL and never the key.

SELECT error_of($$SELECT llm_complete('hi', 'fail-400')$$);
SELECT error_of($$SELECT llm_complete('hi', 'fail-401')$$);
SELECT error_of($$SELECT llm_complete('hi', 'fail-403')$$);
SELECT error_of($$SELECT llm_complete('hi', 'fail-404')$$);
SELECT error_of($$SELECT llm_complete('hi', 'fail-429')$$);
SELECT error_of($$SELECT llm_complete('hi', 'fail-500')$$);
SELECT error_of($$SELECT llm_complete('hi', 'fail-503')$$);
SELECT error_of($$SELECT llm_complete('hi', 'nonjson')$$);
-- (the excerpt of the body carries the fake's running response id)
SELECT split_part(e, E'\n', 1) AS error,
	   split_part(e, E'\n', 2) LIKE 'DETAIL: The body begins: {"id":"chatcmpl-fake-%' AS detail_shows_body
  FROM (VALUES (error_of($$SELECT llm_complete('hi', 'truncated')$$)),
			   (error_of($$SELECT llm_complete('hi', 'nochoices')$$))) AS t(e);

-- the 401 body echoes the key the provider received; llmext redacts it
SELECT position('sk-test-fake' IN error_of($$SELECT llm_complete('hi', 'fail-401')$$)) AS key_shown;

-- a wrong key: the provider refuses it
SELECT llm_provider_set_key('fake', 'sk-wrong');
SELECT error_of($$SELECT llm_complete('hi', 'auth')$$);
SELECT llm_provider_set_key('fake', 'sk-test-fake-0123456789');
SELECT llm_complete('key restored', 'auth');

-- a body over llmext.max_response_bytes
SET llmext.max_response_bytes = '100kB';
SELECT error_of($$SELECT llm_complete('hi', 'huge-200000')$$);
RESET llmext.max_response_bytes;
SELECT length(llm_complete('hi', 'huge-200000')) AS fits_under_default_limit;

-- a provider slower than llmext.request_timeout
SET llmext.request_timeout = '300ms';
SELECT regexp_replace(error_of($$SELECT llm_complete('hi', 'slow-30000')$$),
					  'after \d+ milliseconds', 'after N milliseconds');
RESET llmext.request_timeout;

-- nobody listening
SELECT llm_provider_create('down', 'http://127.0.0.1:9/v1');
SELECT llm_model_create('down-model', 'down', 'echo');
SELECT regexp_replace(error_of($$SELECT llm_complete('hi', 'down-model')$$),
					  'after \d+ ms', 'after N ms');

-- on_error => null: a failed call gives NULL after a WARNING, and the
-- statement goes on for the other rows
SELECT m, llm_complete('row', m, NULL, '{"on_error": "null"}') AS answer
  FROM unnest(ARRAY['echo', 'fail-500', 'echo', 'nonjson']) m;
SELECT llm_chat('[{"role": "user", "content": "x"}]', 'fail-429', '{"on_error": "null"}') IS NULL
	AS chat_null_on_error;
-- usage errors still raise: on_error is about the provider's failures
SELECT error_of($$SELECT llm_complete('hi', 'nosuch', NULL, '{"on_error": "null"}')$$);

-- statement_timeout cancels a call in flight; the fake provider sees the
-- client go away long before its 30 s answer
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'aborted')::int AS aborted_before \gset
SET statement_timeout = '500ms';
SELECT llm_complete('hi', 'slow-30000');
RESET statement_timeout;
SELECT pg_sleep(0.2);
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'aborted')::int - :aborted_before AS aborted_by_cancel;
-- the provider may bill a request it had started: the ledger keeps it
SELECT llm_flush() AS flushed;
SELECT model, outcome, error FROM llm.calls WHERE model = 'slow-30000' ORDER BY id DESC LIMIT 1;

-- the backend is healthy afterwards
SELECT llm_complete('after the faults', 'echo');
