-- The ledger: every provider call leaves a row, whatever happens to the
-- caller's transaction.  llm_flush() waits for the worker to write what
-- has been queued, so the rows can be read at once.
SELECT llm_flush() AS flushed;
SELECT count(*) AS rows_before FROM llm.calls \gset

SELECT llm_complete('ledger one', 'echo');
SELECT llm_flush() AS flushed;
SELECT role, database, source, model, remote_model, provider, cache_hit, http_status, outcome,
	   error, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost_usd,
	   cost_saved_usd, prompt_name, prompt_version,
	   latency_ms >= 0 AS has_latency, request_id LIKE 'req_fake_%' AS has_request_id,
	   length(fingerprint) AS fingerprint_length, entry_id IS NOT NULL AS has_entry_id
  FROM llm.calls ORDER BY id DESC LIMIT 1;

-- a failed call is recorded with its error
SELECT error_of($$SELECT llm_complete('ledger fails', 'fail-500')$$) IS NOT NULL AS failed;
SELECT llm_complete('ledger null', 'fail-429', NULL, '{"on_error": "null"}') IS NULL AS null_answer;
SELECT llm_flush() AS flushed;
SELECT model, http_status, outcome, split_part(error, ':', 1) AS error, cost_usd
  FROM llm.calls ORDER BY id DESC LIMIT 2;

-- usage errors never reach a provider and leave no row
SELECT error_of($$SELECT llm_complete('x', 'nosuch')$$) IS NOT NULL AS failed;

-- money spent in a transaction that rolls back is still on the ledger
BEGIN;
SELECT llm_complete('ledger rolled back', 'echo');
ROLLBACK;
BEGIN;
SELECT llm_complete('ledger then an error', 'echo');
SELECT 1 / 0;
ROLLBACK;
SELECT llm_flush() AS flushed;
SELECT count(*) - :rows_before AS rows_added FROM llm.calls;

-- cost at the model's prices, cached input and reasoning tokens included
SELECT llm_chat('[{"role": "user", "content": "four words right here"}]', 'priced-details') IS NOT NULL AS called;
SELECT llm_flush() AS flushed;
SELECT input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost_usd,
	   cost_usd = (4 * 0.15 + 4 * 0.075 + 12 * 0.60) / 1e6 AS as_expected
  FROM llm.calls WHERE model = 'priced-details' ORDER BY id DESC LIMIT 1;

-- row level security: a user sees their own rows; llm_admin sees all
SET client_min_messages = warning;
CREATE ROLE regress_ledger_alice;
CREATE ROLE regress_ledger_bob;
CREATE ROLE regress_ledger_admin;
GRANT llm_user TO regress_ledger_alice, regress_ledger_bob;
GRANT llm_admin TO regress_ledger_admin;
RESET client_min_messages;
SET ROLE regress_ledger_alice;
SELECT llm_complete('alice pays', 'echo');
SELECT llm_flush() AS flushed;
SELECT role, model FROM llm.calls;
RESET ROLE;
SET ROLE regress_ledger_bob;
SELECT count(*) AS rows_bob_sees FROM llm.calls;
SELECT error_of($$DELETE FROM llm.calls$$);
SELECT error_of($$UPDATE llm.calls SET cost_usd = 0$$);
SELECT error_of($$INSERT INTO llm.calls (entry_id, created_at, role, database, model, outcome) VALUES ('x', now(), 'regress_ledger_alice', 'x', 'x', 'ok')$$);
SELECT error_of($$SELECT llm._persist('[]')$$);
RESET ROLE;
SET ROLE regress_ledger_admin;
SELECT count(*) > 1 AS admin_sees_everyone,
	   count(*) FILTER (WHERE role = 'regress_ledger_alice') AS alice_rows
  FROM llm.calls;
RESET ROLE;

-- writing the same entry twice records it once
SELECT count(*) AS rows_before_replay FROM llm.calls \gset
SELECT llm._persist(jsonb_build_array(to_jsonb(c) || '{"kind": "call"}'))
  FROM llm.calls c ORDER BY id DESC LIMIT 1;
SELECT count(*) - :rows_before_replay AS rows_added_by_replay FROM llm.calls;

DROP ROLE regress_ledger_alice, regress_ledger_bob, regress_ledger_admin;
