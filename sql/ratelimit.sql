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
