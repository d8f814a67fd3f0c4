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

-- The login role of the current call: the session's user, or, while the
-- background worker works for a queued request, that request's login role.
-- Row level security compares it with each row's login_role, so that a role
-- switch (SET ROLE to a group role) shows nobody else's rows.
CREATE FUNCTION llm._login()
RETURNS name
AS 'MODULE_PATHNAME', 'llm_login'
LANGUAGE C STABLE PARALLEL RESTRICTED;
REVOKE ALL ON FUNCTION llm._login() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._login() TO llm_user;

-- Whether role member counts as role grp: it is grp, or a member of grp
-- (how 'MEMBER'), or holds grp's privileges without SET ROLE (how 'USAGE',
-- membership through roles that inherit).  Budgets count a call's acting
-- role as a MEMBER and its login role by USAGE: a login that switches to a
-- group role is still held to its own groups' budgets, while a pooler's
-- NOINHERIT login switching between tenants is not held to every tenant's.
-- Superusers are members of every role for pg_has_role, but count only as
-- themselves; so does a role dropped since.
CREATE FUNCTION llm._counts_for(member name, grp name, how text DEFAULT 'MEMBER')
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT member = grp
		OR EXISTS (SELECT FROM pg_roles m, pg_roles g
					WHERE m.rolname = member AND g.rolname = grp AND NOT m.rolsuper
					  AND pg_has_role(m.oid, g.oid, how))
$$;
REVOKE ALL ON FUNCTION llm._counts_for(name, name, text) FROM PUBLIC;
