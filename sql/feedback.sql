-- Feedback from production: every call's call_id, what calls were asked and
-- answered (llm.call_io), llm_feedback and its refusals, row level
-- security, cases made from feedback, and purging.
SET client_min_messages = warning;
CREATE ROLE regress_fb_alice LOGIN;
CREATE ROLE regress_fb_bob LOGIN;
GRANT llm_user TO regress_fb_alice, regress_fb_bob;
RESET client_min_messages;

SET SESSION AUTHORIZATION regress_fb_alice;
-- a call's result carries its call_id: the entry_id of its ledger row
SELECT llm_chat('[{"role": "user", "content": "where is my parcel?"}]', 'echo') AS r \gset
SELECT (:'r'::jsonb ->> 'call_id') ~ '^[0-9a-f]+\.[0-9a-f]+\.[0-9a-f]+$' AS has_call_id;
SELECT :'r'::jsonb ->> 'call_id' AS chat_call \gset
-- a stored prompt's call keeps its variables; llm_last_call_id names it
SELECT llm_prompt_create('fb-triage', 'Ticket: {{body}}', system => 'Answer bug or feature.');
SELECT llm_complete_prompt('fb-triage', '{"body": "the app crashes"}', model => 'echo') AS answer;
SELECT llm_last_call_id() AS prompt_call \gset
SELECT :'prompt_call' <> :'chat_call' AS a_new_id;
SELECT llm_flush() AS flushed;
SELECT c.prompt_name, io.vars, io.input, io.output, io.too_large
  FROM llm.calls c JOIN llm.call_io io USING (entry_id)
 WHERE c.entry_id IN (:'chat_call', :'prompt_call') ORDER BY c.id;

-- feedback on one's own calls
SELECT llm_feedback(:'prompt_call', score => 0, correction => 'bug', note => 'it is a crash') > 0 AS recorded;
SELECT llm_feedback(:'chat_call', score => 1) > 0 AS recorded;
SELECT call_id = :'prompt_call' AS on_call, score, correction, note, given_by, login_role
  FROM llm.feedback ORDER BY id;
-- and its refusals
SELECT error_of($$SELECT llm_feedback(NULL, 1)$$);
SELECT error_of(format('SELECT llm_feedback(%L)', :'chat_call'));
SELECT error_of(format('SELECT llm_feedback(%L, %L::numeric)', :'chat_call', 'NaN'));
SELECT error_of($$SELECT llm_feedback('no.such.call', 1)$$);
SELECT error_of($$SELECT llm_feedback('', 1)$$);
SELECT error_of(format('SELECT llm_feedback(%L, note => repeat(%L, 1048577))', :'chat_call', 'x'));
RESET SESSION AUTHORIZATION;

-- bob may neither see alice's calls' inputs and feedback nor give feedback on them
-- (call ids vary: the message shows <call>)
CREATE FUNCTION masked_error_of(sql text) RETURNS text LANGUAGE sql
AS $$ SELECT regexp_replace(error_of(sql), 'call "[^"]*"', 'call <call>') $$;
GRANT EXECUTE ON FUNCTION masked_error_of(text) TO PUBLIC;
SET SESSION AUTHORIZATION regress_fb_bob;
SELECT (SELECT count(*) FROM llm.feedback) AS feedback, (SELECT count(*) FROM llm.call_io) AS call_io;
SELECT masked_error_of(format('SELECT llm_feedback(%L, 1)', :'prompt_call'));
-- nor after SET ROLE to alice from his own login
RESET SESSION AUTHORIZATION;
GRANT regress_fb_alice TO regress_fb_bob;
SET SESSION AUTHORIZATION regress_fb_bob;
SET ROLE regress_fb_alice;
SELECT (SELECT count(*) FROM llm.feedback) AS feedback, (SELECT count(*) FROM llm.call_io) AS call_io;
SELECT masked_error_of(format('SELECT llm_feedback(%L, 1)', :'prompt_call'));
RESET ROLE;
RESET SESSION AUTHORIZATION;
REVOKE regress_fb_alice FROM regress_fb_bob;

-- queued calls: the stored result carries the call_id, the prompt's variables are kept
SET SESSION AUTHORIZATION regress_fb_alice;
SELECT llm_submit_prompt('fb-triage', '{"body": "please add dark mode"}', model => 'echo',
						 tag => 'fb-queue') AS qid \gset
SELECT llm_wait_batch('fb-queue', '30 seconds') ->> 'done' AS done;
SELECT response ->> 'call_id' AS queued_call FROM llm.requests WHERE id = :qid \gset
SELECT llm_flush() AS flushed;
SELECT io.vars, io.input, io.output FROM llm.call_io io WHERE io.entry_id = :'queued_call';
SELECT llm_feedback(:'queued_call', score => 0.9) > 0 AS recorded;
-- a call scored low without a correction: no expected answer, no case
SELECT llm_complete('a poor answer', 'echo') AS answer;
SELECT llm_feedback(llm_last_call_id(), score => 0.2, note => 'vague') > 0 AS recorded;

-- cases from feedback: expected = the correction, else the answer when the
-- score is at least min_score; calls with neither are skipped
SELECT llm_eval_set_create('fb-cases');
SELECT llm_eval_cases_from_feedback('fb-cases', now() - interval '1 hour', min_score => 0.8) AS added;
SELECT case_key = 'call:' || :'prompt_call' AS from_prompt_call, vars, input, expected, tags, source ~ '^feedback:' AS sourced
  FROM llm.eval_cases WHERE set_name = 'fb-cases' ORDER BY input;
-- the chat call (score 1, no prompt) became a case too, with its input
SELECT count(*) FILTER (WHERE vars IS NULL AND input = 'where is my parcel?') AS chat_case FROM llm.eval_cases WHERE set_name = 'fb-cases';
-- again: nothing new
SELECT llm_eval_cases_from_feedback('fb-cases', now() - interval '1 hour', min_score => 0.8) AS added_again;
SELECT error_of($$SELECT llm_eval_cases_from_feedback('fb-cases', NULL)$$);
SELECT error_of($$SELECT llm_eval_cases_from_feedback('nosuch', now())$$);
-- only the caller's own set
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_fb_bob;
SELECT error_of($$SELECT llm_eval_cases_from_feedback('fb-cases', now() - interval '1 hour')$$);
-- and only the caller's own calls: bob's set gets none of alice's
SELECT llm_eval_set_create('fb-bob');
SELECT llm_eval_cases_from_feedback('fb-bob', now() - interval '1 hour', 0) AS bob_added;
SELECT error_of($$SELECT llm_call_io_purge()$$);
RESET SESSION AUTHORIZATION;

-- an evaluation's requests keep nothing in llm.call_io
SET SESSION AUTHORIZATION regress_fb_alice;
-- the corrected calls as a training set version, with the query of docs/cookbook.md
-- (fine-tuning needs 10 examples at least: ten more corrected calls)
DO $$
BEGIN
	FOR i IN 1 .. 10 LOOP
		PERFORM llm_complete_prompt('fb-triage', jsonb_build_object('body', 'ticket ' || i), model => 'echo');
		PERFORM llm_feedback(llm_last_call_id(), correction => 'label ' || i);
	END LOOP;
END
$$;
SELECT llm_training_set_create('fb-train', $$
	SELECT f.call_id AS id, io.vars, f.correction AS output
	  FROM llm.feedback f JOIN llm.call_io io ON io.entry_id = f.call_id
	 WHERE f.correction IS NOT NULL AND io.prompt_name = 'fb-triage'$$, prompt => 'fb-triage') AS version;
SELECT examples, held_out FROM llm.training_sets WHERE name = 'fb-train';
SELECT llm_eval_run('fb-cases', '[{"name": "e", "model": "echo"}]') AS erun \gset
SELECT llm_eval_wait(:erun, '30 seconds') ->> 'state' AS state;
SELECT llm_flush() AS flushed;
SELECT count(*) AS eval_calls, count(io.entry_id) AS kept
  FROM llm.eval_results res LEFT JOIN llm.call_io io ON io.entry_id = res.call_entry_id
 WHERE res.run = :erun;
RESET SESSION AUTHORIZATION;

-- with llmext.keep_call_io off, nothing is kept (a superuser's setting)
SET SESSION AUTHORIZATION regress_fb_alice;
SELECT error_of($$SET llmext.keep_call_io = off$$);
RESET SESSION AUTHORIZATION;
SET llmext.keep_call_io = off;
SELECT llm_complete('not kept', 'echo') AS answer;
SELECT llm_last_call_id() AS unkept \gset
SELECT llm_flush() AS flushed;
SELECT (SELECT count(*) FROM llm.calls WHERE entry_id = :'unkept') AS in_ledger,
	   (SELECT count(*) FROM llm.call_io WHERE entry_id = :'unkept') AS kept;
RESET llmext.keep_call_io;

-- the worker's retention (llmext.call_io_days): rows older than the days go
SELECT llm._call_io_expire(1) AS expired_none;
UPDATE llm.call_io SET created_at = now() - interval '2 days' WHERE entry_id = :'chat_call';
SELECT llm._call_io_expire(1) AS expired_one;
SELECT count(*) AS chat_call_io FROM llm.call_io WHERE entry_id = :'chat_call';
-- purging: llm_admin's; feedback stays, the cases made already stay
SELECT llm_call_io_purge(now() + interval '1 minute') > 0 AS purged;
SELECT (SELECT count(*) FROM llm.call_io) AS call_io, (SELECT count(*) FROM llm.feedback) AS feedback,
	   (SELECT count(*) FROM llm.eval_cases WHERE set_name = 'fb-cases') AS cases;
SELECT error_of($$SELECT llm_call_io_purge(NULL)$$);

SET client_min_messages = warning;
DELETE FROM llm.eval_runs;
DELETE FROM llm.eval_sets;
DELETE FROM llm.feedback;
DELETE FROM llm.training_sets WHERE name = 'fb-train';
DROP FUNCTION masked_error_of(text);
DROP OWNED BY regress_fb_alice, regress_fb_bob;
DROP ROLE regress_fb_alice, regress_fb_bob;
RESET client_min_messages;
