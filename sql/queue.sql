-- The asynchronous queue: requests run by the background worker.
SELECT llm_complete('reset', 'stats-reset') IS NOT NULL AS counters_reset;

-- submit, wait, result
SELECT llm_submit('queued hello', 'echo', tag => 'q1') AS id \gset
SELECT r ->> 'state' AS state, r ->> 'completion' AS completion, r ->> 'attempts' AS attempts,
	   r -> 'response' ->> 'model' AS model, (r ->> 'cost_usd')::numeric > 0 AS costed
  FROM llm_wait(:id, '10 seconds') r;
SELECT state, tag, submitted_by = current_user AS mine, model, messages FROM llm.requests WHERE id = :id;
SELECT llm_result(-1) IS NULL AS unknown_id_gives_null;

-- a stored prompt, rendered at submit time
SELECT llm_submit_prompt('other', '{"name": "Queue"}', model => 'echo', tag => 'q1') AS pid \gset
SELECT (llm_wait(:pid, '10 seconds')) ->> 'completion' AS completion;
SELECT prompt_name, prompt_version FROM llm.requests WHERE id = :pid;

-- a batch: many rows in one statement, then its progress
SELECT count(llm_submit('item ' || g, 'echo', tag => 'nightly')) AS submitted FROM generate_series(1, 50) g;
SELECT llm_wait_batch('nightly', '30 seconds') - 'tag' AS summary;
SELECT tag, total, queued, running, done, error, cancelled, tokens > 0 AS has_tokens,
	   cost_usd > 0 AS has_cost, finished IS NOT NULL AS finished
  FROM llm.batches WHERE tag = 'nightly';
SELECT llm_flush() AS flushed;
SELECT count(*) AS ledger_rows FROM llm.calls WHERE source = 'queue' AND model = 'echo';

-- failures: a 400 at once; a flaky provider retried (every attempt on the ledger)
SELECT llm_submit('bad', 'fail-400', tag => 'q2') AS bad \gset
SELECT llm_model_create('flaky-queue', 'fake', 'flaky-2-queue');
SELECT llm_submit('retry me', 'flaky-queue', tag => 'q2') AS flaky \gset
SELECT r ->> 'state' AS state, r ->> 'attempts' AS attempts, split_part(r ->> 'error', ':', 1) AS error
  FROM llm_wait(:bad, '10 seconds') r;
SELECT r ->> 'state' AS state, r ->> 'attempts' AS attempts, r ->> 'completion' AS completion
  FROM llm_wait(:flaky, '20 seconds') r;
SELECT fake_requests('fail-400') AS requests_for_400, fake_requests('flaky-2-queue') AS requests_for_flaky;
-- usage errors end the request at once
SELECT llm_submit('x', 'nosuch', tag => 'q2') AS nosuch \gset
SELECT r ->> 'state' AS state, r ->> 'error' AS error FROM llm_wait(:nosuch, '10 seconds') r;

-- a result that cannot be stored ends its request in error; the others are stored
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.completion = 'echo: poison' THEN
		RAISE EXCEPTION 'poison refused';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE UPDATE ON llm.requests FOR EACH ROW
	EXECUTE FUNCTION refuse_poison();
SELECT count(llm_submit(p, 'echo', tag => 'poison')) AS submitted
  FROM unnest(ARRAY['fine', 'poison', 'also fine']) p;
SELECT llm_wait_batch('poison', '10 seconds') - 'tag' AS summary;
SELECT messages -> 0 ->> 'content' AS prompt, state, error FROM llm.requests
 WHERE tag = 'poison' ORDER BY id;
DROP TRIGGER refuse_poison ON llm.requests;
DROP FUNCTION refuse_poison();

-- priority: with one request in flight at a time, the higher goes first
ALTER SYSTEM SET llmext.worker_concurrency = 1;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SELECT llm_submit('slow', 'slow-200', tag => 'prio') AS blocker \gset
SET llmext.default_model = 'echo';
SELECT llm_submit('low', tag => 'prio', priority => 0) AS low \gset
SELECT llm_submit('high', tag => 'prio', priority => 10) AS high \gset
RESET llmext.default_model;
SELECT llm_wait_batch('prio', '10 seconds') ->> 'done' AS done;
-- (the fake provider numbers requests as they arrive; the two may end in
-- one write, with one finished_at)
SELECT (SELECT substr(response ->> 'request_id', 10)::int FROM llm.requests WHERE id = :high)
	   < (SELECT substr(response ->> 'request_id', 10)::int FROM llm.requests WHERE id = :low)
	   AS high_before_low;
ALTER SYSTEM RESET llmext.worker_concurrency;
SELECT pg_reload_conf();

-- cancel: queued or in flight; the worker stops a cancelled request's transfer
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'aborted')::int AS aborted_before \gset
SELECT llm_submit('never', 'slow-30000', tag => 'gone') AS gone1 \gset
SELECT llm_submit('never', 'slow-30000', tag => 'gone') AS gone2 \gset
SELECT pg_sleep(0.5);
SELECT llm_cancel(:gone1) AS cancelled_one;
SELECT llm_cancel_batch('gone') AS cancelled_rest;
SELECT llm_cancel(:gone1) AS cancelled_again;
SELECT state FROM llm.requests WHERE tag = 'gone' ORDER BY id;
SELECT llm_wait_batch('gone', '1 second') ->> 'cancelled' AS cancelled;
DO $$ BEGIN
	FOR i IN 1..100 LOOP
		EXIT WHEN (llm_complete('stats', 'stats')::jsonb ->> 'in_flight')::int = 0;
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'aborted')::int - :aborted_before AS transfers_stopped;
SELECT llm_flush() AS flushed;
SELECT count(*) AS cancelled_in_ledger FROM llm.calls
 WHERE source = 'queue' AND model = 'slow-30000' AND error LIKE 'cancelled%';

-- bad input
SELECT llm_submit(NULL) IS NULL AS null_prompt;
SELECT error_of($$SELECT llm_submit('')$$);
SELECT error_of($$SELECT llm_submit('x', options => '[1]')$$);
SELECT error_of($$SELECT llm_submit_prompt('nosuch')$$);
SELECT error_of($$SELECT llm_submit('x', callback => 'nosuch_function(bigint, jsonb)')$$);

-- callbacks run with the submitter's rights, and write results back
CREATE TABLE queue_answers (request_id bigint, answer text);
CREATE FUNCTION store_answer(id bigint, result jsonb) RETURNS void
LANGUAGE sql AS $$ INSERT INTO queue_answers VALUES (id, result ->> 'content') $$;
SELECT llm_submit('call me back', 'echo', tag => 'cb', callback => 'store_answer(bigint, jsonb)') AS cb \gset
SELECT llm_wait_batch('cb', '10 seconds') ->> 'done' AS done;
-- (callbacks run just after the results are written)
DO $$ BEGIN
	FOR i IN 1..200 LOOP
		EXIT WHEN EXISTS (SELECT FROM queue_answers);
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT request_id = :cb AS same_request, answer FROM queue_answers;

SET client_min_messages = warning;
CREATE ROLE regress_queue_alice;
CREATE ROLE regress_queue_bob;
GRANT llm_user TO regress_queue_alice, regress_queue_bob;
GRANT EXECUTE ON FUNCTION store_answer(bigint, jsonb) TO regress_queue_alice;
RESET client_min_messages;
-- alice may call the callback, but has no right to write to the table
SET ROLE regress_queue_alice;
SELECT llm_submit('no rights', 'echo', tag => 'cb2', callback => 'store_answer(bigint, jsonb)') AS cb2 \gset
RESET ROLE;
SELECT llm_wait_batch('cb2', '10 seconds') ->> 'done' AS done;
DO $$ BEGIN
	FOR i IN 1..200 LOOP
		EXIT WHEN EXISTS (SELECT FROM llm.requests WHERE tag = 'cb2' AND callback_error IS NOT NULL);
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT state, callback_error FROM llm.requests WHERE id = :cb2;
SELECT count(*) AS rows_written_by_alice FROM queue_answers WHERE request_id = :cb2;

-- what a callback queues is queued for the submitter, never for the worker's superuser
CREATE FUNCTION chain(id bigint, result jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM llm_submit('chained', 'echo', tag => 'chain');
END $$;
GRANT EXECUTE ON FUNCTION chain(bigint, jsonb) TO regress_queue_alice;
SET ROLE regress_queue_alice;
SELECT llm_submit('first', 'echo', tag => 'chain-start', callback => 'chain(bigint, jsonb)') IS NOT NULL AS submitted;
RESET ROLE;
DO $$ BEGIN
	FOR i IN 1..200 LOOP
		EXIT WHEN EXISTS (SELECT FROM llm.requests WHERE tag = 'chain');
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT submitted_by FROM llm.requests WHERE tag = 'chain';

-- a callback dropped before its request finishes: an error on the row, nothing worse
CREATE FUNCTION short_lived(id bigint, result jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT llm_submit('slowly', 'slow-200', tag => 'dropped-cb', callback => 'short_lived(bigint, jsonb)') AS dcb \gset
DROP FUNCTION short_lived(bigint, jsonb);
SELECT llm_wait_batch('dropped-cb', '10 seconds') ->> 'done' AS done;
DO $$ BEGIN
	FOR i IN 1..200 LOOP
		EXIT WHEN EXISTS (SELECT FROM llm.requests WHERE tag = 'dropped-cb' AND callback_error IS NOT NULL);
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT state, callback_error FROM llm.requests WHERE id = :dcb;

-- row level security: users see and cancel only their own requests
SET ROLE regress_queue_bob;
SELECT count(*) AS rows_bob_sees FROM llm.requests;
SELECT llm_result(:cb2) IS NULL AS bob_cannot_read_alices;
SELECT llm_cancel(:cb2) AS bob_cannot_cancel_alices;
SELECT error_of($$UPDATE llm.requests SET state = 'done'$$);
SELECT error_of($$SELECT * FROM llm._claim(10)$$);
RESET ROLE;
SET ROLE regress_queue_alice;
SELECT count(*) AS rows_alice_sees FROM llm.requests WHERE tag <> 'chain';
RESET ROLE;

-- a provider's max_concurrency holds for the worker too (shared with every backend)
SELECT llm_model_create('narrow-queue', 'fake-narrow', 'slow-150');
SELECT llm_complete('reset', 'stats-reset') IS NOT NULL AS counters_reset;
SELECT count(llm_submit('n' || g, 'narrow-queue', tag => 'narrow')) AS submitted
  FROM generate_series(1, 6) g;
SELECT llm_wait_batch('narrow', '30 seconds') ->> 'done' AS done;
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'max_in_flight')::int AS max_in_flight;
SELECT max(attempts) AS attempts FROM llm.requests WHERE tag = 'narrow';

-- A worker that died with requests in flight: the attempt counts; a request
-- with attempts left runs again, one whose attempts are used up (3 by
-- default) ends in error instead of running a fourth time.
SELECT count(*) AS unfinished FROM llm.requests WHERE state IN ('queued', 'running');
INSERT INTO llm.requests (submitted_by, login_role, state, attempts, model, messages, tag)
VALUES (current_user, session_user, 'running', 3, 'echo', '[{"role": "user", "content": "lost one"}]', 'recovered'),
	   (current_user, session_user, 'running', 1, 'echo', '[{"role": "user", "content": "lost two"}]', 'recovered');
SELECT llm._recover() AS recovered;
SELECT llm_wait_batch('recovered', '30 seconds') - 'tag' AS summary;
SELECT attempts, state, completion, error FROM llm.requests WHERE tag = 'recovered' ORDER BY id;

DROP FUNCTION store_answer(bigint, jsonb);
DROP FUNCTION chain(bigint, jsonb);
DROP TABLE queue_answers;
DROP ROLE regress_queue_alice, regress_queue_bob;
