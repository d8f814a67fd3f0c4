-- llmext install script, assembled from sql/schema/*.sql by the Makefile.
\echo Use "CREATE EXTENSION llmext" to load this file. \quit

-- Roles are cluster-wide: they are created once and outlive DROP EXTENSION.
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'llm_user') THEN
		CREATE ROLE llm_user NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'llm_admin') THEN
		CREATE ROLE llm_admin NOLOGIN;
	END IF;
	IF NOT pg_catalog.pg_has_role('llm_admin', 'llm_user', 'MEMBER') THEN
		GRANT llm_user TO llm_admin;
	END IF;
END
$$;

CREATE SCHEMA llm;
COMMENT ON SCHEMA llm IS 'llmext: providers, models and, later, prompts, calls and the queue';
GRANT USAGE ON SCHEMA llm TO llm_user;
