-- llmext 0.2.0, as released: frozen.  A fresh install of 0.2.0 runs this file;
-- later versions are reached by the upgrade scripts beside it.

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
-- Providers: where requests go, and how they authenticate.

CREATE TABLE llm.providers (
	name		text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
	kind		text NOT NULL DEFAULT 'openai' CHECK (kind IN ('openai')),
	base_url	text NOT NULL CHECK (base_url ~ '^https?://[^\s/]+'),
	key_source	text NOT NULL CHECK (key_source IN ('none', 'stored', 'env')),
	key_env		text CHECK ((key_source = 'env') = (key_env IS NOT NULL)),
	options		jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE llm.providers IS 'LLM API endpoints; keys live elsewhere, readable by no user role';
COMMENT ON COLUMN llm.providers.key_source IS 'none, stored (set by llm_provider_set_key) or env (read from key_env in the server''s environment)';

-- Only the extension's owner reads this table; the C code switches to that
-- role for the moment of the look-up.
CREATE TABLE llm.provider_keys (
	provider	text PRIMARY KEY REFERENCES llm.providers (name) ON DELETE CASCADE,
	api_key		text NOT NULL
);
REVOKE ALL ON llm.provider_keys FROM PUBLIC;
COMMENT ON TABLE llm.provider_keys IS 'API keys; readable only by the extension owner';

GRANT SELECT ON llm.providers TO llm_user;

SELECT pg_catalog.pg_extension_config_dump('llm.providers', '');
SELECT pg_catalog.pg_extension_config_dump('llm.provider_keys', '');

-- Checks one rate limit, of a provider's options or a model's limits.
CREATE FUNCTION llm._check_limit(owner text, k text, v jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF k = 'max_concurrency' THEN
		IF jsonb_typeof(v) <> 'number' OR (v #>> '{}')::numeric NOT BETWEEN 1 AND 10000
		   OR (v #>> '{}')::numeric <> trunc((v #>> '{}')::numeric) THEN
			RAISE EXCEPTION '% "max_concurrency" must be a whole number from 1 to 10000', owner
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	ELSIF jsonb_typeof(v) <> 'number' OR (v #>> '{}')::numeric < 1
		  OR (v #>> '{}')::numeric <> trunc((v #>> '{}')::numeric) THEN
		RAISE EXCEPTION '% "%" must be a whole number of at least 1', owner, k
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;
REVOKE ALL ON FUNCTION llm._check_limit(text, text, jsonb) FROM PUBLIC;

-- Checks provider options; unknown keys are refused so that typos do not
-- pass silently.
CREATE FUNCTION llm._check_provider_options(options jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	v jsonb;
BEGIN
	IF jsonb_typeof(options) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'provider options must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(options) LOOP
		CASE k
		WHEN 'headers' THEN
			IF jsonb_typeof(v) <> 'object' OR EXISTS (
				SELECT FROM jsonb_each(v) h
				 WHERE jsonb_typeof(h.value) <> 'string'
					OR h.key !~ '^[A-Za-z0-9-]+$'
					OR h.value #>> '{}' ~ '[\r\n]') THEN
				RAISE EXCEPTION 'provider option "headers" must be an object of header names and string values'
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'For example {"headers": {"OpenAI-Organization": "org-123"}}.';
			END IF;
		WHEN 'auth_header' THEN
			IF jsonb_typeof(v) <> 'string' OR v #>> '{}' !~ '^[A-Za-z0-9-]+$' THEN
				RAISE EXCEPTION 'provider option "auth_header" must be a header name'
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'Azure OpenAI uses {"auth_header": "api-key"}; the default sends "Authorization: Bearer <key>".';
			END IF;
		WHEN 'chat_path' THEN
			IF jsonb_typeof(v) <> 'string' OR v #>> '{}' !~ '^/[^\s]*$' THEN
				RAISE EXCEPTION 'provider option "chat_path" must be a path starting with "/"'
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'The default is "/chat/completions", appended to base_url.';
			END IF;
		WHEN 'max_concurrency', 'requests_per_minute', 'tokens_per_minute' THEN
			PERFORM llm._check_limit('provider option', k, v);
		WHEN 'max_attempts' THEN
			IF jsonb_typeof(v) <> 'number' OR (v #>> '{}')::numeric NOT BETWEEN 1 AND 20
			   OR (v #>> '{}')::numeric <> trunc((v #>> '{}')::numeric) THEN
				RAISE EXCEPTION 'provider option "max_attempts" must be a whole number from 1 to 20'
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'It counts the first attempt: 3 (the default) means up to two retries.';
			END IF;
		ELSE
			RAISE EXCEPTION 'unknown provider option "%"', k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Known options: headers, auth_header, chat_path, max_concurrency, max_attempts, requests_per_minute, tokens_per_minute.';
		END CASE;
	END LOOP;
END
$$;

-- Raises insufficient_privilege unless llmext.allowed_hosts allows base_url
-- and llmext.key_env_allowed allows key_env (NULL: no variable); the C code
-- checks again before every request, as those settings may be tightened.
CREATE FUNCTION llm._check_provider_target(name text, base_url text, key_env text)
RETURNS void
AS 'MODULE_PATHNAME', 'llm_check_provider_target_sql'
LANGUAGE C STABLE;
REVOKE ALL ON FUNCTION llm._check_provider_target(text, text, text) FROM PUBLIC;

CREATE FUNCTION llm_provider_create(
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
COMMENT ON FUNCTION llm_provider_create(text, text, text, text, text, jsonb) IS
	'register an LLM API endpoint (kind openai: any OpenAI-compatible server)';

CREATE FUNCTION llm_provider_set_key(name text, api_key text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM llm.providers p WHERE p.name = llm_provider_set_key.name) THEN
		RAISE EXCEPTION 'provider "%" does not exist', coalesce(name, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'List the providers with SELECT name FROM llm.providers.';
	END IF;
	IF api_key = '' THEN
		RAISE EXCEPTION 'api_key must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL to remove the stored key.';
	END IF;
	DELETE FROM llm.provider_keys k WHERE k.provider = name;
	IF api_key IS NOT NULL THEN
		INSERT INTO llm.provider_keys (provider, api_key) VALUES (name, api_key);
	END IF;
	UPDATE llm.providers p
	   SET key_source = CASE WHEN api_key IS NOT NULL THEN 'stored' ELSE 'none' END,
		   key_env = NULL,
		   updated_at = now()
	 WHERE p.name = llm_provider_set_key.name;
END
$$;
COMMENT ON FUNCTION llm_provider_set_key(text, text) IS
	'store (or, with NULL, remove) a provider''s API key';

CREATE FUNCTION llm_provider_drop(name text, cascade boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	dependents text;
BEGIN
	IF NOT EXISTS (SELECT FROM llm.providers p WHERE p.name = llm_provider_drop.name) THEN
		RAISE EXCEPTION 'provider "%" does not exist', coalesce(name, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'List the providers with SELECT name FROM llm.providers.';
	END IF;
	SELECT string_agg(m.name, ', ' ORDER BY m.name) INTO dependents
	  FROM llm.models m WHERE m.provider = llm_provider_drop.name;
	IF dependents IS NOT NULL AND NOT coalesce(cascade, false) THEN
		RAISE EXCEPTION 'cannot drop provider "%" because models use it', name
			USING ERRCODE = 'dependent_objects_still_exist',
				  DETAIL = format('Models: %s.', dependents),
				  HINT = 'Drop the models first, or call llm_provider_drop(name, cascade => true).';
	END IF;
	SELECT string_agg(ft.name, ', ' ORDER BY ft.name) INTO dependents
	  FROM llm.models ft JOIN llm.models b ON b.name = ft.base_model
	 WHERE b.provider = llm_provider_drop.name AND ft.provider <> llm_provider_drop.name;
	IF dependents IS NOT NULL THEN
		RAISE EXCEPTION 'cannot drop provider "%" because fine-tuned models of other providers derive from its models', name
			USING ERRCODE = 'dependent_objects_still_exist',
				  DETAIL = format('Fine-tuned models: %s.', dependents),
				  HINT = 'Drop those fine-tuned models first.';
	END IF;
	-- fine-tuned models first: they reference their base models
	DELETE FROM llm.models m WHERE m.provider = llm_provider_drop.name AND m.kind = 'fine_tuned';
	DELETE FROM llm.models m WHERE m.provider = llm_provider_drop.name;
	DELETE FROM llm.providers p WHERE p.name = llm_provider_drop.name;
END
$$;
COMMENT ON FUNCTION llm_provider_drop(text, boolean) IS
	'remove a provider and its key (and, with cascade, its models)';

REVOKE ALL ON FUNCTION llm._check_provider_options(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_provider_create(text, text, text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_provider_set_key(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_provider_drop(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_provider_create(text, text, text, text, text, jsonb) TO llm_admin;
GRANT EXECUTE ON FUNCTION llm_provider_set_key(text, text) TO llm_admin;
GRANT EXECUTE ON FUNCTION llm_provider_drop(text, boolean) TO llm_admin;
-- Models: the names SQL uses, their provider, prices and lineage.

CREATE TABLE llm.models (
	name				text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$'),
	provider			text NOT NULL REFERENCES llm.providers (name),
	remote_model		text NOT NULL CHECK (remote_model <> ''),
	kind				text NOT NULL DEFAULT 'base' CHECK (kind IN ('base', 'fine_tuned')),
	base_model			text REFERENCES llm.models (name),
	input_price			numeric NOT NULL DEFAULT 0 CHECK (input_price >= 0),
	output_price		numeric NOT NULL DEFAULT 0 CHECK (output_price >= 0),
	cached_input_price	numeric CHECK (cached_input_price >= 0),
	params				jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params) = 'object'),
	limits				jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(limits) = 'object'),
	created_at			timestamptz NOT NULL DEFAULT now(),
	CHECK ((kind = 'fine_tuned') = (base_model IS NOT NULL)),
	CHECK (base_model IS DISTINCT FROM name)
);
CREATE INDEX ON llm.models (base_model);
COMMENT ON TABLE llm.models IS 'models SQL can call: base and fine-tuned, with prices in USD per million tokens';
COMMENT ON COLUMN llm.models.cached_input_price IS 'price of cached input tokens; NULL means the input price';
COMMENT ON COLUMN llm.models.params IS 'default provider parameters, overridden by a call''s options';
COMMENT ON COLUMN llm.models.limits IS 'this model''s own max_concurrency, requests_per_minute and tokens_per_minute, on top of its provider''s';

-- Checks a model's limits; unknown keys are refused.
CREATE FUNCTION llm._check_model_limits(limits jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	v jsonb;
BEGIN
	IF jsonb_typeof(limits) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'model limits must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example ''{"max_concurrency": 8, "requests_per_minute": 500}''.';
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(limits) LOOP
		IF k NOT IN ('max_concurrency', 'requests_per_minute', 'tokens_per_minute') THEN
			RAISE EXCEPTION 'unknown model limit "%"', k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Known limits: max_concurrency, requests_per_minute, tokens_per_minute.';
		END IF;
		PERFORM llm._check_limit('model limit', k, v);
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION llm._check_model_limits(jsonb) FROM PUBLIC;

GRANT SELECT ON llm.models TO llm_user;
SELECT pg_catalog.pg_extension_config_dump('llm.models', '');

CREATE FUNCTION llm_model_create(
	name text,
	provider text,
	remote_model text,
	kind text DEFAULT 'base',
	base_model text DEFAULT NULL,
	input_price numeric DEFAULT 0,
	output_price numeric DEFAULT 0,
	cached_input_price numeric DEFAULT NULL,
	params jsonb DEFAULT '{}',
	limits jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	base_kind text;
	bad_key text;
BEGIN
	IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$' THEN
		RAISE EXCEPTION 'invalid model name "%"', coalesce(name, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use up to 128 letters, digits, "_", ".", ":", "/" or "-", starting with a letter or digit.';
	END IF;
	IF NOT EXISTS (SELECT FROM llm.providers p WHERE p.name = llm_model_create.provider) THEN
		RAISE EXCEPTION 'provider "%" does not exist', coalesce(provider, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it first with llm_provider_create(name, base_url).';
	END IF;
	IF remote_model IS NULL OR remote_model = '' THEN
		RAISE EXCEPTION 'remote_model must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'It is the id the provider knows the model by, such as gpt-4o-mini.';
	END IF;
	kind := coalesce(kind, 'base');
	IF kind NOT IN ('base', 'fine_tuned') THEN
		RAISE EXCEPTION 'invalid model kind "%"', kind
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use ''base'' or ''fine_tuned''.';
	END IF;
	IF kind = 'fine_tuned' AND base_model IS NULL THEN
		RAISE EXCEPTION 'a fine-tuned model must name its base_model'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass base_model => the registered model it was trained from.';
	END IF;
	IF kind = 'base' AND base_model IS NOT NULL THEN
		RAISE EXCEPTION 'only a fine-tuned model has a base_model'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass kind => ''fine_tuned''.';
	END IF;
	IF base_model IS NOT NULL THEN
		SELECT m.kind INTO base_kind FROM llm.models m WHERE m.name = llm_model_create.base_model;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'base model "%" does not exist', base_model
				USING ERRCODE = 'undefined_object',
					  HINT = 'Register the base model first.';
		END IF;
	END IF;
	IF coalesce(input_price, 0) < 0 OR coalesce(output_price, 0) < 0 OR cached_input_price < 0 THEN
		RAISE EXCEPTION 'prices must not be negative'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Prices are in USD per million tokens.';
	END IF;
	params := coalesce(params, '{}');
	IF jsonb_typeof(params) <> 'object' THEN
		RAISE EXCEPTION 'params must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example ''{"temperature": 0}''.';
	END IF;
	SELECT k INTO bad_key FROM jsonb_object_keys(params) k
	 WHERE k IN ('model', 'messages', 'stream', 'on_error', 'on_invalid', 'cache', 'cache_ttl') LIMIT 1;
	IF bad_key IS NOT NULL THEN
		RAISE EXCEPTION 'params must not set "%"', bad_key
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'params holds provider parameters such as temperature or max_completion_tokens.';
	END IF;
	limits := coalesce(limits, '{}');
	PERFORM llm._check_model_limits(limits);
	IF EXISTS (SELECT FROM llm.models m WHERE m.name = llm_model_create.name) THEN
		RAISE EXCEPTION 'model "%" already exists', name
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Drop it with llm_model_drop, or register the new version under another name.';
	END IF;

	INSERT INTO llm.models (name, provider, remote_model, kind, base_model,
							input_price, output_price, cached_input_price, params, limits)
	VALUES (name, provider, remote_model, kind, base_model,
			coalesce(input_price, 0), coalesce(output_price, 0), cached_input_price, params,
			limits);
END
$$;
COMMENT ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb) IS
	'register a base or fine-tuned model under a name SQL can use';

CREATE FUNCTION llm_model_set_limits(name text, limits jsonb)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	limits := coalesce(limits, '{}');
	PERFORM llm._check_model_limits(limits);
	UPDATE llm.models m SET limits = llm_model_set_limits.limits
	 WHERE m.name = llm_model_set_limits.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model "%" does not exist', coalesce(name, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'List the models with SELECT name FROM llm.models.';
	END IF;
END
$$;
COMMENT ON FUNCTION llm_model_set_limits(text, jsonb) IS
	'replace a model''s own limits (max_concurrency, requests_per_minute, tokens_per_minute); ''{}'' removes them';

CREATE FUNCTION llm_model_drop(name text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	dependents text;
BEGIN
	IF NOT EXISTS (SELECT FROM llm.models m WHERE m.name = llm_model_drop.name) THEN
		RAISE EXCEPTION 'model "%" does not exist', coalesce(name, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'List the models with SELECT name FROM llm.models.';
	END IF;
	SELECT string_agg(m.name, ', ' ORDER BY m.name) INTO dependents
	  FROM llm.models m WHERE m.base_model = llm_model_drop.name;
	IF dependents IS NOT NULL THEN
		RAISE EXCEPTION 'cannot drop model "%" because fine-tuned models derive from it', name
			USING ERRCODE = 'dependent_objects_still_exist',
				  DETAIL = format('Fine-tuned models: %s.', dependents),
				  HINT = 'Drop the fine-tuned models first.';
	END IF;
	DELETE FROM llm.models m WHERE m.name = llm_model_drop.name;
END
$$;
COMMENT ON FUNCTION llm_model_drop(text) IS 'remove a registered model';

REVOKE ALL ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_model_drop(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_model_set_limits(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_model_set_limits(text, jsonb) TO llm_admin;
GRANT EXECUTE ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb) TO llm_admin;
GRANT EXECUTE ON FUNCTION llm_model_drop(text) TO llm_admin;

-- Backends keep copies of models and providers; a change to either table
-- tells them all to forget their copies.
CREATE FUNCTION llm._catalog_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'llm_catalog_changed'
LANGUAGE C;
REVOKE ALL ON FUNCTION llm._catalog_changed() FROM PUBLIC;
CREATE TRIGGER models_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON llm.models
	FOR EACH STATEMENT EXECUTE FUNCTION llm._catalog_changed();
CREATE TRIGGER providers_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON llm.providers
	FOR EACH STATEMENT EXECUTE FUNCTION llm._catalog_changed();
-- Synchronous calls.

CREATE FUNCTION llm_complete(
	prompt text,
	model text DEFAULT NULL,
	system text DEFAULT NULL,
	options jsonb DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'llm_complete'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_complete(text, text, text, jsonb) IS
	'ask a model: the text of its answer (NULL prompt gives NULL)';

CREATE FUNCTION llm_chat(
	messages jsonb,
	model text DEFAULT NULL,
	options jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_chat'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_chat(jsonb, text, jsonb) IS
	'send a conversation: the normalised result (content, finish_reason, usage, cost_usd, latency_ms, request_id)';

REVOKE ALL ON FUNCTION llm_complete(text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_chat(jsonb, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_complete(text, text, text, jsonb) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_chat(jsonb, text, jsonb) TO llm_user;

CREATE FUNCTION llm_complete_batch(
	prompts text[],
	model text DEFAULT NULL,
	system text DEFAULT NULL,
	options jsonb DEFAULT NULL,
	concurrency integer DEFAULT NULL)
RETURNS TABLE (ord integer, completion text, response jsonb, error text)
AS 'MODULE_PATHNAME', 'llm_complete_batch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_complete_batch(text[], text, text, jsonb, integer) IS
	'many prompts at once (up to concurrency in flight, default 8): one row per prompt, in order, failures as error text';
REVOKE ALL ON FUNCTION llm_complete_batch(text[], text, text, jsonb, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_complete_batch(text[], text, text, jsonb, integer) TO llm_user;
-- The ledger: one row per provider call and per cache hit.  Rows reach this
-- table through llm._persist, called by the background worker in its own
-- transactions (so they survive the caller's ROLLBACK), or by the calling
-- backend itself when no worker serves the database.

CREATE TABLE llm.calls (
	id					bigserial PRIMARY KEY,
	entry_id			text NOT NULL UNIQUE,	-- makes a re-sent entry harmless
	created_at			timestamptz NOT NULL,
	role				name NOT NULL,	-- current_user of the call
	database			name NOT NULL,
	source				text NOT NULL DEFAULT 'sync',
	prompt_name			text,
	prompt_version		integer,
	model				text NOT NULL,
	remote_model		text,
	provider			text,
	cache_hit			boolean NOT NULL DEFAULT false,
	http_status			integer,
	outcome				text NOT NULL CHECK (outcome IN ('ok', 'error')),
	error				text,
	input_tokens		bigint NOT NULL DEFAULT 0,
	cached_input_tokens	bigint NOT NULL DEFAULT 0,
	output_tokens		bigint NOT NULL DEFAULT 0,
	reasoning_tokens	bigint NOT NULL DEFAULT 0,
	cost_usd			numeric NOT NULL DEFAULT 0,
	cost_saved_usd		numeric NOT NULL DEFAULT 0,
	latency_ms			double precision,
	request_id			text,
	fingerprint			text,
	login_role			name NOT NULL	-- session_user of the call (added in 0.2.0)
);
CREATE INDEX calls_created_at_idx ON llm.calls (created_at);
CREATE INDEX calls_role_created_at_idx ON llm.calls (role, created_at);
COMMENT ON COLUMN llm.calls.role IS 'the acting role: current_user where the call was made';
COMMENT ON COLUMN llm.calls.login_role IS 'the login role: session_user of the call (after SET ROLE, the role that switched)';
COMMENT ON TABLE llm.calls IS 'the ledger: every provider call and cache hit, with tokens and cost; survives the caller''s ROLLBACK';
COMMENT ON COLUMN llm.calls.cost_usd IS 'USD at the model''s prices when the call was made; 0 for a cache hit';
COMMENT ON COLUMN llm.calls.cost_saved_usd IS 'for a cache hit: what the call would have cost';
COMMENT ON COLUMN llm.calls.fingerprint IS 'SHA-256 of the canonical request: the cache key';

-- the ledger is kept by pg_dump (money spent is not a cache)
SELECT pg_catalog.pg_extension_config_dump('llm.calls', '');
SELECT pg_catalog.pg_extension_config_dump('llm.calls_id_seq', '');

ALTER TABLE llm.calls ENABLE ROW LEVEL SECURITY;
-- Your own rows: made as your current role, and either from your login or
-- while logged in as that role.  A role switch to a group role (SET ROLE
-- llm_user) therefore shows only what this login did under it; a pooler
-- that logs in once and switches to each tenant shows each tenant its own.
-- (The login is a sub-select: evaluated once per query, not per row.)
CREATE POLICY calls_own_rows ON llm.calls FOR SELECT
	USING ((role = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
GRANT SELECT ON llm.calls TO llm_user;

-- Spend per UTC day, acting role and login role, kept with the ledger so
-- that a budget check reads a month as a few rows per role instead of
-- summing every call.
CREATE TABLE llm.spend_daily (
	day			date NOT NULL,
	role		name NOT NULL,
	cost_usd	numeric NOT NULL DEFAULT 0,
	login_role	name NOT NULL,
	PRIMARY KEY (day, role, login_role)
);
COMMENT ON TABLE llm.spend_daily IS 'spend per UTC day, acting role and login role, maintained from the ledger; read by budget checks';
REVOKE ALL ON llm.spend_daily FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('llm.spend_daily', '');

-- Writes ledger rows, cache entries and cache hit counts, each given as a
-- JSON object with a "kind" of "call" or "cache".  Idempotent: an entry
-- written twice (a worker that died between commit and forgetting it)
-- changes nothing the second time.
CREATE FUNCTION llm._persist(entries jsonb)
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
REVOKE ALL ON FUNCTION llm._persist(jsonb) FROM PUBLIC;

CREATE FUNCTION llm_flush(timeout interval DEFAULT '10 seconds')
RETURNS boolean
AS 'MODULE_PATHNAME', 'llm_flush'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_flush(interval) IS
	'wait until the ledger rows and cache entries this database has produced so far are written; false on timeout';
REVOKE ALL ON FUNCTION llm_flush(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_flush(interval) TO llm_user;
-- The response cache: the normalised result of a deterministic request,
-- keyed by the SHA-256 of the canonical request.

CREATE TABLE llm.cache (
	key			text PRIMARY KEY,
	model		text NOT NULL,
	provider	text,
	remote_model text,
	result		jsonb NOT NULL,
	cost_usd	numeric NOT NULL DEFAULT 0,
	created_at	timestamptz NOT NULL,
	expires_at	timestamptz,
	hit_count	bigint NOT NULL DEFAULT 0,
	last_hit_at	timestamptz
);
CREATE INDEX cache_expires_at_idx ON llm.cache (expires_at);
CREATE INDEX cache_model_idx ON llm.cache (model);
COMMENT ON TABLE llm.cache IS 'cached results of deterministic requests; read through llm_complete and llm_chat, not directly';
-- backends keep recent answers in memory: a deletion makes them forget
CREATE TRIGGER cache_deleted AFTER DELETE OR TRUNCATE ON llm.cache
	FOR EACH STATEMENT EXECUTE FUNCTION llm._catalog_changed();
SELECT pg_catalog.pg_extension_config_dump('llm.cache', '');
-- users reach cached answers only through calls: entries hold others' prompts
REVOKE ALL ON llm.cache FROM PUBLIC;
GRANT SELECT ON llm.cache TO llm_admin;

CREATE FUNCTION llm_cache_purge(model text DEFAULT NULL, older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	purged bigint;
BEGIN
	IF older_than < interval '0' THEN
		RAISE EXCEPTION 'older_than must not be negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	DELETE FROM llm.cache c
	 WHERE (llm_cache_purge.model IS NULL OR c.model = llm_cache_purge.model)
	   AND (older_than IS NULL OR c.created_at < now() - older_than);
	GET DIAGNOSTICS purged = ROW_COUNT;
	RETURN purged;
END
$$;
COMMENT ON FUNCTION llm_cache_purge(text, interval) IS
	'delete cache entries (of one model, older than an age): the number deleted';
REVOKE ALL ON FUNCTION llm_cache_purge(text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_cache_purge(text, interval) TO llm_admin;

-- Expired entries are never served; the worker deletes them in batches.
CREATE FUNCTION llm._cache_expire(batch integer DEFAULT 1000)
RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	WITH gone AS (
		DELETE FROM llm.cache
		 WHERE key IN (SELECT key FROM llm.cache WHERE expires_at < now() LIMIT batch)
		RETURNING 1)
	SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION llm._cache_expire(integer) FROM PUBLIC;
-- Budgets: spending limits in USD per role (or for everyone) per UTC day or
-- month, checked before each provider request.

CREATE TABLE llm.budgets (
	role		name,			-- NULL: the total of every role
	period		text NOT NULL CHECK (period IN ('day', 'month')),
	limit_usd	numeric NOT NULL CHECK (limit_usd >= 0),
	updated_at	timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX budgets_role_period_idx ON llm.budgets ((coalesce(role, '')), period);
COMMENT ON TABLE llm.budgets IS 'spending limits per role (NULL: everyone together) per UTC day or month';
GRANT SELECT ON llm.budgets TO llm_user;
-- backends remember whether any budget exists; a change makes them ask again
CREATE TRIGGER budgets_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON llm.budgets
	FOR EACH STATEMENT EXECUTE FUNCTION llm._catalog_changed();
SELECT pg_catalog.pg_extension_config_dump('llm.budgets', '');

CREATE FUNCTION llm_budget_set(role name, period text, limit_usd numeric)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF period IS NULL OR period NOT IN ('day', 'month') THEN
		RAISE EXCEPTION 'invalid budget period "%"', coalesce(period, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use ''day'' or ''month'' (UTC).';
	END IF;
	IF limit_usd < 0 THEN
		RAISE EXCEPTION 'limit_usd must not be negative'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL to remove the budget.';
	END IF;
	IF llm_budget_set.role IS NOT NULL
	   AND NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = llm_budget_set.role) THEN
		RAISE EXCEPTION 'role "%" does not exist', llm_budget_set.role
			USING ERRCODE = 'undefined_object',
				  HINT = 'Pass NULL for a budget shared by every role.';
	END IF;
	DELETE FROM llm.budgets b
	 WHERE b.role IS NOT DISTINCT FROM llm_budget_set.role AND b.period = llm_budget_set.period;
	IF limit_usd IS NOT NULL THEN
		INSERT INTO llm.budgets (role, period, limit_usd)
		VALUES (llm_budget_set.role, llm_budget_set.period, limit_usd);
	END IF;
END
$$;
COMMENT ON FUNCTION llm_budget_set(name, text, numeric) IS
	'set (or, with a NULL limit, remove) a spending limit for a role, or for everyone with a NULL role';
REVOKE ALL ON FUNCTION llm_budget_set(name, text, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_budget_set(name, text, numeric) TO llm_admin;

-- Spend so far in each budget's current period that applies to a call by
-- acting role who with login role login (all budgets when who is NULL): a
-- budget applies when the acting role is its role or a member of it, or the
-- login role is its role or inherits it (llm._counts_for), so a role switch
-- escapes no budget.  A budget's spend is every call it applies to.  pending_own and pending_all are costs
-- already incurred but not yet written to llm.calls: the caller's own by pair
-- of roles ([{"role", "login", "cost"}]), and everyone's.
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

CREATE FUNCTION llm_budget_status()
RETURNS TABLE (role name, period text, limit_usd numeric, spent_usd numeric,
			   remaining_usd numeric, period_start timestamptz, period_end timestamptz)
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_budget_status() IS
	'the budgets that apply to you (all of them for llm_admin), with the spend so far';

-- The body of llm_budget_status (see llm_gate): who and login are the caller's.
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
REVOKE ALL ON FUNCTION llm_budget_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_budget_status() TO llm_user;
-- Views for analysts.  security_invoker: each reader sees the totals of the
-- ledger rows that row level security lets them see.

CREATE VIEW llm.usage_daily WITH (security_invoker = true) AS
SELECT (c.created_at AT TIME ZONE 'UTC')::date AS day,
	   c.model, c.prompt_name, c.prompt_version, c.role,
	   count(*) AS calls,
	   count(*) FILTER (WHERE c.outcome = 'error') AS errors,
	   count(*) FILTER (WHERE c.cache_hit) AS cache_hits,
	   round(count(*) FILTER (WHERE c.cache_hit)::numeric / count(*), 4) AS hit_rate,
	   sum(c.input_tokens) AS input_tokens,
	   sum(c.cached_input_tokens) AS cached_input_tokens,
	   sum(c.output_tokens) AS output_tokens,
	   sum(c.reasoning_tokens) AS reasoning_tokens,
	   sum(c.cost_usd) AS cost_usd,
	   sum(c.cost_saved_usd) AS cost_saved_usd,
	   percentile_cont(0.5) WITHIN GROUP (ORDER BY c.latency_ms)
		   FILTER (WHERE NOT c.cache_hit) AS latency_p50_ms,
	   percentile_cont(0.95) WITHIN GROUP (ORDER BY c.latency_ms)
		   FILTER (WHERE NOT c.cache_hit) AS latency_p95_ms
  FROM llm.calls c
 GROUP BY 1, 2, 3, 4, 5;
COMMENT ON VIEW llm.usage_daily IS 'per UTC day, model, prompt version and role: calls, errors, cache hits, tokens, cost, latency';

CREATE VIEW llm.usage_by_model WITH (security_invoker = true) AS
SELECT c.model, m.kind, m.base_model, m.provider,
	   count(*) AS calls,
	   count(*) FILTER (WHERE c.outcome = 'error') AS errors,
	   count(*) FILTER (WHERE c.cache_hit) AS cache_hits,
	   sum(c.input_tokens) AS input_tokens,
	   sum(c.cached_input_tokens) AS cached_input_tokens,
	   sum(c.output_tokens) AS output_tokens,
	   sum(c.reasoning_tokens) AS reasoning_tokens,
	   sum(c.cost_usd) AS cost_usd,
	   sum(c.cost_saved_usd) AS cost_saved_usd,
	   min(c.created_at) AS first_call,
	   max(c.created_at) AS last_call
  FROM llm.calls c
  LEFT JOIN llm.models m ON m.name = c.model
 GROUP BY c.model, m.kind, m.base_model, m.provider;
COMMENT ON VIEW llm.usage_by_model IS 'lifetime totals per model, with its base/fine-tuned lineage';

GRANT SELECT ON llm.usage_daily, llm.usage_by_model TO llm_user;
-- Prompts: immutable, versioned templates, and labels that point at them
-- for deploys, rollbacks and A/B splits.

CREATE TABLE llm.prompts (
	name			text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
	version			integer NOT NULL CHECK (version > 0),
	system			text,
	template		text NOT NULL,
	examples		jsonb CHECK (jsonb_typeof(examples) = 'array'),
	response_schema	jsonb CHECK (jsonb_typeof(response_schema) IN ('object', 'boolean')),
	model			text,
	params			jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params) = 'object'),
	note			text,
	author			name NOT NULL DEFAULT current_user,
	created_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (name, version)
);
COMMENT ON TABLE llm.prompts IS 'prompt versions: immutable; new text makes a new version';
GRANT SELECT ON llm.prompts TO llm_user;
SELECT pg_catalog.pg_extension_config_dump('llm.prompts', '');

CREATE FUNCTION llm._prompts_are_immutable()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'prompt versions cannot be changed or deleted'
		USING ERRCODE = 'object_not_in_prerequisite_state',
			  DETAIL = 'A version, once created, is kept exactly as it was so that every recorded call can be traced to its text.',
			  HINT = 'Create a new version with llm_prompt_create, and move a label to it with llm_prompt_deploy.';
END
$$;
CREATE TRIGGER prompts_immutable BEFORE UPDATE OR DELETE ON llm.prompts
	FOR EACH ROW EXECUTE FUNCTION llm._prompts_are_immutable();
CREATE TRIGGER prompts_not_truncated BEFORE TRUNCATE ON llm.prompts
	FOR EACH STATEMENT EXECUTE FUNCTION llm._prompts_are_immutable();

-- A label points at one variant, or at several with weights (an A/B split).
-- variants: [{"version": 7, "model": null, "weight": 1}, ...]
CREATE TABLE llm.prompt_labels (
	name		text NOT NULL,
	label		text NOT NULL CHECK (label ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
	variants	jsonb NOT NULL CHECK (jsonb_typeof(variants) = 'array' AND jsonb_array_length(variants) > 0),
	updated_by	name NOT NULL DEFAULT current_user,
	updated_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (name, label)
);
COMMENT ON TABLE llm.prompt_labels IS 'where each label of a prompt points: one variant, or weighted variants for an A/B split';
GRANT SELECT ON llm.prompt_labels TO llm_user;
SELECT pg_catalog.pg_extension_config_dump('llm.prompt_labels', '');

CREATE TABLE llm.prompt_label_history (
	id				bigserial PRIMARY KEY,
	name			text NOT NULL,
	label			text NOT NULL,
	action			text NOT NULL CHECK (action IN ('deploy', 'split', 'rollback')),
	from_variants	jsonb,
	to_variants		jsonb NOT NULL,
	rolled_back		boolean NOT NULL DEFAULT false,
	changed_by		name NOT NULL DEFAULT current_user,
	changed_at		timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON llm.prompt_label_history (name, label, id);
COMMENT ON TABLE llm.prompt_label_history IS 'every move of every label: who, when, from, to';
GRANT SELECT ON llm.prompt_label_history TO llm_user;
SELECT pg_catalog.pg_extension_config_dump('llm.prompt_label_history', '');
SELECT pg_catalog.pg_extension_config_dump('llm.prompt_label_history_id_seq', '');

-- A prompt name belongs to the role that created its first version.  Only
-- its owner (or a member of the owning role), the roles it grants, and
-- llm_admin add versions: nobody else can change what the owner's calls run.
CREATE TABLE llm.prompt_owners (
	name		text PRIMARY KEY,
	owner		name NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE llm.prompt_owners IS 'who owns each prompt name: the creator of its first version';
GRANT SELECT ON llm.prompt_owners TO llm_user;
SELECT pg_catalog.pg_extension_config_dump('llm.prompt_owners', '');

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

-- Parses a template; raises 42601 with the position of the first error.
CREATE FUNCTION llm._template_check(template text)
RETURNS void
AS 'MODULE_PATHNAME', 'llm_template_check'
LANGUAGE C IMMUTABLE STRICT;

-- Checks a response schema is one llmext can enforce.
CREATE FUNCTION llm._schema_check(schema jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'llm_schema_check'
LANGUAGE C IMMUTABLE STRICT;

-- The user-facing functions below that must know their caller are gates
-- (llm_gate in caller.c): each calls its body, llm._<name without llm_>,
-- with the acting role and the login role first.  No role may execute a
-- body: the roles it receives cannot be forged.
CREATE FUNCTION llm_prompt_create(
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

-- Whether role who may add versions to prompt name (which has an owner).
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

-- The owner of prompt name, for a change of its grants by caller.
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

-- The variants to point a label at, checked.
CREATE FUNCTION llm._prompt_variants(name text, versions integer[], weights numeric[], models text[])
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	missing integer;
	unknown_model text;
BEGIN
	IF NOT EXISTS (SELECT FROM llm.prompts p WHERE p.name = _prompt_variants.name) THEN
		RAISE EXCEPTION 'prompt "%" does not exist', coalesce(name, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it with llm_prompt_create.';
	END IF;
	IF versions IS NULL OR cardinality(versions) = 0 THEN
		RAISE EXCEPTION 'give at least one version'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF weights IS NULL OR cardinality(weights) <> cardinality(versions) THEN
		RAISE EXCEPTION 'give one weight per version'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('%s versions and %s weights.', cardinality(versions), coalesce(cardinality(weights), 0));
	END IF;
	IF models IS NOT NULL AND cardinality(models) <> cardinality(versions) THEN
		RAISE EXCEPTION 'give one model (or NULL) per version'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('%s versions and %s models.', cardinality(versions), cardinality(models));
	END IF;
	IF EXISTS (SELECT FROM unnest(weights) w WHERE w IS NULL OR w < 0) THEN
		RAISE EXCEPTION 'weights must not be negative or NULL'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF (SELECT sum(w) FROM unnest(weights) w) <= 0 THEN
		RAISE EXCEPTION 'at least one weight must be positive'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT v INTO missing FROM unnest(versions) v
	 WHERE v IS NULL OR NOT EXISTS (SELECT FROM llm.prompts p WHERE p.name = _prompt_variants.name AND p.version = v)
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'prompt "%" has no version %', name, coalesce(missing::text, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = format('List them with SELECT version FROM llm.prompts WHERE name = %L.', name);
	END IF;
	SELECT m INTO unknown_model FROM unnest(models) m
	 WHERE m IS NOT NULL AND NOT EXISTS (SELECT FROM llm.models x WHERE x.name = m) LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'model "%" does not exist', unknown_model
			USING ERRCODE = 'undefined_object';
	END IF;
	RETURN (SELECT jsonb_agg(jsonb_build_object('version', v.version, 'model', models[v.i], 'weight', weights[v.i])
							 ORDER BY v.i)
			  FROM unnest(versions) WITH ORDINALITY AS v(version, i));
END
$$;

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

CREATE FUNCTION llm_prompt_deploy(name text, version integer, label text DEFAULT 'production',
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
COMMENT ON FUNCTION llm_prompt_deploy(text, integer, text, text) IS
	'point a label (default production) at one version, optionally with a model of its own';

CREATE FUNCTION llm_prompt_split(name text, label text, versions integer[], weights numeric[],
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
COMMENT ON FUNCTION llm_prompt_split(text, text, integer[], numeric[], text[]) IS
	'split a label''s traffic between variants (version, optional model) by weight';

CREATE FUNCTION llm_prompt_rollback(name text, label text DEFAULT 'production')
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
COMMENT ON FUNCTION llm_prompt_rollback(text, text) IS
	'move a label back to where it pointed before its last deploy or split';

-- Which variant serves a call: an explicit version, else the label (default
-- production) with a sticky choice by ab_key or a random one, else the
-- latest version.
CREATE FUNCTION llm._prompt_choose(name text, version integer, label text, ab_key text,
								   OUT chosen_version integer, OUT chosen_model text,
								   OUT chosen_label text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	variants jsonb;
	point numeric;
	total numeric;
	running numeric := 0;
	variant jsonb;
BEGIN
	IF NOT EXISTS (SELECT FROM llm.prompts p WHERE p.name = _prompt_choose.name) THEN
		RAISE EXCEPTION 'prompt "%" does not exist', coalesce(name, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it with llm_prompt_create, or list the prompts with SELECT DISTINCT name FROM llm.prompts.';
	END IF;
	IF version IS NOT NULL AND label IS NOT NULL THEN
		RAISE EXCEPTION 'give a version or a label, not both'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF version IS NOT NULL THEN
		IF NOT EXISTS (SELECT FROM llm.prompts p WHERE p.name = _prompt_choose.name AND p.version = _prompt_choose.version) THEN
			RAISE EXCEPTION 'prompt "%" has no version %', name, version
				USING ERRCODE = 'undefined_object',
					  HINT = format('List them with SELECT version FROM llm.prompts WHERE name = %L.', name);
		END IF;
		chosen_version := version;
		RETURN;
	END IF;
	SELECT l.variants INTO variants FROM llm.prompt_labels l
	 WHERE l.name = _prompt_choose.name AND l.label = coalesce(_prompt_choose.label, 'production');
	IF NOT FOUND THEN
		IF label IS NOT NULL THEN
			RAISE EXCEPTION 'prompt "%" has no label "%"', name, label
				USING ERRCODE = 'undefined_object',
					  HINT = format('List them with SELECT label FROM llm.prompt_labels WHERE name = %L.', name);
		END IF;
		SELECT max(p.version) INTO chosen_version FROM llm.prompts p WHERE p.name = _prompt_choose.name;
		RETURN;
	END IF;
	chosen_label := coalesce(label, 'production');
	SELECT sum((v ->> 'weight')::numeric) INTO total FROM jsonb_array_elements(variants) v;
	IF ab_key IS NULL THEN
		point := random()::numeric * total;
	ELSE
		-- sticky: the same key lands on the same variant of this split
		point := ('x' || left(encode(sha256(convert_to(name || '/' || chosen_label || '/' || ab_key, 'UTF8')), 'hex'), 15))::bit(60)::bigint
				 / 1152921504606846976.0 * total;
	END IF;
	FOR variant IN SELECT * FROM jsonb_array_elements(variants) LOOP
		running := running + (variant ->> 'weight')::numeric;
		IF point < running OR running >= total THEN
			chosen_version := (variant ->> 'version')::integer;
			chosen_model := variant ->> 'model';
			RETURN;
		END IF;
	END LOOP;
END
$$;

REVOKE ALL ON FUNCTION llm._template_check(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm._schema_check(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm._prompt_variants(text, integer[], numeric[], text[]) FROM PUBLIC;
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
REVOKE ALL ON FUNCTION llm_prompt_create(text, text, text, jsonb, jsonb, text, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_prompt_deploy(text, integer, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_prompt_split(text, text, integer[], numeric[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_prompt_rollback(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm._prompt_choose(text, integer, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._prompt_choose(text, integer, text, text) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_prompt_create(text, text, text, jsonb, jsonb, text, jsonb, text) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_prompt_deploy(text, integer, text, text) TO llm_admin;
GRANT EXECUTE ON FUNCTION llm_prompt_split(text, text, integer[], numeric[], text[]) TO llm_admin;
GRANT EXECUTE ON FUNCTION llm_prompt_rollback(text, text) TO llm_admin;

-- Stored prompts, rendered and called.
CREATE FUNCTION llm_render(name text, vars jsonb DEFAULT '{}', version integer DEFAULT NULL,
						   label text DEFAULT NULL, ab_key text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_render'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_render(text, jsonb, integer, text, text) IS
	'the exact request a stored prompt would send: messages, model, parameters, chosen version';

CREATE FUNCTION llm_complete_prompt(name text, vars jsonb DEFAULT '{}', model text DEFAULT NULL,
									version integer DEFAULT NULL, label text DEFAULT NULL,
									ab_key text DEFAULT NULL, options jsonb DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'llm_complete_prompt'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_complete_prompt(text, jsonb, text, integer, text, text, jsonb) IS
	'call a stored prompt: the answer''s text';

CREATE FUNCTION llm_complete_json(name text, vars jsonb DEFAULT '{}', model text DEFAULT NULL,
								  version integer DEFAULT NULL, label text DEFAULT NULL,
								  ab_key text DEFAULT NULL, options jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_complete_json'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_complete_json(text, jsonb, text, integer, text, text, jsonb) IS
	'call a stored prompt and parse its answer as JSON, checked against the prompt''s response schema';

REVOKE ALL ON FUNCTION llm_render(text, jsonb, integer, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_complete_prompt(text, jsonb, text, integer, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_complete_json(text, jsonb, text, integer, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_render(text, jsonb, integer, text, text) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_complete_prompt(text, jsonb, text, integer, text, text, jsonb) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_complete_json(text, jsonb, text, integer, text, text, jsonb) TO llm_user;
-- The asynchronous queue: requests run by the background worker of the
-- database, with no session waiting on them.

CREATE TABLE llm.requests (
	id				bigserial PRIMARY KEY,
	tag				text,
	submitted_by	name NOT NULL,	-- the acting role (current_user) of the submitter
	state			text NOT NULL DEFAULT 'queued'
					CHECK (state IN ('queued', 'running', 'done', 'error', 'cancelled')),
	priority		integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
	attempts		integer NOT NULL DEFAULT 0,
	run_after		timestamptz NOT NULL DEFAULT now(),
	model			text,
	messages		jsonb NOT NULL,
	options			jsonb,
	prompt_name		text,
	prompt_version	integer,
	callback		regprocedure,
	completion		text,
	response		jsonb,
	error			text,
	callback_error	text,
	cost_usd		numeric,
	created_at		timestamptz NOT NULL DEFAULT now(),
	started_at		timestamptz,
	finished_at		timestamptz,
	login_role		name NOT NULL	-- the submitter's login role (added in 0.2.0)
);
CREATE INDEX requests_due_idx ON llm.requests (priority DESC, id) WHERE state = 'queued';
-- every request is updated two or three times within seconds: autovacuum must
-- keep up, or the claim query wades through dead index entries
ALTER TABLE llm.requests SET (autovacuum_vacuum_scale_factor = 0.01,
							  autovacuum_vacuum_insert_scale_factor = 0.01,
							  autovacuum_vacuum_cost_delay = 0,
							  autovacuum_analyze_scale_factor = 0.02);
CREATE INDEX requests_tag_idx ON llm.requests (tag, state);
COMMENT ON TABLE llm.requests IS 'the asynchronous queue and its results';

SELECT pg_catalog.pg_extension_config_dump('llm.requests', '');
SELECT pg_catalog.pg_extension_config_dump('llm.requests_id_seq', '');

ALTER TABLE llm.requests ENABLE ROW LEVEL SECURITY;
-- The same rule as the ledger's (llm.calls): rows made as your current role,
-- from your login or while logged in as that role.
CREATE POLICY requests_own_rows ON llm.requests FOR SELECT
	USING ((submitted_by = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
GRANT SELECT ON llm.requests TO llm_user;

-- Tells the worker, at commit, that work is waiting.
CREATE FUNCTION llm._wake_at_commit()
RETURNS void
AS 'MODULE_PATHNAME', 'llm_wake_at_commit'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION llm._wake_at_commit() FROM PUBLIC;

-- Queues a request for caller (acting role) and login; the one writer of
-- llm.requests rows.  Prompt attribution comes only from llm._submit_prompt.
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

CREATE FUNCTION llm_submit(prompt text, model text DEFAULT NULL, system text DEFAULT NULL,
						   options jsonb DEFAULT NULL, tag text DEFAULT NULL,
						   priority integer DEFAULT 0, callback regprocedure DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_submit(text, text, text, jsonb, text, integer, regprocedure) IS
	'queue a call for the background worker: the request id';

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

CREATE FUNCTION llm_submit_prompt(name text, vars jsonb DEFAULT '{}', model text DEFAULT NULL,
								  version integer DEFAULT NULL, label text DEFAULT NULL,
								  ab_key text DEFAULT NULL, options jsonb DEFAULT NULL,
								  tag text DEFAULT NULL, priority integer DEFAULT 0,
								  callback regprocedure DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_submit_prompt(text, jsonb, text, integer, text, text, jsonb, text, integer, regprocedure) IS
	'queue a call of a stored prompt (rendered now) for the background worker: the request id';

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

CREATE FUNCTION llm_result(id bigint)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT jsonb_build_object('id', r.id, 'state', r.state, 'tag', r.tag,
							  'completion', r.completion, 'response', r.response,
							  'error', r.error, 'callback_error', r.callback_error,
							  'attempts', r.attempts, 'cost_usd', r.cost_usd,
							  'created_at', r.created_at, 'finished_at', r.finished_at)
	  FROM llm.requests r WHERE r.id = llm_result.id
$$;
COMMENT ON FUNCTION llm_result(bigint) IS 'a queued request''s state and result (NULL if it is not yours)';

CREATE FUNCTION llm_wait(id bigint, timeout interval DEFAULT '30 seconds')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	give_up timestamptz := clock_timestamp() + coalesce(timeout, '30 seconds');
	result jsonb;
BEGIN
	LOOP
		result := @extschema@.llm_result(id);
		IF result IS NULL OR result ->> 'state' IN ('done', 'error', 'cancelled')
		   OR clock_timestamp() >= give_up THEN
			RETURN result;
		END IF;
		PERFORM pg_sleep(0.02);
	END LOOP;
END
$$;
COMMENT ON FUNCTION llm_wait(bigint, interval) IS
	'wait until a queued request has finished (or the timeout passes): its result';

CREATE FUNCTION llm_wait_batch(tag text, timeout interval DEFAULT '5 minutes')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	give_up timestamptz := clock_timestamp() + coalesce(timeout, '5 minutes');
	summary jsonb;
BEGIN
	LOOP
		SELECT jsonb_build_object('tag', llm_wait_batch.tag, 'total', count(*),
								  'queued', count(*) FILTER (WHERE state = 'queued'),
								  'running', count(*) FILTER (WHERE state = 'running'),
								  'done', count(*) FILTER (WHERE state = 'done'),
								  'error', count(*) FILTER (WHERE state = 'error'),
								  'cancelled', count(*) FILTER (WHERE state = 'cancelled'))
		  INTO summary
		  FROM llm.requests r WHERE r.tag = llm_wait_batch.tag;
		IF (summary ->> 'queued')::int + (summary ->> 'running')::int = 0
		   OR clock_timestamp() >= give_up THEN
			RETURN summary;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;
COMMENT ON FUNCTION llm_wait_batch(text, interval) IS
	'wait until every request of a batch (tag) has finished, or the timeout passes: the counts';

-- Cancels the unfinished requests (by id, or of a batch) that caller may
-- see (the rule of requests_own_rows, for caller and login): how many.
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

CREATE FUNCTION llm_cancel(id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_cancel(bigint) IS 'cancel a queued or running request of yours: whether it was';

CREATE FUNCTION llm._cancel(caller name, login name, id bigint)
RETURNS boolean
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT llm._cancel_rows(caller, login, ARRAY[id], NULL) = 1 $$;
REVOKE ALL ON FUNCTION llm._cancel(name, name, bigint) FROM PUBLIC;

CREATE FUNCTION llm_cancel_batch(tag text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_cancel_batch(text) IS 'cancel every unfinished request of a batch: how many';

CREATE FUNCTION llm._cancel_batch(caller name, login name, tag text)
RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT llm._cancel_rows(caller, login, NULL, tag) $$;
REVOKE ALL ON FUNCTION llm._cancel_batch(name, name, text) FROM PUBLIC;

CREATE VIEW llm.batches WITH (security_invoker = true) AS
SELECT r.tag,
	   count(*) AS total,
	   count(*) FILTER (WHERE r.state = 'queued') AS queued,
	   count(*) FILTER (WHERE r.state = 'running') AS running,
	   count(*) FILTER (WHERE r.state = 'done') AS done,
	   count(*) FILTER (WHERE r.state = 'error') AS error,
	   count(*) FILTER (WHERE r.state = 'cancelled') AS cancelled,
	   sum((r.response -> 'usage' ->> 'input_tokens')::bigint
		   + (r.response -> 'usage' ->> 'output_tokens')::bigint) AS tokens,
	   sum(r.cost_usd) AS cost_usd,
	   min(r.started_at) AS started,
	   CASE WHEN count(*) FILTER (WHERE r.state IN ('queued', 'running')) = 0
			THEN max(r.finished_at) END AS finished,
	   round(count(*) FILTER (WHERE r.state IN ('done', 'error'))
			 / nullif(extract(epoch FROM coalesce(max(r.finished_at), now()) - min(r.started_at)), 0), 2)
		   AS per_second,
	   CASE WHEN count(*) FILTER (WHERE r.state IN ('done', 'error')) > 0
				 AND count(*) FILTER (WHERE r.state IN ('queued', 'running')) > 0
			THEN now() + (now() - min(r.started_at))
					   * count(*) FILTER (WHERE r.state IN ('queued', 'running'))
					   / count(*) FILTER (WHERE r.state IN ('done', 'error')) END AS eta
  FROM llm.requests r
 GROUP BY r.tag;
COMMENT ON VIEW llm.batches IS 'progress of each batch (tag): counts by state, tokens, cost, rate, ETA';
GRANT SELECT ON llm.batches TO llm_user;

REVOKE ALL ON FUNCTION llm_submit(text, text, text, jsonb, text, integer, regprocedure) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_submit_prompt(text, jsonb, text, integer, text, text, jsonb, text, integer, regprocedure) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_result(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_wait(bigint, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_wait_batch(text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_cancel(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_cancel_batch(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_submit(text, text, text, jsonb, text, integer, regprocedure) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_submit_prompt(text, jsonb, text, integer, text, text, jsonb, text, integer, regprocedure) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_result(bigint) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_wait(bigint, interval) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_wait_batch(text, interval) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_cancel(bigint) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_cancel_batch(text) TO llm_user;

-- Worker side: claim due requests, finish them, recover after a crash.
-- plpgsql keeps the plans: the worker claims many times a second.  The one
-- plan that stays cheap with a long queue walks requests_due_idx in order;
-- statistics lag behind a queue that churns, so no other is allowed.
-- A claim from the start walks past the index entries of every row claimed
-- since autovacuum last cleaned the index, so the worker passes where its
-- last claim stopped (after_priority, after_id), and claims from the start
-- now and then (NULL after_id) to find what came back behind that point.
CREATE FUNCTION llm._claim(batch integer, after_priority integer DEFAULT NULL,
						   after_id bigint DEFAULT NULL)
RETURNS SETOF llm.requests
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_sort = off
SET enable_bitmapscan = off
AS $$
DECLARE
	ids bigint[];
BEGIN
	IF after_id IS NULL THEN
		ids := ARRAY(SELECT q.id FROM llm.requests q
					  WHERE q.state = 'queued' AND q.run_after <= now()
					  ORDER BY q.priority DESC, q.id LIMIT batch FOR UPDATE SKIP LOCKED);
	ELSE
		-- the rest of the last claim's priority, then the lower priorities
		ids := ARRAY(SELECT q.id FROM llm.requests q
					  WHERE q.state = 'queued' AND q.run_after <= now()
						AND q.priority = after_priority AND q.id > after_id
					  ORDER BY q.priority DESC, q.id LIMIT batch FOR UPDATE SKIP LOCKED);
		IF cardinality(ids) < batch THEN
			ids := ids || ARRAY(SELECT q.id FROM llm.requests q
								 WHERE q.state = 'queued' AND q.run_after <= now()
								   AND q.priority < after_priority
								 ORDER BY q.priority DESC, q.id
								 LIMIT batch - cardinality(ids) FOR UPDATE SKIP LOCKED);
		END IF;
	END IF;
	RETURN QUERY
	UPDATE llm.requests r
	   SET state = 'running', attempts = r.attempts + 1, started_at = coalesce(r.started_at, now())
	 WHERE r.id = ANY (ids)
	RETURNING r.*;
END
$$;
REVOKE ALL ON FUNCTION llm._claim(integer, integer, bigint) FROM PUBLIC;

-- Announces on channel llm_batch_done each of the batches (tags) that has
-- nothing left queued or running, except busy ones.
CREATE FUNCTION llm._announce_finished(tags text[], busy_tags text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	finished_tag text;
BEGIN
	FOREACH finished_tag IN ARRAY coalesce(tags, '{}') LOOP
		CONTINUE WHEN finished_tag IS NULL OR finished_tag = ANY (busy_tags);
		IF NOT EXISTS (SELECT FROM llm.requests q
						WHERE q.tag = finished_tag AND q.state IN ('queued', 'running')) THEN
			PERFORM pg_notify('llm_batch_done', finished_tag);
		END IF;
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION llm._announce_finished(text[], text[]) FROM PUBLIC;

-- Written only while the row is still running: a cancel in between wins,
-- and a result is never written twice.  The last request of a batch to
-- finish announces it on channel llm_batch_done, with the tag as payload.
CREATE FUNCTION llm._finish(id bigint, state text, completion text, response jsonb, error text,
							cost_usd numeric)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	finished_tag text;
BEGIN
	UPDATE llm.requests r
	   SET state = _finish.state, completion = _finish.completion, response = _finish.response,
		   error = _finish.error, cost_usd = _finish.cost_usd, finished_at = now()
	 WHERE r.id = _finish.id AND r.state = 'running'
	RETURNING r.tag INTO finished_tag;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	PERFORM llm._announce_finished(ARRAY[finished_tag]);
	RETURN true;
END
$$;
REVOKE ALL ON FUNCTION llm._finish(bigint, text, text, jsonb, text, numeric) FROM PUBLIC;

-- The same for many requests at once: the ids written.  busy_tags are
-- batches the worker knows to have other requests in flight, so they
-- cannot have finished: no need to look.  Row by row through the primary
-- key: a scan of every running row costs more than the few written.
CREATE FUNCTION llm._finish_many(results jsonb, busy_tags text[] DEFAULT '{}')
RETURNS SETOF bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_bitmapscan = off
AS $$
DECLARE
	written bigint[];
	tags text[];
BEGIN
	WITH done AS (
		UPDATE llm.requests q
		   SET state = r.state, completion = r.completion, response = r.response,
			   error = r.error, cost_usd = r.cost_usd, finished_at = now()
		  FROM jsonb_to_recordset(results)
			   AS r(id bigint, state text, completion text, response jsonb, error text, cost_usd numeric)
		 WHERE q.id = r.id AND q.state = 'running'
		RETURNING q.id, q.tag)
	SELECT array_agg(id), array_agg(DISTINCT tag) FILTER (WHERE tag IS NOT NULL)
	  INTO written, tags
	  FROM done;
	PERFORM llm._announce_finished(tags, busy_tags);
	RETURN QUERY SELECT unnest(coalesce(written, '{}'));
END
$$;
REVOKE ALL ON FUNCTION llm._finish_many(jsonb, text[]) FROM PUBLIC;

CREATE FUNCTION llm._retry_later(id bigint, delay_ms double precision, error text)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	WITH again AS (
		UPDATE llm.requests r
		   SET state = 'queued', run_after = now() + delay_ms * interval '1 millisecond',
			   error = _retry_later.error
		 WHERE r.id = _retry_later.id AND r.state = 'running'
		RETURNING 1)
	SELECT count(*) = 1 FROM again
$$;
REVOKE ALL ON FUNCTION llm._retry_later(bigint, double precision, text) FROM PUBLIC;

-- A worker that starts finds the rows its predecessor left running: their
-- answers were lost with it, as in a dropped connection, so the attempt
-- counts.  A row with attempts left goes back to the queue; one that has
-- used up its provider's max_attempts (default 3) ends in error, so a
-- crash never makes a request run more often than its limit.
CREATE FUNCTION llm._recover()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
	ended text[];
BEGIN
	WITH left_running AS (
		SELECT r.id,
			   r.attempts >= coalesce((p.options ->> 'max_attempts')::integer, 3) AS used_up
		  FROM llm.requests r
		  LEFT JOIN llm.models m ON m.name = r.model
		  LEFT JOIN llm.providers p ON p.name = m.provider
		 WHERE r.state = 'running'
		   FOR UPDATE OF r),
	back AS (
		UPDATE llm.requests r
		   SET state = CASE WHEN l.used_up THEN 'error' ELSE 'queued' END,
			   error = 'interrupted: the worker stopped while the request was in flight'
					   || CASE WHEN l.used_up THEN ', and no attempts are left' ELSE '' END,
			   finished_at = CASE WHEN l.used_up THEN now() END
		  FROM left_running l
		 WHERE r.id = l.id
		RETURNING r.tag, l.used_up)
	SELECT count(*), array_agg(DISTINCT tag) FILTER (WHERE used_up AND tag IS NOT NULL)
	  INTO n, ended
	  FROM back;
	PERFORM llm._announce_finished(ended);
	RETURN n;
END
$$;
REVOKE ALL ON FUNCTION llm._recover() FROM PUBLIC;

-- Held back by the provider's rate limits: back to the queue, the attempt
-- not counted.
CREATE FUNCTION llm._defer(id bigint, delay_ms double precision)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	UPDATE llm.requests r
	   SET state = 'queued', attempts = r.attempts - 1,
		   run_after = now() + delay_ms * interval '1 millisecond'
	 WHERE r.id = _defer.id AND r.state = 'running'
$$;
REVOKE ALL ON FUNCTION llm._defer(bigint, double precision) FROM PUBLIC;

-- In-statement batches of a stored prompt (the plain one is in 30_calls.sql).
CREATE FUNCTION llm_complete_prompt_batch(
	name text,
	vars jsonb[],
	model text DEFAULT NULL,
	version integer DEFAULT NULL,
	label text DEFAULT NULL,
	options jsonb DEFAULT NULL,
	concurrency integer DEFAULT NULL)
RETURNS TABLE (ord integer, completion text, response jsonb, error text)
AS 'MODULE_PATHNAME', 'llm_complete_prompt_batch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_complete_prompt_batch(text, jsonb[], text, integer, text, jsonb, integer) IS
	'a stored prompt over many vars at once: one row per element, in order, failures (missing variables included) as error text';
REVOKE ALL ON FUNCTION llm_complete_prompt_batch(text, jsonb[], text, integer, text, jsonb, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_complete_prompt_batch(text, jsonb[], text, integer, text, jsonb, integer) TO llm_user;
