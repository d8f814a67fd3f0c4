-- Per-provider rate limits, shared by every session: requests_per_minute
-- allows a burst of that many requests, then one every 60 / limit seconds.
-- (The checks are lower bounds on elapsed time: a limiter guarantees them.)
-- (buckets live in shared memory across runs: a fresh provider name each time)
SELECT 'fake-rpm-' || left(md5(random()::text), 8) AS rpm_provider \gset
SELECT llm_provider_create(:'rpm_provider', current_setting('llmext_test.fake_url'),
						   options => '{"requests_per_minute": 60}');
SELECT llm_model_create('rpm-echo', :'rpm_provider', 'echo');

SELECT clock_timestamp() AS t0 \gset
SELECT count(completion) AS answers
  FROM llm_complete_batch(ARRAY(SELECT 'burst ' || g FROM generate_series(1, 62) g), 'rpm-echo');
SELECT clock_timestamp() - :'t0'::timestamptz >= interval '1.5 seconds' AS last_two_waited;

-- the bucket is shared: another call now waits its turn too
SELECT clock_timestamp() AS t1 \gset
SELECT llm_complete('one more', 'rpm-echo');
SELECT clock_timestamp() - :'t1'::timestamptz >= interval '0.5 seconds' AS waited;

-- the queue's worker shares the bucket: held-back requests wait in the
-- queue, and waiting is not counted as an attempt
SELECT count(llm_submit('queued ' || g, 'rpm-echo', tag => 'rpm')) AS submitted
  FROM generate_series(1, 2) g;
SELECT llm_wait_batch('rpm', '30 seconds') - 'tag' AS summary;
SELECT max(attempts) AS attempts FROM llm.requests WHERE tag = 'rpm';

-- bad limits
SELECT error_of($$SELECT llm_provider_create('p', 'http://x/v1', options => '{"requests_per_minute": 0}')$$);
SELECT error_of($$SELECT llm_provider_create('p', 'http://x/v1', options => '{"tokens_per_minute": "many"}')$$);

-- Per-model limits (OpenAI sets its limits per model): the model's own
-- max_concurrency holds for batches and the worker, while another model of
-- the same provider is not held back.
SELECT 'fake-models-' || left(md5(random()::text), 8) AS models_provider \gset
SELECT llm_provider_create(:'models_provider', current_setting('llmext_test.fake_url'));
SELECT llm_model_create('duo-slow', :'models_provider', 'slow-100', limits => '{"max_concurrency": 2}');
SELECT llm_model_create('free-slow', :'models_provider', 'slow-100');
SELECT limits FROM llm.models WHERE name = 'duo-slow';

SELECT llm_complete('reset', 'stats-reset') IS NOT NULL AS counters_reset;
SELECT count(completion) AS answers
  FROM llm_complete_batch(ARRAY['a', 'b', 'c', 'd', 'e', 'f'], 'duo-slow', concurrency => 8);
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'max_in_flight')::int AS max_in_flight;

SELECT llm_complete('reset', 'stats-reset') IS NOT NULL AS counters_reset;
SELECT count(completion) AS answers
  FROM llm_complete_batch(ARRAY['a', 'b', 'c', 'd', 'e', 'f'], 'free-slow', concurrency => 8);
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'max_in_flight')::int > 2 AS other_model_not_held;

SELECT llm_complete('reset', 'stats-reset') IS NOT NULL AS counters_reset;
SELECT count(llm_submit('m' || g, 'duo-slow', tag => 'duo')) AS submitted
  FROM generate_series(1, 6) g;
SELECT llm_wait_batch('duo', '30 seconds') ->> 'done' AS done;
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'max_in_flight')::int AS max_in_flight;
SELECT max(attempts) AS attempts FROM llm.requests WHERE tag = 'duo';

-- limits change without a restart; '{}' removes them
SELECT llm_model_set_limits('duo-slow', '{}');
SELECT llm_complete('reset', 'stats-reset') IS NOT NULL AS counters_reset;
SELECT count(completion) AS answers
  FROM llm_complete_batch(ARRAY['a', 'b', 'c', 'd', 'e', 'f'], 'duo-slow', concurrency => 8);
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'max_in_flight')::int > 2 AS no_longer_held;

-- bad model limits
SELECT error_of($$SELECT llm_model_set_limits('duo-slow', '{"max_concurrency": 0}')$$);
SELECT error_of($$SELECT llm_model_set_limits('duo-slow', '{"requests_per_minute": 1.5}')$$);
SELECT error_of($$SELECT llm_model_set_limits('duo-slow', '{"max_attempts": 3}')$$);
SELECT error_of($$SELECT llm_model_set_limits('duo-slow', '[1]')$$);
SELECT error_of($$SELECT llm_model_set_limits('no-such-model', '{}')$$);
SELECT error_of($$SELECT llm_model_create('m2', 'fake', 'echo', limits => '{"tokens_per_minute": "lots"}')$$);
CREATE ROLE regress_ratelimit_user IN ROLE llm_user;
SET ROLE regress_ratelimit_user;
SELECT error_of($$SELECT llm_model_set_limits('duo-slow', '{}')$$);
RESET ROLE;
DROP ROLE regress_ratelimit_user;

-- Shared memory has 64 slots for providers and models with limits.  One with
-- nothing in flight and its buckets full again holds nothing a new slot would
-- not, and gives its place to a newcomer, which is then limited too.
DO $$
BEGIN
	FOR i IN 1..70 LOOP
		PERFORM llm_model_create('slot-' || i, 'fake', 'echo', limits => '{"max_concurrency": 1}');
	END LOOP;
END
$$;
SELECT count(llm_complete('fill', 'slot-' || g)) AS calls FROM generate_series(1, 70) g;
-- each of them gave its place back, though this session has used more
-- limited models than it has entries for its own requests in flight
SET statement_timeout = '20s';
SELECT count(llm_complete('again', 'slot-' || g)) AS calls_again FROM generate_series(1, 70) g;
RESET statement_timeout;
-- (a fresh name each run: a drained bucket of an earlier run would wait)
SELECT 'slot-late-' || left(md5(random()::text), 8) AS late_model \gset
SELECT llm_model_create(:'late_model', 'fake', 'echo', limits => '{"requests_per_minute": 60}');
SELECT clock_timestamp() AS t2 \gset
SELECT count(completion) AS answers
  FROM llm_complete_batch(ARRAY(SELECT 'late ' || g FROM generate_series(1, 62) g), :'late_model');
SELECT clock_timestamp() - :'t2'::timestamptz >= interval '1.5 seconds' AS late_model_limited;
DO $$
BEGIN
	FOR i IN 1..70 LOOP
		PERFORM llm_model_drop('slot-' || i);
	END LOOP;
END
$$;
SELECT llm_model_drop(:'late_model');
