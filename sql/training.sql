-- Training sets (issue: fine-tuning from SQL): snapshots of chat examples
-- rendered from a query, run with the caller's rights.  alice and bob are
-- llm_users; only alice may read the table of tickets.  The roles stay for
-- the finetune suite, which drops them.
SET client_min_messages = warning;
CREATE ROLE regress_ft_alice LOGIN;
CREATE ROLE regress_ft_bob LOGIN;
GRANT llm_user TO regress_ft_alice, regress_ft_bob;
CREATE TABLE ft_tickets (id int PRIMARY KEY, body text, answer text, w int);
INSERT INTO ft_tickets
SELECT i, 'ticket number ' || i, 'answer ' || i, CASE WHEN i % 5 = 0 THEN 0 ELSE 1 END
  FROM generate_series(1, 30) i;
GRANT SELECT ON ft_tickets TO regress_ft_alice;
GRANT EXECUTE ON FUNCTION error_of(text) TO PUBLIC;
RESET client_min_messages;
SET SESSION AUTHORIZATION regress_ft_alice;
SELECT llm_prompt_create('ft-support', 'Answer the ticket: {{body}}', system => 'You are support.') AS prompt_v1;
RESET SESSION AUTHORIZATION;

-- 1. a set from plain inputs, and the exact JSONL
SET SESSION AUTHORIZATION regress_ft_alice;
SELECT llm_training_set_create('ft-plain',
	'SELECT id::text AS id, body AS input, answer AS output FROM ft_tickets ORDER BY id') AS version;
SELECT name, version, prompt_name, examples, held_out, duplicates, estimated_tokens, bytes,
	   created_by, login_role
  FROM llm.training_sets WHERE name = 'ft-plain';
SELECT * FROM llm_training_jsonl('ft-plain') LIMIT 3;
-- the digest is SHA-256 of exactly those lines, each followed by a newline
SELECT s.sha256 = encode(sha256(convert_to(string_agg(l || E'\n', ''), 'UTF8')), 'hex') AS sha_matches,
	   s.bytes = sum(octet_length(l) + 1) AS bytes_match
  FROM llm.training_sets s, llm_training_jsonl('ft-plain') l
 WHERE s.name = 'ft-plain' GROUP BY s.sha256, s.bytes;

-- 2. through a stored prompt, with weights and a held-out share; version 2
-- of the same name
SELECT llm_training_set_create('ft-plain',
	'SELECT id::text AS id, jsonb_build_object(''body'', body) AS vars, answer AS output, w AS weight
	   FROM ft_tickets ORDER BY id',
	prompt => 'ft-support', holdout => 0.3, note => 'rendered') AS version;
SELECT version, prompt_name, prompt_version, prompt_label, holdout, examples, held_out,
	   examples + held_out AS total, note
  FROM llm.training_sets WHERE name = 'ft-plain' ORDER BY version;
SELECT * FROM llm_training_jsonl('ft-plain', 2) LIMIT 2;
SELECT count(*) AS lines_v2 FROM llm_training_jsonl('ft-plain');
-- held out by the hash of the key: the same keys at the same share, always
SELECT array_agg(example_key ORDER BY ord) AS held_out_keys FROM llm.training_examples
 WHERE set_name = 'ft-plain' AND set_version = 2 AND held_out;
-- duplicates are kept, with a warning and a count
SELECT llm_training_set_create('ft-dups',
	'SELECT body AS input, answer AS output FROM ft_tickets UNION ALL
	 SELECT body, answer FROM ft_tickets WHERE id <= 4') AS version;
SELECT examples, duplicates FROM llm.training_sets WHERE name = 'ft-dups';
-- the estimate (the fake models have no training price: no cost)
SELECT llm_training_estimate('ft-plain', 1, 'echo');
RESET SESSION AUTHORIZATION;
SELECT llm_model_create('ft-base', 'fake', 'echo', input_price => 0.3, output_price => 1.2,
						training_price => 3, tuned_input_price => 0.6, tuned_output_price => 2.4);
SET SESSION AUTHORIZATION regress_ft_alice;
SELECT llm_training_estimate('ft-plain', 1, 'ft-base');
SELECT llm_training_estimate('ft-plain', NULL, 'ft-base', epochs => 5) ->> 'estimated_cost_usd' AS five_epochs;

-- 3. refusals, each naming the row, before anything is stored
SELECT error_of($$SELECT llm_training_set_create('ft-bad',
	'SELECT body AS input, answer AS output FROM ft_tickets WHERE id <= 9')$$);
SELECT error_of($$SELECT llm_training_set_create('ft-bad',
	'SELECT body AS input, answer AS output FROM ft_tickets WHERE id <= 20', holdout => 0.9)$$);
SELECT error_of($$SELECT llm_training_set_create('ft-bad',
	'SELECT id::text AS id, body AS input, CASE WHEN id = 7 THEN NULL ELSE answer END AS output FROM ft_tickets ORDER BY id')$$);
SELECT error_of($$SELECT llm_training_set_create('ft-bad',
	'SELECT body AS input, CASE WHEN id = 3 THEN '' '' ELSE answer END AS output FROM ft_tickets ORDER BY id')$$);
SELECT error_of($$SELECT llm_training_set_create('ft-bad',
	'SELECT id AS id, jsonb_build_object(CASE WHEN id = 12 THEN ''text'' ELSE ''body'' END, body) AS vars,
	        answer AS output FROM ft_tickets ORDER BY id', prompt => 'ft-support')$$);
SELECT error_of($$SELECT llm_training_set_create('ft-bad',
	'SELECT body AS input, answer AS output, CASE WHEN id = 4 THEN 2 ELSE 1 END AS weight FROM ft_tickets ORDER BY id')$$);
SELECT error_of($$SELECT llm_training_set_create('ft-bad',
	'SELECT body AS input, CASE WHEN id = 5 THEN repeat(''x'', 300000) ELSE answer END AS output FROM ft_tickets ORDER BY id')$$);
SELECT error_of($$SELECT llm_training_set_create('ft-bad', 'SELECT body AS input FROM ft_tickets')$$);
SELECT error_of($$SELECT llm_training_set_create('ft-bad', 'SELECT body AS input, answer AS output FROM ft_tickets',
	prompt => 'ft-support')$$);
SELECT error_of($$SELECT llm_training_set_create('ft-bad', 'SELECT jsonb_build_object(''body'', body) AS vars, answer AS output FROM ft_tickets')$$);
SELECT error_of($$SELECT llm_training_set_create('bad name', 'SELECT 1')$$);
SELECT error_of($$SELECT llm_training_set_create('ft-bad', 'SELECT 1', holdout => 1)$$);
SELECT error_of($$SELECT llm_training_set_create('ft-bad', 'SELECT 1', version => 1)$$);
SELECT error_of($$SELECT llm_training_jsonl('ft-none')$$);
SELECT error_of($$SELECT llm_training_jsonl('ft-plain', 9)$$);
SELECT count(*) AS nothing_stored FROM llm.training_sets WHERE name = 'ft-bad';
RESET SESSION AUTHORIZATION;
SELECT count(*) AS staging_empty FROM llm.training_staging;
SELECT bool_and(held_out = llm._training_held_out(example_key, 0.3)) AS held_out_by_key
  FROM llm.training_examples WHERE set_name = 'ft-plain' AND set_version = 2;

-- 4. the query runs with the caller's rights: bob cannot read the tickets,
-- sees none of alice's sets, and cannot add versions to her name
SET SESSION AUTHORIZATION regress_ft_bob;
SELECT error_of($$SELECT llm_training_set_create('ft-bob',
	'SELECT body AS input, answer AS output FROM ft_tickets')$$);
SELECT count(*) AS visible_sets FROM llm.training_sets;
SELECT count(*) AS visible_examples FROM llm.training_examples;
SELECT error_of($$SELECT llm_training_jsonl('ft-plain')$$);
SELECT error_of($$SELECT llm_training_set_create('ft-plain',
	'SELECT ''q'' || i AS input, ''a'' || i AS output FROM generate_series(1, 10) i')$$);
SET ROLE llm_user;		-- a role switch shows nothing more
SELECT count(*) AS visible_sets FROM llm.training_sets;
RESET ROLE;
-- the internal steps record only well-formed examples, for bob himself
SELECT error_of($$SELECT llm.llm_training_stage(ARRAY[1], ARRAY['k'], ARRAY['{"messages": []}'])$$);
SELECT error_of($$SELECT llm.llm_training_stage(ARRAY[1], ARRAY['k'], ARRAY['{"messages": [{"role": "user", "content": "x"}]}'])$$);
SELECT error_of($$SELECT llm._training_record('regress_ft_alice', 'regress_ft_alice', 'ft-x', 'q', NULL, NULL, NULL, 0, NULL)$$);
SELECT llm_training_set_create('ft-bob',
	'SELECT ''q'' || i AS input, ''a'' || i AS output FROM generate_series(1, 10) i') AS bob_version;
SELECT name, version, created_by FROM llm.training_sets ORDER BY name, version;
RESET SESSION AUTHORIZATION;
-- llm_admin sees every set
SET ROLE llm_admin;
SELECT name, version, created_by FROM llm.training_sets ORDER BY name, version;
RESET ROLE;
-- versions are immutable
SELECT error_of($$UPDATE llm.training_sets SET note = 'x' WHERE name = 'ft-plain'$$);
SELECT error_of($$UPDATE llm.training_examples SET line = 'x' WHERE set_name = 'ft-plain'$$);
