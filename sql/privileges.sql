-- Roles: llm_user calls models, llm_admin manages providers and models,
-- and nobody but the extension's owner reads a key.
SET client_min_messages = warning;
CREATE ROLE regress_llm_alice LOGIN;
CREATE ROLE regress_llm_bob LOGIN;
CREATE ROLE regress_llm_admin LOGIN;
GRANT llm_user TO regress_llm_alice;
GRANT llm_admin TO regress_llm_admin;
GRANT EXECUTE ON FUNCTION error_of(text) TO PUBLIC;
RESET client_min_messages;

-- an llm_user calls models and lists them, but reads no key
SET ROLE regress_llm_alice;
SELECT llm_complete('from alice', 'echo');
SELECT llm_chat('[{"role": "user", "content": "alice"}]', 'echo') ->> 'content' AS content;
SELECT name, key_source FROM llm.providers WHERE name = 'fake';
SELECT count(*) > 0 AS lists_models FROM llm.models;
SELECT error_of($$SELECT * FROM llm.provider_keys$$);
SELECT error_of($$SELECT llm_provider_create('mine', 'http://169.254.169.254/latest')$$);
SELECT error_of($$SELECT llm_provider_set_key('fake', 'sk-stolen')$$);
SELECT error_of($$SELECT llm_provider_drop('fake')$$);
SELECT error_of($$SELECT llm_model_create('mine', 'fake', 'echo')$$);
SELECT error_of($$SELECT llm_model_drop('echo')$$);
SELECT error_of($$INSERT INTO llm.providers (name, base_url, key_source) VALUES ('x', 'http://x', 'none')$$);
SELECT error_of($$UPDATE llm.providers SET base_url = 'http://evil.example/v1'$$);
SELECT error_of($$UPDATE llm.models SET input_price = 0$$);
RESET ROLE;

-- the look-up runs with the owner's rights, so a caller's search_path must
-- not reach it: an operator planted ahead of pg_catalog is never called
CREATE SCHEMA regress_llm_trap;
CREATE FUNCTION regress_llm_trap.text_eq(a text, b text) RETURNS boolean
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted operator called as %', current_user; END $$;
CREATE OPERATOR regress_llm_trap.= (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_llm_trap.text_eq);
GRANT USAGE ON SCHEMA regress_llm_trap TO PUBLIC;
SET ROLE regress_llm_alice;
SET search_path = regress_llm_trap, pg_catalog, public;
SELECT llm_complete('search_path is ignored', 'echo');
RESET search_path;
RESET ROLE;
DROP SCHEMA regress_llm_trap CASCADE;

-- a role outside llm_user cannot spend money
SET ROLE regress_llm_bob;
SELECT error_of($$SELECT llm_complete('from bob', 'echo')$$);
SELECT error_of($$SELECT llm_chat('[{"role": "user", "content": "bob"}]', 'echo')$$);
RESET ROLE;

-- an llm_admin manages providers and models, and still reads no key
SET ROLE regress_llm_admin;
SELECT llm_provider_create('admins', 'http://127.0.0.1:1/v1', api_key => 'sk-admin-secret');
SELECT llm_model_create('admins-model', 'admins', 'echo');
SELECT error_of($$SELECT api_key FROM llm.provider_keys$$);
SELECT llm_provider_set_key('admins', 'sk-admin-rotated');
SELECT llm_provider_drop('admins', cascade => true);
RESET ROLE;

-- no function's source, default or comment carries a key
SELECT count(*) AS objects_mentioning_a_key
  FROM pg_proc
 WHERE prosrc LIKE '%sk-test-fake%' OR prosrc LIKE '%sk-admin%';

DROP OWNED BY regress_llm_alice, regress_llm_bob, regress_llm_admin;
DROP ROLE regress_llm_alice, regress_llm_bob, regress_llm_admin;
