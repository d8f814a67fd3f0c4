-- Queued requests through a provider's Batch API: the worker collects them
-- per model into provider batches (llm.provider_batches), uploads a file of
-- lines, creates the batch at the fake provider (/v1/batches, answering at
-- its first look: no step), polls it, and joins the output on custom_id.
ALTER SYSTEM SET llmext.batch_api_wait = 0;
ALTER SYSTEM SET llmext.batch_api_poll_interval = 50;
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);

-- waits until sql (a boolean query) is true; false after timeout.  A
-- request ends before its provider batch does: the batch's state is read
-- only once this says it has ended.
CREATE FUNCTION wait_until(sql text, timeout interval DEFAULT '20 seconds') RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	ok boolean;
	deadline timestamptz := clock_timestamp() + timeout;
BEGIN
	LOOP
		EXECUTE sql INTO ok;
		IF ok THEN
			RETURN true;
		END IF;
		IF clock_timestamp() > deadline THEN
			RETURN false;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;

-- bad input: the option, the provider option, the price ratio, a kind
-- without batch mode, a model nobody registered
SELECT error_of($$SELECT llm_submit('x', 'echo', options => '{"batch_api": "yes"}')$$);
SELECT error_of($$SELECT llm_submit('x', 'echo', options => '{"batch_api": null}')$$);
SELECT error_of($$SELECT llm_provider_create('p', 'http://x/v1', options => '{"batch_api": 1}')$$);
SELECT error_of($$SELECT llm_model_create('m', 'fake', 'echo', batch_price_ratio => -0.5)$$);
SELECT llm_provider_create('claude', current_setting('llmext_test.fake_url'), kind => 'anthropic',
						   api_key => 'sk-test-fake-0123456789');
SELECT llm_model_create('claude-batch', 'claude', 'claude-3-5-haiku');
SELECT llm_model_create('embedder-b', 'fake', 'text-embedding-3-small', use => 'embedding');
SELECT error_of($$SELECT llm_submit('x', 'claude-batch', options => '{"batch_api": true}')$$);
SELECT error_of($$SELECT llm_submit('x', 'nosuch', options => '{"batch_api": true}')$$);
SELECT error_of($$SELECT llm_provider_create('p', 'http://x/v1', kind => 'anthropic', options => '{"batch_api": true}')$$);
SELECT error_of($$SELECT llm_complete('x', 'echo', options => '{"batch_api": true}')$$);
SELECT error_of($$SELECT llm_complete('x', 'echo', options => '{"batch_api": 1}')$$);
SELECT llm_complete('x', 'echo', options => '{"batch_api": false}') AS batch_api_false_is_fine;
SET llmext.default_model = '';
SELECT error_of($$SELECT llm_submit('x', options => '{"batch_api": true}')$$);
RESET llmext.default_model;
SELECT error_of($$SELECT llm_submit('x', 'embedder-b')$$);
SELECT count(*) AS nothing_queued FROM llm.requests WHERE batch_api;

-- the default share of the prices, and one of a model's own
SELECT llm_model_create('echo-b', 'fake', 'echo', input_price => 0.15, output_price => 0.60);
SELECT llm_model_create('echo-b3', 'fake', 'echo', input_price => 0.15, output_price => 0.60,
						batch_price_ratio => 0.3);
SELECT name, batch_price_ratio FROM llm.models WHERE name IN ('echo', 'echo-b', 'echo-b3') ORDER BY name;

-- twenty requests in one batch: answered, joined on custom_id (the fake
-- writes its output in reverse order), at half price in the ledger
SELECT llm_complete('reset', 'stats-reset') IS NOT NULL AS counters_reset;
SELECT count(llm_submit('item ' || g, 'echo-b', tag => 'nightly-b', options => '{"batch_api": true}'))
	AS submitted
  FROM generate_series(1, 20) g;
SELECT llm_wait_batch('nightly-b', '30 seconds') ->> 'done' AS done;
SELECT wait_until($$SELECT bool_and(state IN ('done', 'failed', 'cancelled')) FROM llm.provider_batches
					 WHERE id IN (SELECT provider_batch FROM llm.requests WHERE tag = 'nightly-b')$$)
	AS batch_ended;
SELECT bool_and(completion = 'echo: ' || (messages -> 0 ->> 'content')) AS each_its_own_answer,
	   count(DISTINCT provider_batch) AS provider_batches, bool_and(batch_api) AS batch_api,
	   min(attempts) AS min_attempts, max(attempts) AS max_attempts
  FROM llm.requests WHERE tag = 'nightly-b';
SELECT b.state, b.provider, b.requests, b.answered, b.provider_status, b.completed, b.failed,
	   b.provider_batch_id LIKE 'batch_%' AS has_id, b.input_file_id IS NOT NULL AS uploaded,
	   b.output_file_id IS NOT NULL AS has_output, b.error_file_id IS NULL AS no_errors,
	   b.input_bytes > 0 AS has_bytes, b.finished_at IS NOT NULL AS finished
  FROM llm.provider_batches b
 WHERE b.id = (SELECT max(provider_batch) FROM llm.requests WHERE tag = 'nightly-b');
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'batches_created')::int AS batches_created,
	   (llm_complete('stats', 'stats')::jsonb ->> 'batch_lines')::int AS batch_lines,
	   coalesce((llm_complete('stats', 'stats')::jsonb -> 'by_model' ->> 'echo')::int, 0) AS chat_requests_for_echo;
SELECT llm_flush() AS flushed;
-- each answer costs batch_price_ratio of what the same answer costs at once
SELECT llm_complete('item 7', 'echo-b') AS sync_answer;
SELECT llm_flush() AS flushed;
SELECT c.source, count(*) AS calls,
	   bool_and(c.cost_usd = r.cost_usd) AS ledger_matches_requests
  FROM llm.calls c JOIN llm.requests r ON r.response ->> 'entry_id' = c.entry_id::text
 WHERE r.tag = 'nightly-b'
 GROUP BY c.source;
SELECT (SELECT cost_usd FROM llm.requests WHERE tag = 'nightly-b' AND messages -> 0 ->> 'content' = 'item 7')
	   / (SELECT cost_usd FROM llm.calls WHERE source = 'sync' AND model = 'echo-b'
		  ORDER BY created_at DESC LIMIT 1) AS price_ratio;
SELECT r ->> 'completion' AS completion, r -> 'response' ->> 'request_id' LIKE 'req_fake_%' AS request_id,
	   (r -> 'response' ->> 'call_id') IS NOT NULL AS call_id
  FROM llm_result((SELECT min(id) FROM llm.requests WHERE tag = 'nightly-b')) r;
SELECT tag, total, done, at_provider, provider_status FROM llm.batches WHERE tag = 'nightly-b';

-- the model's own ratio
SELECT llm_submit('three tenths', 'echo-b3', tag => 'ratio-b', options => '{"batch_api": true}') AS r3 \gset
SELECT llm_wait(:r3, '20 seconds') ->> 'state' AS state;
SELECT llm_complete('three tenths', 'echo-b3') AS sync_answer;
SELECT llm_flush() AS flushed;
SELECT round((SELECT cost_usd FROM llm.requests WHERE id = :r3)
			 / (SELECT cost_usd FROM llm.calls WHERE source = 'sync' AND model = 'echo-b3'
				ORDER BY created_at DESC LIMIT 1), 6) AS price_ratio;

-- a cached answer ends its request when it is collected: no line is sent
SELECT llm_complete('cached before', 'echo-b', NULL, '{"temperature": 0}') AS sync_answer;
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'batch_lines')::int AS lines_before \gset
SELECT llm_submit('cached before', 'echo-b', tag => 'cached-b',
				  options => '{"batch_api": true, "temperature": 0}') AS c1 \gset
SELECT r ->> 'state' AS state, r ->> 'completion' AS completion, r -> 'response' ->> 'cache_hit' AS cache_hit
  FROM llm_wait(:c1, '20 seconds') r;
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'batch_lines')::int - :lines_before AS lines_sent;
-- (the request ends before its batch does)
SELECT wait_until(format('SELECT state = %L FROM llm.provider_batches WHERE id = %s', 'done',
						 (SELECT provider_batch FROM llm.requests WHERE id = :c1))) AS batch_ended;
SELECT state, requests, provider_batch_id IS NULL AS never_sent FROM llm.provider_batches
 WHERE id = (SELECT provider_batch FROM llm.requests WHERE id = :c1);

-- a provider's default: its requests go in batches unless they say not to
SELECT llm_provider_create('fake-batch', current_setting('llmext_test.fake_url'),
						   api_key => 'sk-test-fake-0123456789', options => '{"batch_api": true}');
SELECT llm_model_create('echo-pb', 'fake-batch', 'echo');
SELECT llm_submit('by default', 'echo-pb', tag => 'default-b') AS d1 \gset
SELECT llm_submit('not this one', 'echo-pb', tag => 'default-b', options => '{"batch_api": false}') AS d2 \gset
SELECT id = :d1 AS first, batch_api FROM llm.requests WHERE tag = 'default-b' ORDER BY id;
SELECT llm_wait_batch('default-b', '20 seconds') ->> 'done' AS done;
SELECT id = :d1 AS first, provider_batch IS NOT NULL AS in_provider_batch, completion
  FROM llm.requests WHERE tag = 'default-b' ORDER BY id;

-- failures inside a batch: a 400 line ends its request; a 503 line is
-- retried (through a later batch); a model the fake does not answer with
-- JSON is an invalid answer
SELECT llm_model_create('flaky-batch', 'fake', 'flaky-1-batch');
SELECT count(llm_submit(p, m, tag => 'faults-b', options => '{"batch_api": true}')) AS submitted
  FROM (VALUES ('refused', 'fail-400'), ('retried', 'flaky-batch'), ('garbled', 'nonjson'),
			   ('fine', 'echo-b')) v(p, m);
SELECT llm_wait_batch('faults-b', '30 seconds') - 'tag' - 'cost_usd' - 'tokens' - 'started' - 'finished' - 'eta' - 'per_second' AS summary;
SELECT wait_until($$SELECT bool_and(state IN ('done', 'failed', 'cancelled')) FROM llm.provider_batches
					 WHERE model = 'flaky-batch'$$) AS batches_ended;
SELECT model, state, attempts, completion, split_part(error, ':', 1) AS error
  FROM llm.requests WHERE tag = 'faults-b' ORDER BY model;
SELECT count(*) AS provider_batches_for_flaky, array_agg(state) AS states
  FROM llm.provider_batches WHERE model = 'flaky-batch';

-- a provider that echoes its key in an answer or an error: redacted, as
-- for requests sent one by one (the lines carry no key; the batch does)
SELECT llm_model_create('b-' || m, 'fake', m) FROM unnest(ARRAY['leak-ids', 'leak-150']) m;
SELECT count(llm_submit('tell', 'b-' || m, tag => 'leaky-b', options => '{"batch_api": true}')) AS submitted
  FROM unnest(ARRAY['leak-ids', 'leak-150']) m;
SELECT llm_wait_batch('leaky-b', '20 seconds') ->> 'total' AS total;
SELECT model, state, attempts, completion, response ->> 'request_id' AS request_id,
	   replace(error, repeat('x', 150), '<150 x>') AS error,
	   position('sk-test' IN coalesce(completion, '') || coalesce(error, '') || coalesce(response::text, '')) AS key_at
  FROM llm.requests WHERE tag = 'leaky-b' ORDER BY model;

-- the provider fails a whole batch: its requests end in error, with the reason
SELECT llm_model_create('doomed', 'fake', 'batch-fail');
SELECT llm_submit('never', 'doomed', tag => 'failed-b', options => '{"batch_api": true}') AS f1 \gset
SELECT r ->> 'state' AS state, r ->> 'error' AS error FROM llm_wait(:f1, '20 seconds') r;
SELECT state, provider_status, error FROM llm.provider_batches
 WHERE id = (SELECT provider_batch FROM llm.requests WHERE id = :f1);

-- a provider that serves no files: the upload is refused (404, which
-- trying again cannot mend), the batch fails and its requests end in error
SELECT llm_provider_create('nofiles', replace(current_setting('llmext_test.fake_url'), '/v1', '/nosuch/v1'),
						   api_key => 'sk-test-fake-0123456789');
SELECT llm_model_create('echo-nofiles', 'nofiles', 'echo');
SELECT llm_submit('lost', 'echo-nofiles', tag => 'nofiles-b', options => '{"batch_api": true}') AS nf \gset
SELECT r ->> 'state' AS state, r ->> 'error' AS error FROM llm_wait(:nf, '20 seconds') r;
SELECT state, provider_batch_id IS NULL AS never_created, error
  FROM llm.provider_batches WHERE id = (SELECT provider_batch FROM llm.requests WHERE id = :nf);

-- a small input file (llmext.batch_api_max_bytes): the requests that do not
-- fit go in the next batch (their attempt not counted); one whose line alone
-- does not fit ends in error
ALTER SYSTEM SET llmext.batch_api_max_bytes = 1024;
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
SELECT count(llm_submit('part ' || g, 'echo-b', tag => 'small-b', options => '{"batch_api": true}'))
	AS submitted
  FROM generate_series(1, 12) g;
SELECT llm_submit(repeat('x', 2000), 'echo-b', tag => 'small-b', options => '{"batch_api": true}') AS big \gset
SELECT llm_wait_batch('small-b', '30 seconds') - 'tag' - 'cost_usd' - 'tokens' - 'started' - 'finished' - 'eta' - 'per_second' AS summary;
SELECT count(DISTINCT r.provider_batch) > 1 AS several_batches, max(b.input_bytes) <= 1024 AS each_file_fits,
	   min(r.attempts) AS min_attempts, max(r.attempts) AS max_attempts
  FROM llm.requests r JOIN llm.provider_batches b ON b.id = r.provider_batch
 WHERE r.tag = 'small-b' AND r.state = 'done';
-- (the line's size depends on the digits of the request's id)
SELECT state, regexp_replace(error, 'line of \d+ bytes', 'line of <n> bytes') AS error
  FROM llm.requests WHERE id = :big;
ALTER SYSTEM RESET llmext.batch_api_max_bytes;
SELECT pg_reload_conf();

-- a batch that expires after one answer: the others are queued again and
-- go in the next batch, until each is answered (attempts 1, 2, 3)
SELECT llm_model_create('expiring', 'fake', 'batch-expire-1');
SELECT count(llm_submit('expiring ' || g, 'expiring', tag => 'expire-b', options => '{"batch_api": true}'))
	AS submitted
  FROM generate_series(1, 3) g;
SELECT llm_wait_batch('expire-b', '30 seconds') ->> 'done' AS done;
SELECT messages -> 0 ->> 'content' AS prompt, state, attempts, completion
  FROM llm.requests WHERE tag = 'expire-b' ORDER BY id;
SELECT count(*) AS provider_batches, array_agg(DISTINCT provider_status) AS statuses
  FROM llm.provider_batches
 WHERE id IN (SELECT b.id FROM llm.provider_batches b WHERE b.model = 'expiring');

-- cancel: once every request of a batch is cancelled, so is the batch at the provider
SELECT llm_model_create('stuck', 'fake', 'batch-stuck');
SELECT count(llm_submit('wait ' || g, 'stuck', tag => 'stuck-b', options => '{"batch_api": true}'))
	AS submitted
  FROM generate_series(1, 2) g;
SELECT wait_until($$SELECT EXISTS (SELECT FROM llm.provider_batches
									 WHERE model = 'stuck' AND provider_status = 'in_progress')$$)
	AS at_the_provider;
SELECT tag, total, running, at_provider, provider_status FROM llm.batches WHERE tag = 'stuck-b';
-- neither the model nor its provider can be dropped while the batch is unfinished
SELECT regexp_replace(error_of($$SELECT llm_model_drop('stuck')$$), '\): \d+\.', '): <id>.') AS error;
SELECT regexp_replace(error_of($$SELECT llm_provider_drop('fake', cascade => true)$$), '\): \d+\.', '): <id>.') AS error;
SELECT llm_cancel_batch('stuck-b') AS cancelled;
SELECT wait_until($$SELECT EXISTS (SELECT FROM llm.provider_batches
									 WHERE model = 'stuck' AND state = 'cancelled')$$)
	AS cancelled_at_the_provider;
SELECT state, provider_status FROM llm.provider_batches WHERE model = 'stuck';
SELECT state, count(*) FROM llm.requests WHERE tag = 'stuck-b' GROUP BY state;
SELECT llm_model_drop('stuck') AS dropped_once_the_batch_ended;

-- an evaluation run whose variant asks for batch mode: its answers come
-- through a provider batch at the model's ratio, and are scored as usual
SELECT llm_eval_set_create('echoes-b', 'echo of the input');
SELECT llm_eval_cases_add('echoes-b', $$
	SELECT * FROM (VALUES ('e1', 'one', '"echo: one"'::jsonb), ('e2', 'two', '"echo: two"'),
						  ('e3', 'three', '"echo: four"')) AS t(key, input, expected)$$) AS added;
SELECT llm_eval_run('echoes-b', '[{"name": "batch", "model": "echo-b", "options": {"batch_api": true}},
								  {"name": "now", "model": "echo-b"}]') AS erun \gset
SELECT llm_eval_wait(:erun, '30 seconds') ->> 'state' AS state;
SELECT r.options ->> 'batch_api' AS asked, r.batch_api, count(*) AS requests,
	   count(r.provider_batch) AS in_provider_batches
  FROM llm.requests r WHERE r.tag = 'eval-' || :erun
 GROUP BY 1, 2 ORDER BY 2;
SELECT variant, case_key, output, score, passed
  FROM llm.eval_results WHERE run = :erun ORDER BY variant, case_key;
SELECT variant, mean_score, cost_per_case = min(cost_per_case) OVER () AS cheapest
  FROM llm.eval_report WHERE run = :erun ORDER BY variant;

-- cancelling an evaluation run's requests ends the run at once (no
-- llm_eval_wait needed): here a variant whose batch never ends
SELECT llm_model_create('stuck-eval', 'fake', 'batch-stuck');
SELECT llm_eval_run('echoes-b', '[{"name": "stuck", "model": "stuck-eval", "options": {"batch_api": true}}]')
	AS srun \gset
SELECT llm_cancel_batch('eval-' || :srun) AS cancelled;
SELECT state, finished_at IS NOT NULL AS finished FROM llm.eval_runs WHERE id = :srun;
SELECT count(*) AS results_left FROM llm.eval_results WHERE run = :srun;

-- rows: a user sees the provider batches that hold their own requests only
CREATE ROLE batch_user_a LOGIN;
CREATE ROLE batch_user_b LOGIN;
GRANT llm_user TO batch_user_a, batch_user_b;
SET ROLE batch_user_a;
SELECT llm_submit('mine', 'echo-b', tag => 'user-a', options => '{"batch_api": true}') AS ua \gset
SELECT llm_wait(:ua, '20 seconds') ->> 'completion' AS completion;
SELECT count(*) AS provider_batches_seen FROM llm.provider_batches;
RESET ROLE;
SET ROLE batch_user_b;
SELECT count(*) AS provider_batches_seen FROM llm.provider_batches;
SELECT count(*) AS batch_rows_seen FROM llm.batches WHERE tag = 'user-a';
RESET ROLE;
SELECT count(*) > 1 AS admin_sees_all FROM llm.provider_batches;
DROP OWNED BY batch_user_a, batch_user_b;
DROP ROLE batch_user_a, batch_user_b;

ALTER SYSTEM RESET llmext.batch_api_wait;
ALTER SYSTEM RESET llmext.batch_api_poll_interval;
SELECT pg_reload_conf();
DROP FUNCTION wait_until(text, interval);
