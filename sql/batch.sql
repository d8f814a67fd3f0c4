-- llm_complete_batch: many calls from one statement, several in flight at
-- once, rows in input order, failures as error text.
SELECT llm_model_create('slow-200', 'fake', 'slow-200');
SELECT llm_complete('reset', 'stats-reset') IS NOT NULL AS counters_reset;

SELECT ord, completion, response ->> 'model' AS model, error
  FROM llm_complete_batch(ARRAY['one', 'two', NULL, 'four'], 'echo');

-- sixteen slow calls, eight at a time: the provider sees them overlap
SELECT count(*) AS rows, count(completion) AS answers,
	   bool_and(completion = 'echo: p' || ord) AS in_input_order
  FROM llm_complete_batch(ARRAY(SELECT 'p' || g FROM generate_series(1, 16) g), 'slow-200',
						  concurrency => 8);
SELECT (s ->> 'max_in_flight')::int BETWEEN 2 AND 8 AS overlapped_within_the_limit,
	   (s -> 'by_model' ->> 'slow-200')::int AS requests
  FROM (SELECT llm_complete('stats', 'stats')::jsonb AS s) x;

-- a failed element gives its error in its row; the others go on
-- (a provider that allows one attempt: no retries)
SELECT llm_provider_create('fake-once', current_setting('llmext_test.fake_url'),
						   options => '{"max_attempts": 1}');
SELECT llm_model_create('flaky-once', 'fake-once', 'flaky-2-once');
SELECT ord, completion, split_part(error, ':', 1) AS error
  FROM llm_complete_batch(ARRAY['a', 'b', 'c', '', 'e'], 'flaky-once', concurrency => 1);
-- ... unless asked to stop at the first failure
SELECT error_of($$SELECT * FROM llm_complete_batch(ARRAY['a', 'b'], 'fail-500', options => '{"on_error": "error"}')$$);
-- ... and an input that cannot be sent stops it before any request is paid for
SELECT llm_complete('reset', 'stats-reset') IS NOT NULL AS counters_reset;
SELECT error_of($$SELECT * FROM llm_complete_batch(ARRAY['a', 'b', 'c', ''], 'echo', options => '{"on_error": "error"}', concurrency => 1)$$);
SELECT coalesce(llm_complete('stats', 'stats')::jsonb -> 'by_model' ->> 'echo', '0') AS echo_requests_sent;

-- retries: a 503 twice, then an answer (every attempt is in the ledger)
SELECT llm_model_create('flaky-twice', 'fake', 'flaky-2-retry');
SELECT ord, completion, error FROM llm_complete_batch(ARRAY['retry me'], 'flaky-twice');
SELECT fake_requests('flaky-2-retry') AS attempts_made;
-- a 400 is not retried; a 429 is, after its Retry-After, until max_attempts (3)
SELECT llm_model_create('limited', 'fake', 'fail-429');
SELECT ord, split_part(error, ':', 1) AS error
  FROM llm_complete_batch(ARRAY['bad'], 'fail-400');
SELECT clock_timestamp() AS t429 \gset
SELECT ord, split_part(error, ':', 1) AS error
  FROM llm_complete_batch(ARRAY['slow down'], 'limited');
-- the provider asked for 1 s between attempts: three attempts take at least 2 s
SELECT clock_timestamp() - :'t429'::timestamptz >= interval '2 seconds' AS retry_after_honoured;
SELECT fake_requests('fail-400') AS requests_for_400, fake_requests('fail-429') AS requests_for_429;
SELECT llm_flush() AS flushed;
SELECT model, outcome, count(*) FROM llm.calls
 WHERE model IN ('flaky-twice', 'limited') GROUP BY 1, 2 ORDER BY 1, 2;

-- a provider's max_concurrency caps the batch's
SELECT llm_provider_create('fake-narrow', current_setting('llmext_test.fake_url'),
						   options => '{"max_concurrency": 2}');
SELECT llm_model_create('narrow-slow', 'fake-narrow', 'slow-100');
SELECT llm_complete('reset', 'stats-reset') IS NOT NULL AS counters_reset;
SELECT count(completion) AS answers
  FROM llm_complete_batch(ARRAY['a', 'b', 'c', 'd', 'e', 'f'], 'narrow-slow', concurrency => 8);
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'max_in_flight')::int AS max_in_flight;

-- the ledger has one row per call, marked batch; cache hits, repeats within
-- a batch included, are answered without a request
SELECT llm_flush() AS flushed;
SELECT count(*) AS batch_rows FROM llm.calls WHERE source = 'batch' AND model = 'slow-200';
SELECT llm_complete('reset', 'stats-reset') IS NOT NULL AS counters_reset;
SELECT fake_requests('echo') AS before \gset
SELECT count(*) FILTER (WHERE (response ->> 'cache_hit')::boolean) AS hits
  FROM llm_complete_batch(ARRAY['x', 'x', 'y'], 'echo', options => '{"temperature": 0}', concurrency => 1);
SELECT count(*) FILTER (WHERE (response ->> 'cache_hit')::boolean) AS hits
  FROM llm_complete_batch(ARRAY['x', 'y'], 'echo', options => '{"temperature": 0}');
SELECT fake_requests('echo') - :before AS requests_made;

-- bad input
SELECT count(*) AS rows FROM llm_complete_batch(NULL, 'echo');
SELECT count(*) AS rows FROM llm_complete_batch(ARRAY[]::text[], 'echo');
SELECT error_of($$SELECT * FROM llm_complete_batch(ARRAY['a'], 'nosuch')$$);
SELECT error_of($$SELECT * FROM llm_complete_batch(ARRAY['a'], 'echo', concurrency => 0)$$);
SELECT error_of($$SELECT * FROM llm_complete_batch(ARRAY['a'], 'echo', options => '[]')$$);
SELECT error_of($$SELECT * FROM llm_complete_batch(ARRAY[['a'], ['b']], 'echo')$$);
-- it also works in a select list
SELECT (llm_complete_batch(ARRAY['a', 'b'], 'echo')).completion;

-- query cancel stops every call in flight
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'aborted')::int AS aborted_before \gset
SET statement_timeout = '500ms';
SELECT * FROM llm_complete_batch(ARRAY['a', 'b', 'c', 'd'], 'slow-30000', concurrency => 4);
RESET statement_timeout;
SELECT pg_sleep(0.3);
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'aborted')::int - :aborted_before AS aborted_by_cancel;
SELECT llm_flush() AS flushed;
SELECT count(*) AS cancelled_in_ledger FROM llm.calls
 WHERE model = 'slow-30000' AND source = 'batch' AND error LIKE 'cancelled%';
SELECT llm_complete('after the batch', 'echo');

-- a stored prompt over many vars: a missing variable is that row's error
SELECT ord, completion, error
  FROM llm_complete_prompt_batch('other', ARRAY['{"name": "Ann"}', '{"nom": "Bo"}', NULL,
												  '{"name": "Cy"}']::jsonb[], model => 'echo');
SELECT llm_flush() AS flushed;
SELECT prompt_name, prompt_version, count(*) FROM llm.calls
 WHERE source = 'batch' AND prompt_name = 'other' GROUP BY 1, 2;
SELECT error_of($$SELECT * FROM llm_complete_prompt_batch('other', ARRAY['{"nom": "Bo"}']::jsonb[], model => 'echo', options => '{"on_error": "error"}')$$);
SELECT llm_complete('reset', 'stats-reset') IS NOT NULL AS counters_reset;
SELECT error_of($$SELECT * FROM llm_complete_prompt_batch('other', ARRAY['{"name": "Ann"}', '{"name": "Cy"}', '{"nom": "Bo"}']::jsonb[], model => 'echo', options => '{"on_error": "error"}', concurrency => 1)$$);
SELECT coalesce(llm_complete('stats', 'stats')::jsonb -> 'by_model' ->> 'echo', '0') AS echo_requests_sent;
SELECT error_of($$SELECT * FROM llm_complete_prompt_batch('nosuch', ARRAY['{}']::jsonb[])$$) AS unknown_prompt;
SELECT error_of($$SELECT * FROM llm_complete_prompt_batch(NULL, ARRAY['{}']::jsonb[])$$);
