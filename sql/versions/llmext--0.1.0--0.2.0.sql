-- llmext 0.1.0 -> 0.2.0: security fixes.
--
-- Callers are identified by llmext (llm_gate, in C) instead of by settings a
-- callback could reset; calls, requests and daily spend record the login role
-- beside the acting role, and rows are shown by both; budgets cover the
-- members of group roles and follow a login through SET ROLE; prompt names
-- are owned, and others add versions only when granted; internal functions
-- are executable by no role; a request's priority is bounded.
--
-- Rows recorded before this version get their acting role as login role;
-- prompt names get the author of their first version as owner; queued
-- requests with a priority outside -1000..1000 are clamped into it.
-- Install the new library first; the worker waits for this update before it
-- works in a database (see docs/reference.md, "Versions and upgrades").

\echo Use "ALTER EXTENSION llmext UPDATE TO '0.2.0'" to load this file. \quit

-- The login role, and role counting for budgets and prompt ownership.
CREATE FUNCTION llm._login()
RETURNS name
AS 'MODULE_PATHNAME', 'llm_login'
LANGUAGE C STABLE PARALLEL RESTRICTED;
REVOKE ALL ON FUNCTION llm._login() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._login() TO llm_user;

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

-- Providers: where keys may come from and where they may go are a
-- superuser's settings (llmext.key_env_allowed, llmext.allowed_hosts).
CREATE FUNCTION llm._check_provider_target(name text, base_url text, key_env text)
RETURNS void
AS 'MODULE_PATHNAME', 'llm_check_provider_target_sql'
LANGUAGE C STABLE;
REVOKE ALL ON FUNCTION llm._check_provider_target(text, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION llm_provider_create(
	name text,
	base_url text,
	kind text DEFAULT 'openai',
	api_key text DEFAULT NULL,
	key_env text DEFAULT NULL,
	options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid provider name "%"', coalesce(name, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use up to 63 letters, digits, "_", "." or "-", starting with a letter or digit.';
	END IF;
	IF base_url IS NULL OR base_url !~ '^https?://[^\s/@]+(/[^\s]*)?$' THEN
		RAISE EXCEPTION 'invalid base_url "%" for provider "%"', coalesce(base_url, 'NULL'), name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give an http:// or https:// URL without credentials, such as https://api.openai.com/v1.';
	END IF;
	kind := coalesce(kind, 'openai');
	IF kind <> 'openai' THEN
		RAISE EXCEPTION 'provider kind "%" is not supported', kind
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Use kind ''openai'' for OpenAI and every OpenAI-compatible server (Azure OpenAI, vLLM, Ollama, llama.cpp).';
	END IF;
	IF api_key IS NOT NULL AND key_env IS NOT NULL THEN
		RAISE EXCEPTION 'give api_key or key_env, not both'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF api_key = '' THEN
		RAISE EXCEPTION 'api_key must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL for a provider that needs no key.';
	END IF;
	IF key_env IS NOT NULL AND key_env !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
		RAISE EXCEPTION 'invalid environment variable name "%"', key_env
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM llm._check_provider_target(name, base_url, key_env);
	options := coalesce(options, '{}');
	PERFORM llm._check_provider_options(options);
	IF EXISTS (SELECT FROM llm.providers p WHERE p.name = llm_provider_create.name) THEN
		RAISE EXCEPTION 'provider "%" already exists', name
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Drop it with llm_provider_drop, or rotate its key with llm_provider_set_key.';
	END IF;

	INSERT INTO llm.providers (name, kind, base_url, key_source, key_env, options)
	VALUES (name, kind, base_url,
			CASE WHEN api_key IS NOT NULL THEN 'stored'
				 WHEN key_env IS NOT NULL THEN 'env'
				 ELSE 'none' END,
			key_env, options);
	IF api_key IS NOT NULL THEN
		INSERT INTO llm.provider_keys (provider, api_key) VALUES (name, api_key);
	END IF;
END
$$;

-- The ledger: the login role of every call.  Rows from before it was
-- recorded were made by their role's own login as far as llmext knows.
ALTER TABLE llm.calls ADD COLUMN login_role name;
UPDATE llm.calls SET login_role = role;
ALTER TABLE llm.calls ALTER COLUMN login_role SET NOT NULL;
COMMENT ON COLUMN llm.calls.role IS 'the acting role: current_user where the call was made';
COMMENT ON COLUMN llm.calls.login_role IS 'the login role: session_user of the call (after SET ROLE, the role that switched)';
DROP POLICY calls_own_rows ON llm.calls;
CREATE POLICY calls_own_rows ON llm.calls FOR SELECT
	USING ((role = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));

ALTER TABLE llm.spend_daily ADD COLUMN login_role name;
UPDATE llm.spend_daily SET login_role = role;
ALTER TABLE llm.spend_daily ALTER COLUMN login_role SET NOT NULL;
ALTER TABLE llm.spend_daily DROP CONSTRAINT spend_daily_pkey;
ALTER TABLE llm.spend_daily ADD PRIMARY KEY (day, role, login_role);
COMMENT ON TABLE llm.spend_daily IS 'spend per UTC day, acting role and login role, maintained from the ledger; read by budget checks';

CREATE OR REPLACE FUNCTION llm._persist(entries jsonb)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	inserted_hits jsonb;
BEGIN
	-- ledger rows carry an entry_id, cache entries a key and a result
	WITH new_calls AS (
		INSERT INTO llm.calls (entry_id, created_at, role, login_role, database, source, prompt_name,
							   prompt_version, model, remote_model, provider, cache_hit,
							   http_status, outcome, error, input_tokens, cached_input_tokens,
							   output_tokens, reasoning_tokens, cost_usd, cost_saved_usd,
							   latency_ms, request_id, fingerprint)
		SELECT r.entry_id,
			   coalesce(r.created_at,
						timestamptz '2000-01-01 00:00:00+00' + r.created_us * interval '1 microsecond'),
			   r.role, coalesce(r.login_role, r.role), r.database, coalesce(r.source, 'sync'), r.prompt_name,
			   r.prompt_version, r.model, r.remote_model, r.provider, coalesce(r.cache_hit, false),
			   r.http_status, r.outcome, r.error, coalesce(r.input_tokens, 0),
			   coalesce(r.cached_input_tokens, 0), coalesce(r.output_tokens, 0),
			   coalesce(r.reasoning_tokens, 0),
			   -- costs arrive as doubles: kept to the pico-dollar
			   coalesce(trim_scale(round(r.cost_usd, 12)), 0),
			   coalesce(trim_scale(round(r.cost_saved_usd, 12)), 0),
			   r.latency_ms, r.request_id, r.fingerprint
		  FROM jsonb_to_recordset(entries) AS r(
				entry_id text, created_at timestamptz, created_us bigint, role name,
				login_role name, database name, source text, prompt_name text, prompt_version integer,
				model text, remote_model text, provider text, cache_hit boolean,
				http_status integer, outcome text, error text, input_tokens bigint,
				cached_input_tokens bigint, output_tokens bigint, reasoning_tokens bigint,
				cost_usd numeric, cost_saved_usd numeric, latency_ms double precision,
				request_id text, fingerprint text)
		 WHERE r.entry_id IS NOT NULL
		ON CONFLICT (entry_id) DO NOTHING
		RETURNING fingerprint, created_at, cache_hit, role, login_role, cost_usd
	),
	spend AS (
		INSERT INTO llm.spend_daily AS d (day, role, login_role, cost_usd)
		SELECT (created_at AT TIME ZONE 'UTC')::date, role, login_role, sum(cost_usd)
		  FROM new_calls
		 GROUP BY 1, 2, 3
		HAVING sum(cost_usd) > 0
		ON CONFLICT (day, role, login_role) DO UPDATE SET cost_usd = d.cost_usd + excluded.cost_usd
	)
	SELECT jsonb_agg(jsonb_build_object('key', h.fingerprint, 'hits', h.hits, 'at', h.last_hit))
	  INTO inserted_hits
	  FROM (SELECT fingerprint, count(*) AS hits, max(created_at) AS last_hit
			  FROM new_calls WHERE cache_hit GROUP BY fingerprint) h;

	INSERT INTO llm.cache AS c (key, model, provider, remote_model, result, cost_usd,
								created_at, expires_at)
	SELECT r.key, r.model, r.provider, r.remote_model, r.result,
		   coalesce(trim_scale(round(r.cost_usd, 12)), 0),
		   r.created_at, r.expires_at
	  FROM jsonb_to_recordset(entries) AS r(
			key text, model text, provider text, remote_model text, result jsonb,
			cost_usd numeric, created_at timestamptz, expires_at timestamptz)
	 WHERE r.key IS NOT NULL AND r.result IS NOT NULL
	ON CONFLICT (key) DO UPDATE
		SET result = excluded.result, cost_usd = excluded.cost_usd,
			created_at = excluded.created_at, expires_at = excluded.expires_at
		WHERE c.created_at < excluded.created_at;

	IF inserted_hits IS NOT NULL THEN
		UPDATE llm.cache c
		   SET hit_count = c.hit_count + (h ->> 'hits')::bigint,
			   last_hit_at = greatest(c.last_hit_at, (h ->> 'at')::timestamptz)
		  FROM jsonb_array_elements(inserted_hits) h
		 WHERE c.key = h ->> 'key';
	END IF;
END
$$;

-- Budgets count group roles and the login role.
DROP FUNCTION llm._visible_budget_spend(name, numeric, numeric);
DROP FUNCTION llm._budget_spend(name, numeric, numeric);
CREATE FUNCTION llm._budget_spend(who name, login name, pending_own jsonb DEFAULT '[]',
								  pending_all numeric DEFAULT 0)
RETURNS TABLE (role name, period text, limit_usd numeric, spent_usd numeric,
			   period_start timestamptz, period_end timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT b.role, b.period, b.limit_usd,
		   s.spent + CASE WHEN b.role IS NULL THEN pending_all
						  ELSE (SELECT coalesce(sum((p ->> 'cost')::numeric), 0)
								  FROM jsonb_array_elements(pending_own) p
								 WHERE llm._counts_for((p ->> 'role')::name, b.role)
									OR llm._counts_for((p ->> 'login')::name, b.role, 'USAGE')) END,
		   p.start, p.start + CASE b.period WHEN 'day' THEN interval '1 day' ELSE interval '1 month' END
	  FROM llm.budgets b
	 CROSS JOIN LATERAL (SELECT date_trunc(b.period, now(), 'UTC') AS start) p
	 CROSS JOIN LATERAL (
		SELECT coalesce(sum(d.cost_usd), 0) AS spent
		  FROM llm.spend_daily d
		 WHERE d.day >= (p.start AT TIME ZONE 'UTC')::date
		   AND (b.role IS NULL OR llm._counts_for(d.role, b.role)
				OR llm._counts_for(d.login_role, b.role, 'USAGE'))) s
	 WHERE who IS NULL OR b.role IS NULL
		OR llm._counts_for(who, b.role) OR llm._counts_for(login, b.role, 'USAGE')
	 ORDER BY b.role NULLS LAST, b.period
$$;
REVOKE ALL ON FUNCTION llm._budget_spend(name, name, jsonb, numeric) FROM PUBLIC;

CREATE OR REPLACE FUNCTION llm_budget_status()
RETURNS TABLE (role name, period text, limit_usd numeric, spent_usd numeric,
			   remaining_usd numeric, period_start timestamptz, period_end timestamptz)
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
CREATE FUNCTION llm._budget_status(who name, login name)
RETURNS TABLE (role name, period text, limit_usd numeric, spent_usd numeric,
			   remaining_usd numeric, period_start timestamptz, period_end timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- spend still queued for the worker belongs to whoever made it: write it
	-- first (the query below then takes a snapshot that sees it)
	PERFORM @extschema@.llm_flush('5 seconds');
	RETURN QUERY
	SELECT s.role, s.period, s.limit_usd, trim_scale(round(s.spent_usd, 10)),
		   trim_scale(round(greatest(s.limit_usd - s.spent_usd, 0), 10)),
		   s.period_start, s.period_end
	  FROM llm._budget_spend(CASE WHEN pg_has_role(who, 'llm_admin', 'MEMBER') THEN NULL ELSE who END,
							 login, '[]', 0) s;
END
$$;
REVOKE ALL ON FUNCTION llm._budget_status(name, name) FROM PUBLIC;

-- Prompt names are owned.  A name's owner is the author of its first version.
CREATE TABLE llm.prompt_owners (
	name		text PRIMARY KEY,
	owner		name NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE llm.prompt_owners IS 'who owns each prompt name: the creator of its first version';
GRANT SELECT ON llm.prompt_owners TO llm_user;
SELECT pg_catalog.pg_extension_config_dump('llm.prompt_owners', '');
INSERT INTO llm.prompt_owners (name, owner, created_at)
SELECT DISTINCT ON (p.name) p.name, p.author, p.created_at
  FROM llm.prompts p
 ORDER BY p.name, p.version;

CREATE TABLE llm.prompt_grants (
	name		text NOT NULL REFERENCES llm.prompt_owners ON DELETE CASCADE,
	grantee		name NOT NULL,
	granted_by	name NOT NULL,
	granted_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (name, grantee)
);
COMMENT ON TABLE llm.prompt_grants IS 'roles (and their members) allowed to add versions to a prompt they do not own';
GRANT SELECT ON llm.prompt_grants TO llm_user;
SELECT pg_catalog.pg_extension_config_dump('llm.prompt_grants', '');

-- Callers are told by llm_gate, no longer by a setting (llm._caller).
CREATE OR REPLACE FUNCTION llm_prompt_create(
	name text,
	template text,
	system text DEFAULT NULL,
	examples jsonb DEFAULT NULL,
	response_schema jsonb DEFAULT NULL,
	model text DEFAULT NULL,
	params jsonb DEFAULT NULL,
	note text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
CREATE FUNCTION llm._prompt_may_write(who name, name text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_has_role(who, 'llm_admin', 'MEMBER')
		OR EXISTS (SELECT FROM llm.prompt_owners o
					WHERE o.name = _prompt_may_write.name AND llm._counts_for(who, o.owner))
		OR EXISTS (SELECT FROM llm.prompt_grants g
					WHERE g.name = _prompt_may_write.name AND llm._counts_for(who, g.grantee))
$$;
CREATE FUNCTION llm._prompt_create(
	caller name,
	login name,
	name text,
	template text,
	system text,
	examples jsonb,
	response_schema jsonb,
	model text,
	params jsonb,
	note text)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	new_version integer;
	example jsonb;
	bad_key text;
	owner name;
BEGIN
	IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid prompt name "%"', coalesce(name, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use up to 63 letters, digits, "_", "." or "-", starting with a letter or digit.';
	END IF;
	IF template IS NULL OR template = '' THEN
		RAISE EXCEPTION 'the template of prompt "%" must not be empty', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM llm._template_check(template);
	IF examples IS NOT NULL THEN
		IF jsonb_typeof(examples) <> 'array' THEN
			RAISE EXCEPTION 'examples must be a JSON array of {"input", "output"} objects'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		FOR example IN SELECT * FROM jsonb_array_elements(examples) LOOP
			IF jsonb_typeof(example) <> 'object' OR NOT example ? 'input' OR NOT example ? 'output'
			   OR jsonb_typeof(example -> 'input') NOT IN ('object', 'string') THEN
				RAISE EXCEPTION 'invalid example %', example
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'Each example is {"input": {template variables} or "text", "output": "text" or JSON}.';
			END IF;
		END LOOP;
	END IF;
	IF response_schema IS NOT NULL THEN
		PERFORM llm._schema_check(response_schema);
	END IF;
	IF model IS NOT NULL AND NOT EXISTS (SELECT FROM llm.models m WHERE m.name = _prompt_create.model) THEN
		RAISE EXCEPTION 'model "%" does not exist', model
			USING ERRCODE = 'undefined_object',
				  HINT = 'Register it with llm_model_create, or list the models with SELECT name FROM llm.models.';
	END IF;
	params := coalesce(params, '{}');
	IF jsonb_typeof(params) <> 'object' THEN
		RAISE EXCEPTION 'params must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT k INTO bad_key FROM jsonb_object_keys(params) k
	 WHERE k IN ('model', 'messages', 'stream', 'on_error', 'on_invalid', 'cache', 'cache_ttl') LIMIT 1;
	IF bad_key IS NOT NULL THEN
		RAISE EXCEPTION 'params must not set "%"', bad_key
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- versions are numbered per name; concurrent creators queue here
	PERFORM pg_advisory_xact_lock(hashtext('llmext prompt ' || name));
	SELECT o.owner INTO owner FROM llm.prompt_owners o WHERE o.name = _prompt_create.name;
	IF NOT FOUND THEN
		-- a name first used now is the caller's (one kept from before owners
		-- were recorded is its first author's)
		SELECT p.author INTO owner FROM llm.prompts p
		 WHERE p.name = _prompt_create.name ORDER BY p.version LIMIT 1;
		INSERT INTO llm.prompt_owners (name, owner) VALUES (name, coalesce(owner, caller));
	END IF;
	IF NOT llm._prompt_may_write(caller, name) THEN
		RAISE EXCEPTION 'permission denied to add a version to prompt "%"', name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Prompt "%s" belongs to role "%s".', name,
								  (SELECT o.owner FROM llm.prompt_owners o WHERE o.name = _prompt_create.name)),
				  HINT = 'Its owner can allow you with llm_prompt_grant, or choose another name.';
	END IF;
	SELECT coalesce(max(p.version), 0) + 1 INTO new_version
	  FROM llm.prompts p WHERE p.name = _prompt_create.name;
	INSERT INTO llm.prompts (name, version, system, template, examples, response_schema,
							 model, params, note, author)
	VALUES (name, new_version, nullif(system, ''), template, examples, response_schema,
			model, params, note, caller);
	RETURN new_version;
END
$$;
COMMENT ON FUNCTION llm_prompt_create(text, text, text, jsonb, jsonb, text, jsonb, text) IS
	'add a version of a prompt: its number (the first version makes you its owner)';

CREATE FUNCTION llm_prompt_grant(name text, role name)
RETURNS void
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_prompt_grant(text, name) IS
	'allow a role (and its members) to add versions to a prompt you own';
CREATE FUNCTION llm_prompt_revoke(name text, role name)
RETURNS void
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_prompt_revoke(text, name) IS
	'take back llm_prompt_grant';
CREATE FUNCTION llm._prompt_owner_for_grant(caller name, name text)
RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	owner name;
BEGIN
	SELECT o.owner INTO owner FROM llm.prompt_owners o WHERE o.name = _prompt_owner_for_grant.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'prompt "%" does not exist', coalesce(name, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it with llm_prompt_create.';
	END IF;
	IF NOT llm._counts_for(caller, owner) AND NOT pg_has_role(caller, 'llm_admin', 'MEMBER') THEN
		RAISE EXCEPTION 'only the owner of prompt "%" can change who may add versions to it', name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Prompt "%s" belongs to role "%s".', name, owner);
	END IF;
	RETURN owner;
END
$$;
CREATE FUNCTION llm._prompt_grant(caller name, login name, name text, role name)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM llm._prompt_owner_for_grant(caller, name);
	IF role IS NULL OR NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = _prompt_grant.role) THEN
		RAISE EXCEPTION 'role "%" does not exist', coalesce(role::text, 'NULL')
			USING ERRCODE = 'undefined_object';
	END IF;
	INSERT INTO llm.prompt_grants (name, grantee, granted_by)
	VALUES (name, role, caller)
	ON CONFLICT DO NOTHING;
END
$$;
CREATE FUNCTION llm._prompt_revoke(caller name, login name, name text, role name)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM llm._prompt_owner_for_grant(caller, name);
	DELETE FROM llm.prompt_grants g WHERE g.name = _prompt_revoke.name AND g.grantee = _prompt_revoke.role;
END
$$;

DROP FUNCTION llm._prompt_move_label(text, text, jsonb, text);
CREATE FUNCTION llm._prompt_move_label(caller name, name text, label text, variants jsonb, action text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	previous jsonb;
BEGIN
	IF label IS NULL OR label !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid label "%"', coalesce(label, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT l.variants INTO previous FROM llm.prompt_labels l
	 WHERE l.name = _prompt_move_label.name AND l.label = _prompt_move_label.label FOR UPDATE;
	INSERT INTO llm.prompt_labels AS l (name, label, variants, updated_by, updated_at)
	VALUES (name, label, variants, caller, now())
	ON CONFLICT ON CONSTRAINT prompt_labels_pkey DO UPDATE
		SET variants = excluded.variants, updated_by = excluded.updated_by, updated_at = excluded.updated_at;
	INSERT INTO llm.prompt_label_history (name, label, action, from_variants, to_variants, changed_by)
	VALUES (name, label, action, previous, variants, caller);
END
$$;
CREATE OR REPLACE FUNCTION llm_prompt_deploy(name text, version integer, label text DEFAULT 'production',
								  model text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
CREATE FUNCTION llm._prompt_deploy(caller name, login name, name text, version integer, label text,
								   model text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM llm._prompt_move_label(caller, name, coalesce(label, 'production'),
								   llm._prompt_variants(name, ARRAY[version], ARRAY[1::numeric],
														ARRAY[model]),
								   'deploy');
END
$$;
CREATE OR REPLACE FUNCTION llm_prompt_split(name text, label text, versions integer[], weights numeric[],
								 models text[] DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
CREATE FUNCTION llm._prompt_split(caller name, login name, name text, label text, versions integer[],
								  weights numeric[], models text[])
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM llm._prompt_move_label(caller, name, label, llm._prompt_variants(name, versions, weights, models),
								   'split');
END
$$;
CREATE OR REPLACE FUNCTION llm_prompt_rollback(name text, label text DEFAULT 'production')
RETURNS void
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
CREATE FUNCTION llm._prompt_rollback(caller name, login name, name text, label text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	current_variants jsonb;
	move record;
BEGIN
	label := coalesce(label, 'production');
	SELECT l.variants INTO current_variants FROM llm.prompt_labels l
	 WHERE l.name = _prompt_rollback.name AND l.label = _prompt_rollback.label FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'prompt "%" has no label "%"', coalesce(name, 'NULL'), label
			USING ERRCODE = 'undefined_object',
				  HINT = 'Deploy a version first with llm_prompt_deploy.';
	END IF;
	-- the move that set the label to what it is now, not itself undone
	SELECT h.* INTO move FROM llm.prompt_label_history h
	 WHERE h.name = _prompt_rollback.name AND h.label = _prompt_rollback.label
	   AND h.action <> 'rollback' AND NOT h.rolled_back AND h.to_variants = current_variants
	 ORDER BY h.id DESC LIMIT 1;
	IF NOT FOUND OR move.from_variants IS NULL THEN
		RAISE EXCEPTION 'label "%" of prompt "%" has no earlier version to roll back to', label, name
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'See llm.prompt_label_history; deploy a version explicitly with llm_prompt_deploy.';
	END IF;
	UPDATE llm.prompt_label_history SET rolled_back = true WHERE id = move.id;
	PERFORM llm._prompt_move_label(caller, name, label, move.from_variants, 'rollback');
END
$$;
REVOKE ALL ON FUNCTION llm._prompt_move_label(name, text, text, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm._prompt_may_write(name, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm._prompt_owner_for_grant(name, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm._prompt_create(name, name, text, text, text, jsonb, jsonb, text, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm._prompt_grant(name, name, text, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm._prompt_revoke(name, name, text, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm._prompt_deploy(name, name, text, integer, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm._prompt_split(name, name, text, text, integer[], numeric[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm._prompt_rollback(name, name, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_prompt_grant(text, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_prompt_revoke(text, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_prompt_grant(text, name) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_prompt_revoke(text, name) TO llm_user;

-- The queue: the login role of every request, a bounded priority, and
-- internal functions no role may call.
UPDATE llm.requests SET priority = greatest(-1000, least(1000, priority))
 WHERE priority NOT BETWEEN -1000 AND 1000;
ALTER TABLE llm.requests ADD CONSTRAINT requests_priority_check CHECK (priority BETWEEN -1000 AND 1000);
ALTER TABLE llm.requests ADD COLUMN login_role name;
UPDATE llm.requests SET login_role = submitted_by;
ALTER TABLE llm.requests ALTER COLUMN login_role SET NOT NULL;
DROP POLICY requests_own_rows ON llm.requests;
CREATE POLICY requests_own_rows ON llm.requests FOR SELECT
	USING ((submitted_by = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));

DROP FUNCTION llm._enqueue(text, jsonb, jsonb, text, integer, regprocedure, text, integer);
CREATE FUNCTION llm._enqueue(caller name, login name, model text, messages jsonb, options jsonb,
							 tag text, priority integer, callback regprocedure,
							 prompt_name text, prompt_version integer)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	new_id bigint;
BEGIN
	IF options IS NOT NULL AND jsonb_typeof(options) <> 'object' THEN
		RAISE EXCEPTION 'options must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF priority IS NOT NULL AND priority NOT BETWEEN -1000 AND 1000 THEN
		RAISE EXCEPTION 'priority % is out of range', priority
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use a priority from -1000 to 1000 (default 0); higher runs first.';
	END IF;
	IF callback IS NOT NULL AND NOT has_function_privilege(caller, callback, 'EXECUTE') THEN
		RAISE EXCEPTION 'role "%" may not execute callback %', caller, callback
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'The callback runs with the submitter''s rights.';
	END IF;
	INSERT INTO llm.requests (tag, submitted_by, login_role, priority, model, messages, options,
							  callback, prompt_name, prompt_version)
	VALUES (tag, caller, login, coalesce(priority, 0), model, messages, options, callback,
			prompt_name, prompt_version)
	RETURNING id INTO new_id;
	PERFORM llm._wake_at_commit();
	RETURN new_id;
END
$$;
REVOKE ALL ON FUNCTION llm._enqueue(name, name, text, jsonb, jsonb, text, integer, regprocedure, text, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION llm_submit(prompt text, model text DEFAULT NULL, system text DEFAULT NULL,
						   options jsonb DEFAULT NULL, tag text DEFAULT NULL,
						   priority integer DEFAULT 0, callback regprocedure DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
CREATE FUNCTION llm._submit(caller name, login name, prompt text, model text, system text,
							options jsonb, tag text, priority integer, callback regprocedure)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF prompt IS NULL THEN
		RETURN NULL;
	END IF;
	IF prompt = '' THEN
		RAISE EXCEPTION 'prompt must not be empty'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- the session's default model, fixed now: the worker has its own settings
	RETURN llm._enqueue(caller, login,
						coalesce(model, nullif(current_setting('llmext.default_model', true), '')),
						CASE WHEN coalesce(system, '') = '' THEN '[]'::jsonb
							 ELSE jsonb_build_array(jsonb_build_object('role', 'system', 'content', system)) END
						|| jsonb_build_array(jsonb_build_object('role', 'user', 'content', prompt)),
						options, tag, priority, callback, NULL, NULL);
END
$$;
REVOKE ALL ON FUNCTION llm._submit(name, name, text, text, text, jsonb, text, integer, regprocedure) FROM PUBLIC;

CREATE OR REPLACE FUNCTION llm_submit_prompt(name text, vars jsonb DEFAULT '{}', model text DEFAULT NULL,
								  version integer DEFAULT NULL, label text DEFAULT NULL,
								  ab_key text DEFAULT NULL, options jsonb DEFAULT NULL,
								  tag text DEFAULT NULL, priority integer DEFAULT 0,
								  callback regprocedure DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
CREATE FUNCTION llm._submit_prompt(caller name, login name, name text, vars jsonb, model text,
								   version integer, label text, ab_key text, options jsonb,
								   tag text, priority integer, callback regprocedure)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r jsonb;
BEGIN
	-- rendered now: the request records exactly what will be sent
	r := @extschema@.llm_render(name, vars, version, label, ab_key);
	RETURN llm._enqueue(caller, login, coalesce(model, r ->> 'model'), r -> 'messages',
						(r -> 'params')
						|| CASE WHEN jsonb_typeof(r -> 'response_format') = 'object'
								THEN jsonb_build_object('response_format', r -> 'response_format')
								ELSE '{}' END
						|| coalesce(options, '{}'),
						tag, priority, callback, r ->> 'prompt', (r ->> 'version')::integer);
END
$$;
REVOKE ALL ON FUNCTION llm._submit_prompt(name, name, text, jsonb, text, integer, text, text, jsonb, text, integer, regprocedure) FROM PUBLIC;

-- llm_cancel and llm_cancel_batch are gates now; their old helper goes.
CREATE OR REPLACE FUNCTION llm_cancel(id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
CREATE OR REPLACE FUNCTION llm_cancel_batch(tag text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
DROP FUNCTION llm._cancel(bigint[], text);
CREATE FUNCTION llm._cancel_rows(caller name, login name, ids bigint[], batch_tag text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
	tags text[];
	is_admin boolean := pg_has_role(caller, 'llm_admin', 'MEMBER');
BEGIN
	WITH gone AS (
		UPDATE llm.requests r
		   SET state = 'cancelled', finished_at = now()
		 WHERE (r.id = ANY (ids) OR r.tag = batch_tag)
		   AND r.state IN ('queued', 'running')
		   AND ((r.submitted_by = caller AND (r.login_role = login OR caller = login)) OR is_admin)
		RETURNING r.tag)
	SELECT count(*), array_agg(DISTINCT tag) FILTER (WHERE tag IS NOT NULL)
	  INTO n, tags
	  FROM gone;
	-- a batch that this cancel finished is announced like one that ran out
	PERFORM llm._announce_finished(tags);
	RETURN n;
END
$$;
REVOKE ALL ON FUNCTION llm._cancel_rows(name, name, bigint[], text) FROM PUBLIC;

CREATE FUNCTION llm._cancel(caller name, login name, id bigint)
RETURNS boolean
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT llm._cancel_rows(caller, login, ARRAY[id], NULL) = 1 $$;
REVOKE ALL ON FUNCTION llm._cancel(name, name, bigint) FROM PUBLIC;

CREATE FUNCTION llm._cancel_batch(caller name, login name, tag text)
RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT llm._cancel_rows(caller, login, NULL, tag) $$;
REVOKE ALL ON FUNCTION llm._cancel_batch(name, name, text) FROM PUBLIC;

DROP FUNCTION llm._caller();
