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
	kind		text NOT NULL DEFAULT 'openai'
				CONSTRAINT providers_kind_check CHECK (kind IN ('openai', 'anthropic')),
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
	IF kind NOT IN ('openai', 'anthropic') THEN
		RAISE EXCEPTION 'provider kind "%" is not supported', kind
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Use kind ''anthropic'' for the Anthropic Messages API, and kind ''openai'' for OpenAI and every OpenAI-compatible server (Azure OpenAI, vLLM, Ollama, llama.cpp).';
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
	'register an LLM API endpoint (kind openai: any OpenAI-compatible server; kind anthropic: the Anthropic Messages API)';

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
	-- added in 0.3.0 (last, so that an upgraded table equals a fresh one)
	training_price		numeric CHECK (training_price >= 0),
	tuned_input_price	numeric CHECK (tuned_input_price >= 0),
	tuned_cached_input_price numeric CHECK (tuned_cached_input_price >= 0),
	tuned_output_price	numeric CHECK (tuned_output_price >= 0),
	training_set		text,
	training_version	integer,
	prompt_name			text,
	prompt_version		integer,
	finetune_job		bigint,
	-- added in 0.4.0
	cache_write_price	numeric CHECK (cache_write_price >= 0),
	use					text NOT NULL DEFAULT 'chat' CHECK (use IN ('chat', 'embedding')),
	CHECK ((kind = 'fine_tuned') = (base_model IS NOT NULL)),
	CHECK (base_model IS DISTINCT FROM name),
	CHECK ((training_set IS NULL) = (training_version IS NULL))
);
CREATE INDEX ON llm.models (base_model);
COMMENT ON TABLE llm.models IS 'models SQL can call: base and fine-tuned, with prices in USD per million tokens';
COMMENT ON COLUMN llm.models.cached_input_price IS 'price of cached input tokens; NULL means the input price';
COMMENT ON COLUMN llm.models.cache_write_price IS 'price of input tokens written to the provider''s prompt cache (Anthropic); NULL means the input price';
COMMENT ON COLUMN llm.models.params IS 'default provider parameters, overridden by a call''s options';
COMMENT ON COLUMN llm.models.training_price IS 'USD per million trained tokens for fine-tuning this model (NULL: not known)';
COMMENT ON COLUMN llm.models.tuned_input_price IS 'input price of models tuned from this one; NULL means this model''s own';
COMMENT ON COLUMN llm.models.tuned_cached_input_price IS 'cached input price of models tuned from this one; NULL means the tuned input price';
COMMENT ON COLUMN llm.models.tuned_output_price IS 'output price of models tuned from this one; NULL means this model''s own';
COMMENT ON COLUMN llm.models.training_set IS 'lineage of a fine-tuned model: the training set (with training_version) it was trained on';
COMMENT ON COLUMN llm.models.prompt_name IS 'lineage: the stored prompt (with prompt_version) its training set was rendered through';
COMMENT ON COLUMN llm.models.finetune_job IS 'lineage: the llm.finetune_jobs row that trained it (NULL when trained elsewhere)';
COMMENT ON COLUMN llm.models.limits IS 'this model''s own max_concurrency, requests_per_minute and tokens_per_minute, on top of its provider''s; max_training_example_tokens bounds the examples it is fine-tuned on; max_batch_inputs (default 100) the inputs of one embedding request';
COMMENT ON COLUMN llm.models.use IS 'what the model is called for: chat (llm_complete, llm_chat, ...) or embedding (llm_embed, llm_embed_batch); added in 0.4.0';

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
		IF k NOT IN ('max_concurrency', 'requests_per_minute', 'tokens_per_minute',
					 'max_training_example_tokens', 'max_batch_inputs') THEN
			RAISE EXCEPTION 'unknown model limit "%"', k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Known limits: max_concurrency, requests_per_minute, tokens_per_minute, max_training_example_tokens, max_batch_inputs.';
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
	limits jsonb DEFAULT '{}',
	training_price numeric DEFAULT NULL,
	tuned_input_price numeric DEFAULT NULL,
	tuned_cached_input_price numeric DEFAULT NULL,
	tuned_output_price numeric DEFAULT NULL,
	training_set text DEFAULT NULL,
	training_version integer DEFAULT NULL,
	cache_write_price numeric DEFAULT NULL,
	use text DEFAULT 'chat')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	base_kind text;
	bad_key text;
	set_prompt text;
	set_prompt_version integer;
	requested_version integer := training_version;
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
	IF coalesce(input_price, 0) < 0 OR coalesce(output_price, 0) < 0 OR cached_input_price < 0 OR cache_write_price < 0
	   OR training_price < 0 OR tuned_input_price < 0 OR tuned_cached_input_price < 0 OR tuned_output_price < 0 THEN
		RAISE EXCEPTION 'prices must not be negative'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Prices are in USD per million tokens.';
	END IF;
	use := coalesce(use, 'chat');
	IF use NOT IN ('chat', 'embedding') THEN
		RAISE EXCEPTION 'invalid model use "%"', use
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use ''chat'' (the default) or ''embedding''.';
	END IF;
	IF base_model IS NOT NULL AND use IS DISTINCT FROM
	   (SELECT m.use FROM llm.models m WHERE m.name = llm_model_create.base_model) THEN
		RAISE EXCEPTION 'a fine-tuned model has the use of its base model'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass use => the base model''s use.';
	END IF;
	params := coalesce(params, '{}');
	IF jsonb_typeof(params) <> 'object' THEN
		RAISE EXCEPTION 'params must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example ''{"temperature": 0}''.';
	END IF;
	SELECT k INTO bad_key FROM jsonb_object_keys(params) k
	 WHERE k IN ('model', 'messages', 'input', 'stream', 'on_error', 'on_invalid', 'cache', 'cache_ttl') LIMIT 1;
	IF bad_key IS NOT NULL THEN
		RAISE EXCEPTION 'params must not set "%"', bad_key
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'params holds provider parameters such as temperature or max_completion_tokens.';
	END IF;
	limits := coalesce(limits, '{}');
	PERFORM llm._check_model_limits(limits);
	IF training_version IS NOT NULL AND training_set IS NULL THEN
		RAISE EXCEPTION 'a training_version needs a training_set'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF training_set IS NOT NULL THEN
		-- lineage of a model trained elsewhere: the set (its latest version
		-- when none is named) and the prompt it was rendered through
		IF kind <> 'fine_tuned' THEN
			RAISE EXCEPTION 'only a fine-tuned model has a training set'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Pass kind => ''fine_tuned'' and its base_model.';
		END IF;
		SELECT s.version, s.prompt_name, s.prompt_version INTO training_version, set_prompt, set_prompt_version
		  FROM llm.training_sets s
		 WHERE s.name = llm_model_create.training_set
		   AND (requested_version IS NULL OR s.version = requested_version)
		 ORDER BY s.version DESC LIMIT 1;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'training set "%" has no version %', training_set,
							coalesce(requested_version::text, 'at all')
				USING ERRCODE = 'undefined_object',
					  HINT = 'SELECT name, version FROM llm.training_sets lists them.';
		END IF;
	END IF;
	IF EXISTS (SELECT FROM llm.models m WHERE m.name = llm_model_create.name) THEN
		RAISE EXCEPTION 'model "%" already exists', name
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Drop it with llm_model_drop, or register the new version under another name.';
	END IF;

	INSERT INTO llm.models (name, provider, remote_model, kind, base_model,
							input_price, output_price, cached_input_price, params, limits,
							training_price, tuned_input_price, tuned_cached_input_price,
							tuned_output_price, training_set, training_version, prompt_name,
							prompt_version, cache_write_price, use)
	VALUES (name, provider, remote_model, kind, base_model,
			coalesce(input_price, 0), coalesce(output_price, 0), cached_input_price, params,
			limits, training_price, tuned_input_price, tuned_cached_input_price,
			tuned_output_price, training_set, training_version, set_prompt, set_prompt_version,
			cache_write_price, use);
END
$$;
COMMENT ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer, numeric, text) IS
	'register a base or fine-tuned model, for chat or embeddings, under a name SQL can use';

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

REVOKE ALL ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer, numeric, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_model_drop(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_model_set_limits(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_model_set_limits(text, jsonb) TO llm_admin;
GRANT EXECUTE ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer, numeric, text) TO llm_admin;
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
-- Embeddings: the vectors of texts, from models registered with use 'embedding'.

CREATE FUNCTION llm_embed(
	input text,
	model text DEFAULT NULL,
	options jsonb DEFAULT NULL)
RETURNS real[]
AS 'MODULE_PATHNAME', 'llm_embed'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_embed(text, text, jsonb) IS
	'the embedding of a text, from an embedding model (NULL input gives NULL); cast to vector with pgvector';

CREATE FUNCTION llm_embed_batch(
	inputs text[],
	model text DEFAULT NULL,
	options jsonb DEFAULT NULL,
	concurrency integer DEFAULT 8)
RETURNS TABLE (ord integer, embedding real[], error text)
AS 'MODULE_PATHNAME', 'llm_embed_batch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_embed_batch(text[], text, jsonb, integer) IS
	'many embeddings, many inputs per request (the model''s max_batch_inputs, default 100) and up to concurrency requests at once: one row per input, in order, failures as error text';

REVOKE ALL ON FUNCTION llm_embed(text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_embed_batch(text[], text, jsonb, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_embed(text, text, jsonb) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_embed_batch(text[], text, jsonb, integer) TO llm_user;
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

-- What a call was asked and answered, kept beside its ledger row so that a
-- production call can become an evaluation case or a training example
-- (llm_feedback, llm_eval_cases_from_feedback): a stored prompt's
-- variables, the last user message and the answer, each when it takes at
-- most 64 kB.  Kept while llmext.keep_call_io is on (the default), for
-- llmext.call_io_days (30; the worker deletes older rows), and removed with
-- llm_call_io_purge.  Evaluation runs keep nothing here: their inputs are
-- their sets' cases.
CREATE TABLE llm.call_io (
	entry_id		text PRIMARY KEY REFERENCES llm.calls (entry_id) ON DELETE CASCADE,
	created_at		timestamptz NOT NULL,
	role			name NOT NULL,
	login_role		name NOT NULL,
	prompt_name		text,
	prompt_version	integer,
	vars			jsonb,			-- the stored prompt's variables
	input			text,			-- the last user message
	output			text,			-- the answer
	too_large		boolean NOT NULL DEFAULT false	-- something was left out for its size
);
CREATE INDEX call_io_created_at_idx ON llm.call_io (created_at);
COMMENT ON TABLE llm.call_io IS 'what calls were asked and answered (prompt variables, last user message, answer), kept for llmext.call_io_days';
SELECT pg_catalog.pg_extension_config_dump('llm.call_io', '');
ALTER TABLE llm.call_io ENABLE ROW LEVEL SECURITY;
CREATE POLICY call_io_own_rows ON llm.call_io FOR SELECT
	USING ((role = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
GRANT SELECT ON llm.call_io TO llm_user;

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
		RETURNING entry_id, fingerprint, created_at, cache_hit, role, login_role, cost_usd,
				  prompt_name, prompt_version
	),
	io AS (
		INSERT INTO llm.call_io (entry_id, created_at, role, login_role, prompt_name, prompt_version,
								 vars, input, output, too_large)
		SELECT c.entry_id, c.created_at, c.role, c.login_role, c.prompt_name, c.prompt_version,
			   r.vars, r.input, r.output, coalesce(r.io_too_large, false)
		  FROM jsonb_to_recordset(entries)
			   AS r(entry_id text, vars jsonb, input text, output text, io_too_large boolean)
		  JOIN new_calls c ON c.entry_id = r.entry_id
		 WHERE r.vars IS NOT NULL OR r.input IS NOT NULL OR r.output IS NOT NULL OR r.io_too_large
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

-- The worker's: deletes up to batch rows of llm.call_io older than days.
CREATE FUNCTION llm._call_io_expire(days integer, batch integer DEFAULT 10000)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	WITH gone AS (
		DELETE FROM llm.call_io
		 WHERE entry_id IN (SELECT entry_id FROM llm.call_io
							 WHERE created_at < now() - days * interval '1 day' LIMIT batch)
		RETURNING 1)
	SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION llm._call_io_expire(integer, integer) FROM PUBLIC;

CREATE FUNCTION llm_call_io_purge(before timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF before IS NULL THEN
		RAISE EXCEPTION 'before must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	DELETE FROM llm.call_io io WHERE io.created_at < before;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION llm_call_io_purge(timestamptz) IS
	'delete what calls made before a time were asked and answered (llm.call_io): how many; llm_admin only';
REVOKE ALL ON FUNCTION llm_call_io_purge(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_call_io_purge(timestamptz) TO llm_admin;

CREATE FUNCTION llm_last_call_id()
RETURNS text
AS 'MODULE_PATHNAME', 'llm_last_call_id'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_last_call_id() IS
	'the call_id (llm.calls.entry_id) of this session''s last call, for llm_feedback after a call that returns only text';
REVOKE ALL ON FUNCTION llm_last_call_id() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_last_call_id() TO llm_user;

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
	-- the move that set the label to what it is now, not itself undone (a
	-- refused promotion, 'promote_refused', moved nothing)
	SELECT h.* INTO move FROM llm.prompt_label_history h
	 WHERE h.name = _prompt_rollback.name AND h.label = _prompt_rollback.label
	   AND h.action IN ('deploy', 'split', 'promote') AND NOT h.rolled_back
	   AND h.to_variants = current_variants
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
	'move a label back to where it pointed before its last deploy, split or promotion';

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
	login_role		name NOT NULL,	-- the submitter's login role (added in 0.2.0)
	vars			jsonb			-- a stored prompt's variables, for llm.call_io (added in 0.4.0)
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
							 prompt_name text, prompt_version integer, vars jsonb DEFAULT NULL)
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
							  callback, prompt_name, prompt_version, vars)
	VALUES (tag, caller, login, coalesce(priority, 0), model, messages, options, callback,
			prompt_name, prompt_version, vars)
	RETURNING id INTO new_id;
	PERFORM llm._wake_at_commit();
	RETURN new_id;
END
$$;
REVOKE ALL ON FUNCTION llm._enqueue(name, name, text, jsonb, jsonb, text, integer, regprocedure, text, integer, jsonb) FROM PUBLIC;

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
						tag, priority, callback, r ->> 'prompt', (r ->> 'version')::integer,
						CASE WHEN vars IS NOT NULL AND vars <> '{}' THEN vars END);
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
-- Training sets: immutable, versioned snapshots of chat examples rendered
-- from a user's query (through a stored prompt version, or as plain user
-- messages), the exact JSONL lines a fine-tuning job uploads.

CREATE TABLE llm.training_sets (
	name				text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
	version				integer NOT NULL CHECK (version > 0),
	query				text NOT NULL,
	prompt_name			text,
	prompt_version		integer,	-- the version the examples were rendered with
	prompt_label		text,		-- the label that chose it, if any
	holdout				numeric NOT NULL DEFAULT 0 CHECK (holdout >= 0 AND holdout < 1),
	examples			integer NOT NULL,	-- lines of the training file
	held_out			integer NOT NULL,	-- examples kept out of it
	duplicates			integer NOT NULL DEFAULT 0,
	estimated_tokens	bigint NOT NULL,	-- of the training file (see docs/fine-tuning.md)
	bytes				bigint NOT NULL,	-- of the training file, newlines included
	sha256				text NOT NULL,		-- hex SHA-256 of the training file's exact bytes
	created_by			name NOT NULL,
	login_role			name NOT NULL,
	created_at			timestamptz NOT NULL DEFAULT now(),
	note				text,
	PRIMARY KEY (name, version),
	CHECK ((prompt_name IS NULL) = (prompt_version IS NULL))
);
COMMENT ON TABLE llm.training_sets IS 'immutable snapshots of fine-tuning examples: one row per version';

-- One row per example, in the query's order.  The training file is the
-- lines of the rows not held out, in ord order, each followed by "\n".
CREATE TABLE llm.training_examples (
	set_name			text NOT NULL,
	set_version			integer NOT NULL,
	ord					integer NOT NULL,	-- 1-based, the query's order
	example_key			text NOT NULL,		-- the row's id, or a hash of its line
	held_out			boolean NOT NULL,
	line				text NOT NULL,		-- {"messages": [...]}, no newline
	tokens				integer NOT NULL,	-- estimated
	PRIMARY KEY (set_name, set_version, ord),
	FOREIGN KEY (set_name, set_version) REFERENCES llm.training_sets (name, version) ON DELETE CASCADE
);
COMMENT ON TABLE llm.training_examples IS 'the examples of each training set version, as JSONL lines; held-out rows are kept out of the training file';

-- A lineage on llm.models names a training set version that exists.
ALTER TABLE llm.models ADD CONSTRAINT models_training_set_fkey
	FOREIGN KEY (training_set, training_version) REFERENCES llm.training_sets (name, version);

COMMENT ON COLUMN llm.training_sets.query IS 'the query the examples were read from, run with its creator''s rights';
COMMENT ON COLUMN llm.training_sets.examples IS 'lines of the training file (held-out examples excluded)';
COMMENT ON COLUMN llm.training_sets.estimated_tokens IS 'estimated tokens of the training file: per line, ceil(bytes / 4)';
COMMENT ON COLUMN llm.training_sets.sha256 IS 'hex SHA-256 of the training file: the lines not held out, in ord order, each followed by a newline';
COMMENT ON COLUMN llm.training_examples.example_key IS 'the row''s id, or the hex SHA-256 of its line; held-out examples are chosen by its hash';

-- Versions are immutable, like prompt versions: a job, a model's lineage
-- and an evaluation must be able to trust that a version is what it was.
-- (Deleting a whole version is left to its table's owner, for data that
-- must go: the foreign keys of jobs and models still protect the ones used.)
CREATE FUNCTION llm._training_sets_are_immutable()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'training set versions cannot be changed'
		USING ERRCODE = 'object_not_in_prerequisite_state',
			  DETAIL = 'A version, once created, is kept exactly as it was so that every job and model can be traced to its examples.',
			  HINT = 'Create a new version with llm_training_set_create.';
END
$$;
CREATE TRIGGER training_sets_immutable BEFORE UPDATE ON llm.training_sets
	FOR EACH ROW EXECUTE FUNCTION llm._training_sets_are_immutable();
CREATE TRIGGER training_examples_immutable BEFORE UPDATE ON llm.training_examples
	FOR EACH ROW EXECUTE FUNCTION llm._training_sets_are_immutable();

SELECT pg_catalog.pg_extension_config_dump('llm.training_sets', '');
SELECT pg_catalog.pg_extension_config_dump('llm.training_examples', '');

-- Training data is often sensitive (customer tickets, answers written by
-- staff): each role sees its own sets, by the ledger's rule (made as your
-- current role, from your login or while logged in as that role), and
-- llm_admin sees all.  Unlike prompts, sets are not readable by every user.
ALTER TABLE llm.training_sets ENABLE ROW LEVEL SECURITY;
CREATE POLICY training_sets_own_rows ON llm.training_sets FOR SELECT
	USING ((created_by = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
ALTER TABLE llm.training_examples ENABLE ROW LEVEL SECURITY;
CREATE POLICY training_examples_own_rows ON llm.training_examples FOR SELECT
	USING (EXISTS (SELECT FROM llm.training_sets s
					WHERE s.name = set_name AND s.version = set_version));
GRANT SELECT ON llm.training_sets, llm.training_examples TO llm_user;

-- Rows of the training set being created, between llm_training_set_create's
-- batches and its final step, within one transaction.  Nobody but the
-- internal steps reads or writes it; rows of an aborted transaction are
-- never seen again, and the final step deletes its own.
CREATE UNLOGGED TABLE llm.training_staging (
	xact				xid8 NOT NULL DEFAULT pg_current_xact_id(),
	caller				name NOT NULL,
	ord					integer NOT NULL,
	example_key			text NOT NULL,
	line				text NOT NULL,
	PRIMARY KEY (xact, caller, ord)
);
COMMENT ON TABLE llm.training_staging IS 'internal: examples of a training set under creation, until its transaction records them';

-- The limits every example and set is held to (see docs/fine-tuning.md).
CREATE FUNCTION llm._training_limit(what text)
RETURNS bigint
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE what
		WHEN 'min_examples' THEN 10				-- OpenAI's minimum of training examples
		WHEN 'max_example_tokens' THEN 65536	-- estimated tokens of one example
		WHEN 'default_epochs' THEN 3			-- epochs of an estimate that names none
		WHEN 'batch_rows' THEN 1000				-- rows handed to the internal step at once
	END
$$;
REVOKE ALL ON FUNCTION llm._training_limit(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._training_limit(text) TO llm_user;

-- The estimated tokens of a line: bytes / 4, rounded up, as the rate
-- limiter estimates a request.
CREATE FUNCTION llm._training_tokens(line text)
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT ((octet_length(line) + 3) / 4)::integer
$$;
REVOKE ALL ON FUNCTION llm._training_tokens(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._training_tokens(text) TO llm_user;

-- Whether an example with this key is held out at this share: the first 60
-- bits of SHA-256 of the key, as a fraction of 1, below the share.  The
-- same key is held out in every set and version with the same share.
CREATE FUNCTION llm._training_held_out(example_key text, holdout numeric)
RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT holdout > 0
	   AND ('x' || left(encode(sha256(convert_to('llmext holdout/' || example_key, 'UTF8')), 'hex'), 15))::bit(60)::bigint
		   / 1152921504606846976.0 < holdout
$$;
REVOKE ALL ON FUNCTION llm._training_held_out(text, numeric) FROM PUBLIC;

-- Checks one line: {"messages": [...]} whose messages are objects with a
-- role and a string content, the last one the assistant's, non-empty, with
-- an optional weight of 0 or 1.  Returns NULL when it is well formed, else
-- what is wrong.
CREATE FUNCTION llm._training_line_problem(line text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j jsonb;
	last jsonb;
BEGIN
	BEGIN
		j := line::jsonb;
	EXCEPTION WHEN invalid_text_representation THEN
		RETURN 'it is not JSON';
	END;
	IF jsonb_typeof(j) <> 'object' OR jsonb_typeof(j -> 'messages') IS DISTINCT FROM 'array'
	   OR jsonb_array_length(j -> 'messages') < 1 THEN
		RETURN 'it has no "messages" array';
	END IF;
	IF EXISTS (SELECT FROM jsonb_array_elements(j -> 'messages') m
				WHERE jsonb_typeof(m) <> 'object'
				   OR m ->> 'role' IS NULL OR m ->> 'role' NOT IN ('system', 'developer', 'user', 'assistant')
				   OR jsonb_typeof(m -> 'content') IS DISTINCT FROM 'string') THEN
		RETURN 'a message has no role or no text content';
	END IF;
	last := j -> 'messages' -> -1;
	IF last ->> 'role' <> 'assistant' OR btrim(last ->> 'content') = '' THEN
		RETURN 'it does not end with a non-empty assistant message';
	END IF;
	IF last ? 'weight' AND last -> 'weight' NOT IN ('0', '1') THEN
		RETURN 'the weight is not 0 or 1';
	END IF;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION llm._training_line_problem(text) FROM PUBLIC;

-- Whether role who, logged in as login, may read training set version
-- (name, version): the rule of the row level security policy.
CREATE FUNCTION llm._training_set_readable(who name, login name, name text, version integer)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT EXISTS (SELECT FROM llm.training_sets s
					WHERE s.name = _training_set_readable.name AND s.version = _training_set_readable.version
					  AND ((s.created_by = who AND (s.login_role = login OR who = login))
						   OR pg_has_role(who, 'llm_admin', 'MEMBER')))
$$;
REVOKE ALL ON FUNCTION llm._training_set_readable(name, name, text, integer) FROM PUBLIC;

-- The internal steps of llm_training_set_create, gates (llm_gate) so that
-- the roles they record come from llmext, never from their arguments.
-- They are executable by llm_user (llm_training_set_create runs as its
-- caller and calls them) and harmless: they record only well-formed
-- examples, for the caller, under a set name the caller owns, and compute
-- every derived value themselves.
CREATE FUNCTION llm.llm_training_stage(ords integer[], keys text[], lines text[])
RETURNS void
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm.llm_training_stage(integer[], text[], text[]) IS
	'internal: a batch of examples of the training set llm_training_set_create is making';

CREATE FUNCTION llm._training_stage(caller name, login name, ords integer[], keys text[], lines text[])
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bad record;
BEGIN
	IF cardinality(ords) IS DISTINCT FROM cardinality(keys) OR cardinality(ords) IS DISTINCT FROM cardinality(lines) THEN
		RAISE EXCEPTION 'give one key and one line per example'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT x.ord, x.example_key, llm._training_line_problem(x.line) AS problem INTO bad
	  FROM unnest(ords, keys, lines) AS x(ord, example_key, line)
	 WHERE x.ord IS NULL OR x.ord < 1 OR x.example_key IS NULL OR x.example_key = '' OR x.line IS NULL
		OR llm._training_line_problem(x.line) IS NOT NULL
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'example % is not a chat example', coalesce(bad.ord::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = coalesce(initcap(left(bad.problem, 1)) || substr(bad.problem, 2) || '.',
									'It has no position, key or line.');
	END IF;
	-- a batch that starts a set starts afresh (after a retry in a subtransaction)
	IF 1 = ANY (ords) THEN
		DELETE FROM llm.training_staging t WHERE t.xact = pg_current_xact_id() AND t.caller = _training_stage.caller;
	END IF;
	INSERT INTO llm.training_staging (caller, ord, example_key, line)
	SELECT caller, x.ord, x.example_key, x.line
	  FROM unnest(ords, keys, lines) AS x(ord, example_key, line);
END
$$;
REVOKE ALL ON FUNCTION llm._training_stage(name, name, integer[], text[], text[]) FROM PUBLIC;

CREATE FUNCTION llm.llm_training_record(name text, query text, prompt_name text, prompt_version integer,
										 prompt_label text, holdout numeric, note text)
RETURNS integer
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm.llm_training_record(text, text, text, integer, text, numeric, text) IS
	'internal: record the examples staged in this transaction as a new version of a training set';

CREATE FUNCTION llm._training_record(caller name, login name, name text, query text, prompt_name text,
									 prompt_version integer, prompt_label text, holdout numeric, note text)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cur_xact xid8 := pg_current_xact_id();
	owner name;
	new_version integer;
	total integer;
	kept integer;
	dups integer;
	big record;
	agg record;
BEGIN
	IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid training set name "%"', coalesce(name, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use up to 63 letters, digits, "_", "." or "-", starting with a letter or digit.';
	END IF;
	IF query IS NULL OR btrim(query) = '' THEN
		RAISE EXCEPTION 'the query of training set "%" must not be empty', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	holdout := coalesce(holdout, 0);
	IF holdout < 0 OR holdout >= 1 THEN
		RAISE EXCEPTION 'holdout must be at least 0 and below 1, not %', holdout
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'It is the share of examples kept out of the training file, such as 0.1.';
	END IF;
	IF (prompt_name IS NULL) <> (prompt_version IS NULL)
	   OR (prompt_name IS NOT NULL AND NOT EXISTS (SELECT FROM llm.prompts p
													WHERE p.name = _training_record.prompt_name
													  AND p.version = _training_record.prompt_version)) THEN
		RAISE EXCEPTION 'prompt "%" has no version %', coalesce(prompt_name, 'NULL'), coalesce(prompt_version::text, 'NULL')
			USING ERRCODE = 'undefined_object';
	END IF;
	IF prompt_label IS NOT NULL AND prompt_name IS NULL THEN
		RAISE EXCEPTION 'a prompt label needs a prompt'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- versions are numbered per name; a name belongs to the creator of its
	-- first version (and the members of that role), and to llm_admin
	PERFORM pg_advisory_xact_lock(hashtext('llmext training set ' || name));
	SELECT s.created_by INTO owner FROM llm.training_sets s
	 WHERE s.name = _training_record.name ORDER BY s.version LIMIT 1;
	IF FOUND AND NOT llm._counts_for(caller, owner) AND NOT pg_has_role(caller, 'llm_admin', 'MEMBER') THEN
		RAISE EXCEPTION 'permission denied to add a version to training set "%"', name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Training set "%s" belongs to role "%s".', name, owner),
				  HINT = 'Choose another name.';
	END IF;

	-- (no temporary table: one of the caller's own, with its triggers, could
	-- stand in for it)
	WITH r AS (
		SELECT t.line, llm._training_held_out(t.example_key, holdout) AS held_out
		  FROM llm.training_staging t
		 WHERE t.xact = cur_xact AND t.caller = _training_record.caller)
	SELECT count(*), count(*) FILTER (WHERE NOT r.held_out), count(*) - count(DISTINCT r.line)
	  INTO total, kept, dups FROM r;
	IF kept < llm._training_limit('min_examples') THEN
		RAISE EXCEPTION 'training set "%" has % training examples; fine-tuning needs at least %',
						name, kept, llm._training_limit('min_examples')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The query returned %s rows, %s of them held out.', total, total - kept),
				  HINT = 'Add examples, or hold out a smaller share.';
	END IF;
	SELECT t.ord, llm._training_tokens(t.line) AS tokens INTO big FROM llm.training_staging t
	 WHERE t.xact = cur_xact AND t.caller = _training_record.caller
	   AND llm._training_tokens(t.line) > llm._training_limit('max_example_tokens')
	 ORDER BY t.ord LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'row % of the query is too long for a training example', big.ord
			USING ERRCODE = 'program_limit_exceeded',
				  DETAIL = format('It has about %s tokens; the limit is %s.', big.tokens, llm._training_limit('max_example_tokens')),
				  HINT = 'Shorten or leave out the row.';
	END IF;
	IF dups > 0 THEN
		RAISE WARNING 'training set "%": % examples repeat an earlier one', name, dups
			USING DETAIL = 'Identical examples weigh more in training; they are kept as given.',
				  HINT = 'Add DISTINCT to the query to leave them out.';
	END IF;

	SELECT coalesce(sum(llm._training_tokens(t.line)), 0) AS tokens,
		   coalesce(sum(octet_length(t.line) + 1), 0) AS bytes,
		   encode(sha256(convert_to(coalesce(string_agg(t.line || E'\n', '' ORDER BY t.ord), ''), 'UTF8')),
				  'hex') AS sha
	  INTO agg FROM llm.training_staging t
	 WHERE t.xact = cur_xact AND t.caller = _training_record.caller
	   AND NOT llm._training_held_out(t.example_key, holdout);
	SELECT coalesce(max(s.version), 0) + 1 INTO new_version
	  FROM llm.training_sets s WHERE s.name = _training_record.name;
	INSERT INTO llm.training_sets (name, version, query, prompt_name, prompt_version, prompt_label,
								   holdout, examples, held_out, duplicates, estimated_tokens, bytes,
								   sha256, created_by, login_role, note)
	VALUES (name, new_version, query, prompt_name, prompt_version, prompt_label,
			holdout, kept, total - kept, dups, agg.tokens, agg.bytes, agg.sha, caller, login, note);
	INSERT INTO llm.training_examples (set_name, set_version, ord, example_key, held_out, line, tokens)
	SELECT name, new_version, t.ord, t.example_key, llm._training_held_out(t.example_key, holdout), t.line,
		   llm._training_tokens(t.line)
	  FROM llm.training_staging t
	 WHERE t.xact = cur_xact AND t.caller = _training_record.caller
	 ORDER BY t.ord;
	DELETE FROM llm.training_staging t WHERE t.xact = cur_xact AND t.caller = _training_record.caller;
	RETURN new_version;
END
$$;
REVOKE ALL ON FUNCTION llm._training_record(name, name, text, text, text, integer, text, numeric, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.llm_training_stage(integer[], text[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.llm_training_record(text, text, text, integer, text, numeric, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.llm_training_stage(integer[], text[], text[]) TO llm_user;
GRANT EXECUTE ON FUNCTION llm.llm_training_record(text, text, text, integer, text, numeric, text) TO llm_user;

-- llm_training_set_create runs as its caller (SECURITY INVOKER, and no SET
-- search_path, so the query sees the caller's own): the query reads only
-- what the caller may read, and the templates render as in a call of the
-- caller's.  It checks and renders each row, then hands the lines in
-- batches to the internal steps above, which record them for the caller.
-- Every name it uses is schema-qualified.
CREATE FUNCTION llm_training_set_create(name text, query text, prompt text DEFAULT NULL,
										version integer DEFAULT NULL, label text DEFAULT NULL,
										holdout numeric DEFAULT 0, note text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
	chosen_version integer;
	chosen_label text;
	variants jsonb;
	rec record;
	j jsonb;
	n integer := 0;
	row_name text;
	output text;
	messages jsonb;
	assistant jsonb;
	line text;
	ords integer[] := '{}';
	keys text[] := '{}';
	lines text[] := '{}';
	batch integer := llm._training_limit('batch_rows')::integer;
	max_tokens bigint := llm._training_limit('max_example_tokens');
	e_state text;
	e_message text;
	e_detail text;
	e_hint text;
BEGIN
	IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid training set name "%"', coalesce(name, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use up to 63 letters, digits, "_", "." or "-", starting with a letter or digit.';
	END IF;
	IF query IS NULL OR pg_catalog.btrim(query) = '' THEN
		RAISE EXCEPTION 'the query of training set "%" must not be empty', name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'It returns one row per example: vars jsonb (with a prompt) or input text, and output text.';
	END IF;
	holdout := coalesce(holdout, 0);
	IF holdout < 0 OR holdout >= 1 THEN
		RAISE EXCEPTION 'holdout must be at least 0 and below 1, not %', holdout
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'It is the share of examples kept out of the training file, such as 0.1.';
	END IF;
	IF prompt IS NULL AND (version IS NOT NULL OR label IS NOT NULL) THEN
		RAISE EXCEPTION 'a version or label needs a prompt'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF prompt IS NOT NULL THEN
		-- the version a call would use, except that a split is refused:
		-- every example is rendered through one version
		SELECT c.chosen_version, c.chosen_label INTO chosen_version, chosen_label
		  FROM llm._prompt_choose(prompt, version, label, NULL) c;
		IF chosen_label IS NOT NULL THEN
			SELECT l.variants INTO variants FROM llm.prompt_labels l
			 WHERE l.name = prompt AND l.label = chosen_label;
			IF pg_catalog.jsonb_array_length(variants) > 1 THEN
				RAISE EXCEPTION 'label "%" of prompt "%" splits its traffic between variants', chosen_label, prompt
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'Name the version to render the examples with.';
			END IF;
		END IF;
	END IF;

	FOR rec IN EXECUTE query LOOP
		n := n + 1;
		j := pg_catalog.to_jsonb(rec);
		row_name := 'row ' || n || coalesce(' (id ' || pg_catalog.quote_literal(j ->> 'id') || ')', '');
		IF n = 1 THEN
			IF NOT j ? 'output' THEN
				RAISE EXCEPTION 'the query of training set "%" returns no column "output"', name
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'Return the ideal answer of each example as output.';
			END IF;
			IF prompt IS NOT NULL AND NOT j ? 'vars' THEN
				RAISE EXCEPTION 'the query of training set "%" returns no column "vars"', name
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'With a prompt, return each example''s template variables as vars jsonb.';
			END IF;
			IF prompt IS NULL AND NOT j ? 'input' THEN
				RAISE EXCEPTION 'the query of training set "%" returns no column "input"', name
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'Without a prompt, return each example''s user message as input text'
								 || CASE WHEN j ? 'vars' THEN ', or pass the prompt that renders vars.' ELSE '.' END;
			END IF;
		END IF;
		output := j ->> 'output';
		IF output IS NULL OR pg_catalog.btrim(output) = '' THEN
			RAISE EXCEPTION '% of the query has % output', row_name,
							CASE WHEN output IS NULL THEN 'a NULL' ELSE 'an empty' END
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Every example needs the answer the model should learn; leave such rows out of the query.';
		END IF;
		IF prompt IS NOT NULL THEN
			IF pg_catalog.jsonb_typeof(j -> 'vars') IS DISTINCT FROM 'object' THEN
				RAISE EXCEPTION '% of the query has vars that are not a JSON object', row_name
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'For example jsonb_build_object(''ticket'', body) AS vars.';
			END IF;
			BEGIN
				messages := @extschema@.llm_render(prompt, j -> 'vars', chosen_version) -> 'messages';
			EXCEPTION WHEN OTHERS THEN
				GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT,
					e_detail = PG_EXCEPTION_DETAIL, e_hint = PG_EXCEPTION_HINT;
				RAISE EXCEPTION '% of the query: %', row_name, e_message
					USING ERRCODE = e_state, DETAIL = e_detail, HINT = e_hint;
			END;
		ELSE
			IF j ->> 'input' IS NULL OR pg_catalog.btrim(j ->> 'input') = '' THEN
				RAISE EXCEPTION '% of the query has % input', row_name,
								CASE WHEN j ->> 'input' IS NULL THEN 'a NULL' ELSE 'an empty' END
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'Every example needs the user message it answers.';
			END IF;
			messages := pg_catalog.jsonb_build_array(
				pg_catalog.jsonb_build_object('role', 'user', 'content', j ->> 'input'));
		END IF;
		assistant := pg_catalog.jsonb_build_object('role', 'assistant', 'content', output);
		IF j ? 'weight' AND j -> 'weight' <> 'null' THEN
			IF j -> 'weight' NOT IN ('0', '1') THEN
				RAISE EXCEPTION '% of the query has weight %, not 0 or 1', row_name, j -> 'weight'
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'A weight of 0 keeps the answer in the example without training on it.';
			END IF;
			assistant := assistant || pg_catalog.jsonb_build_object('weight', (j ->> 'weight')::numeric::integer);
		END IF;
		line := pg_catalog.jsonb_build_object('messages', messages || assistant)::text;
		IF llm._training_tokens(line) > max_tokens THEN
			RAISE EXCEPTION '% of the query is too long for a training example', row_name
				USING ERRCODE = 'program_limit_exceeded',
					  DETAIL = pg_catalog.format('It has about %s tokens; the limit is %s.', llm._training_tokens(line), max_tokens),
					  HINT = 'Shorten or leave out the row.';
		END IF;
		ords := ords || n;
		keys := keys || coalesce(j ->> 'id',
											pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(line, 'UTF8')), 'hex'));
		lines := lines || line;
		IF pg_catalog.cardinality(ords) >= batch THEN
			PERFORM llm.llm_training_stage(ords, keys, lines);
			ords := '{}';
			keys := '{}';
			lines := '{}';
		END IF;
	END LOOP;
	IF pg_catalog.cardinality(ords) > 0 THEN
		PERFORM llm.llm_training_stage(ords, keys, lines);
	END IF;
	RETURN llm.llm_training_record(name, query, prompt, chosen_version, chosen_label, holdout, note);
END
$$;
COMMENT ON FUNCTION llm_training_set_create(text, text, text, integer, text, numeric, text) IS
	'snapshot the examples a query returns (rendered through a stored prompt, or as user messages) as a new version of a training set';
REVOKE ALL ON FUNCTION llm_training_set_create(text, text, text, integer, text, numeric, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_training_set_create(text, text, text, integer, text, numeric, text) TO llm_user;

-- The latest version of a training set the caller can see, or the version
-- asked for; raises when there is none.
CREATE FUNCTION llm._training_version(name text, version integer)
RETURNS integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	found_version integer;
BEGIN
	SELECT max(s.version) INTO found_version FROM llm.training_sets s
	 WHERE s.name = _training_version.name
	   AND (_training_version.version IS NULL OR s.version = _training_version.version);
	IF found_version IS NULL THEN
		IF version IS NULL THEN
			RAISE EXCEPTION 'training set "%" does not exist', coalesce(name, 'NULL')
				USING ERRCODE = 'undefined_object',
					  HINT = 'Create it with llm_training_set_create; SELECT name, version FROM llm.training_sets lists yours.';
		END IF;
		RAISE EXCEPTION 'training set "%" has no version %', name, version
			USING ERRCODE = 'undefined_object',
				  HINT = format('List them with SELECT version FROM llm.training_sets WHERE name = %L.', name);
	END IF;
	RETURN found_version;
END
$$;
REVOKE ALL ON FUNCTION llm._training_version(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._training_version(text, integer) TO llm_user;

-- The training file, line by line (row level security applies: the
-- caller's own sets, or all for llm_admin).
CREATE FUNCTION llm_training_jsonl(name text, version integer DEFAULT NULL)
RETURNS SETOF text
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	version := llm._training_version(name, version);
	RETURN QUERY
	SELECT e.line FROM llm.training_examples e
	 WHERE e.set_name = llm_training_jsonl.name AND e.set_version = llm_training_jsonl.version
	   AND NOT e.held_out
	 ORDER BY e.ord;
END
$$;
COMMENT ON FUNCTION llm_training_jsonl(text, integer) IS
	'the lines of a training set''s training file (held-out examples excluded), in order: COPY them out for offline training';
REVOKE ALL ON FUNCTION llm_training_jsonl(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_training_jsonl(text, integer) TO llm_user;

-- Trained tokens and cost of training base_model on a set: the file's
-- estimated tokens times the epochs, at the base model's training price.
CREATE FUNCTION llm._training_cost(tokens bigint, epochs integer, training_price numeric,
								   OUT trained_tokens bigint, OUT cost_usd numeric)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT tokens * epochs, trim_scale(round(tokens * epochs * training_price / 1000000, 10))
$$;
REVOKE ALL ON FUNCTION llm._training_cost(bigint, integer, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._training_cost(bigint, integer, numeric) TO llm_user;

CREATE FUNCTION llm_training_estimate(name text, version integer, base_model text, epochs integer DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s record;
	m record;
	c record;
BEGIN
	version := llm._training_version(name, version);
	SELECT * INTO s FROM llm.training_sets t WHERE t.name = llm_training_estimate.name AND t.version = llm_training_estimate.version;
	SELECT * INTO m FROM llm.models x WHERE x.name = llm_training_estimate.base_model;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model "%" does not exist', coalesce(llm_training_estimate.base_model, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'List the models with SELECT name FROM llm.models.';
	END IF;
	epochs := coalesce(llm_training_estimate.epochs, llm._training_limit('default_epochs')::integer);
	IF epochs < 1 THEN
		RAISE EXCEPTION 'epochs must be at least 1'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	c := llm._training_cost(s.estimated_tokens, epochs, m.training_price);
	RETURN jsonb_build_object('training_set', s.name, 'training_version', s.version, 'base_model', m.name,
							  'examples', s.examples, 'epochs', epochs, 'estimated_tokens', c.trained_tokens,
							  'training_price', m.training_price, 'estimated_cost_usd', c.cost_usd);
END
$$;
COMMENT ON FUNCTION llm_training_estimate(text, integer, text, integer) IS
	'estimated trained tokens and cost of fine-tuning a model on a training set (cost NULL when the model has no training price)';
REVOKE ALL ON FUNCTION llm_training_estimate(text, integer, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_training_estimate(text, integer, text, integer) TO llm_user;
-- Fine-tuning jobs, run by the background worker at the provider, with what
-- the provider reported (events, checkpoints).  A job that succeeds
-- registers its model in llm.models with lineage.

-- llm_finetune may launch fine-tuning jobs (which spend money at the
-- provider); granted to nobody by default.  It is an llm_user too (its jobs'
-- training sets are made with llm_user's functions).  llm_admin may launch
-- jobs as well.
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'llm_finetune') THEN
		CREATE ROLE llm_finetune NOLOGIN;
	END IF;
	IF NOT pg_catalog.pg_has_role('llm_finetune', 'llm_user', 'MEMBER') THEN
		GRANT llm_user TO llm_finetune;
	END IF;
END
$$;

CREATE TABLE llm.finetune_jobs (
	id					bigserial PRIMARY KEY,
	name				text NOT NULL,		-- the model family: support -> support-v1, support-v2
	submitted_by		name NOT NULL,
	login_role			name NOT NULL,
	base_model			text NOT NULL REFERENCES llm.models (name),
	provider			text NOT NULL,
	training_set		text NOT NULL,
	training_version	integer NOT NULL,
	validation_set		text,
	validation_version	integer,
	method				text NOT NULL DEFAULT 'supervised' CHECK (method IN ('supervised', 'dpo')),
	hyperparameters		jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(hyperparameters) = 'object'),
	suffix				text,
	seed				integer,
	-- llmext's state: queued (waiting for the worker), uploading, creating
	-- (the create request may have reached the provider: recovery looks the
	-- job up by its metadata before creating another), running (polling),
	-- cancelling (a cancel to send), and the final succeeded, failed, cancelled
	state				text NOT NULL DEFAULT 'queued'
						CHECK (state IN ('queued', 'uploading', 'creating', 'running', 'cancelling',
										 'succeeded', 'failed', 'cancelled')),
	provider_status		text,				-- the provider's own status, whatever it is
	training_file_id	text,
	validation_file_id	text,
	provider_job_id		text UNIQUE,
	fine_tuned_model	text,				-- the provider's id of the trained model
	model				text REFERENCES llm.models (name),	-- registered on success
	estimated_tokens	bigint,
	estimated_cost_usd	numeric,
	trained_tokens		bigint,
	cost_usd			numeric,
	error				text,
	attempts			integer NOT NULL DEFAULT 0,	-- failed provider requests in a row
	next_poll_at		timestamptz NOT NULL DEFAULT now(),
	created_at			timestamptz NOT NULL DEFAULT now(),
	started_at			timestamptz,
	finished_at			timestamptz,
	updated_at			timestamptz NOT NULL DEFAULT now(),
	FOREIGN KEY (training_set, training_version) REFERENCES llm.training_sets (name, version),
	FOREIGN KEY (validation_set, validation_version) REFERENCES llm.training_sets (name, version)
);
CREATE INDEX finetune_jobs_due_idx ON llm.finetune_jobs (next_poll_at)
	WHERE state IN ('queued', 'uploading', 'creating', 'running', 'cancelling');
COMMENT ON TABLE llm.finetune_jobs IS 'fine-tuning jobs: what was asked, where it stands at the provider, what it cost and made';

ALTER TABLE llm.models ADD CONSTRAINT models_finetune_job_fkey
	FOREIGN KEY (finetune_job) REFERENCES llm.finetune_jobs (id);

CREATE TABLE llm.finetune_events (
	job					bigint NOT NULL REFERENCES llm.finetune_jobs ON DELETE CASCADE,
	event_id			text NOT NULL,		-- the provider's
	created_at			timestamptz NOT NULL,
	level				text,
	type				text,
	message				text,
	data				jsonb,
	PRIMARY KEY (job, event_id)
);
COMMENT ON TABLE llm.finetune_events IS 'the events a provider reported for a fine-tuning job';

CREATE TABLE llm.finetune_checkpoints (
	job					bigint NOT NULL REFERENCES llm.finetune_jobs ON DELETE CASCADE,
	checkpoint_id		text NOT NULL,		-- the provider's
	created_at			timestamptz NOT NULL,
	step				integer,
	model_checkpoint	text,				-- a callable model id at that step, when offered
	train_loss			double precision,
	valid_loss			double precision,
	train_mean_token_accuracy double precision,
	valid_mean_token_accuracy double precision,
	metrics				jsonb,				-- everything the provider sent
	PRIMARY KEY (job, checkpoint_id)
);
COMMENT ON TABLE llm.finetune_checkpoints IS 'checkpoints of a fine-tuning job with their metrics';

COMMENT ON COLUMN llm.finetune_jobs.name IS 'the model family: a success registers <name>-v<N>';
COMMENT ON COLUMN llm.finetune_jobs.estimated_cost_usd IS 'estimated trained tokens times the base model''s training price, when the job was made';
COMMENT ON COLUMN llm.finetune_jobs.cost_usd IS 'trained tokens (as the provider reported) times the base model''s training price';

SELECT pg_catalog.pg_extension_config_dump('llm.finetune_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('llm.finetune_jobs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('llm.finetune_events', '');
SELECT pg_catalog.pg_extension_config_dump('llm.finetune_checkpoints', '');

-- Jobs, their events and checkpoints: the ledger's rule (own rows, by
-- acting and login role) and llm_admin, also after SET ROLE.
ALTER TABLE llm.finetune_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY finetune_jobs_own_rows ON llm.finetune_jobs FOR SELECT
	USING ((submitted_by = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
ALTER TABLE llm.finetune_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY finetune_events_own_rows ON llm.finetune_events FOR SELECT
	USING (EXISTS (SELECT FROM llm.finetune_jobs j WHERE j.id = job));
ALTER TABLE llm.finetune_checkpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY finetune_checkpoints_own_rows ON llm.finetune_checkpoints FOR SELECT
	USING (EXISTS (SELECT FROM llm.finetune_jobs j WHERE j.id = job));
GRANT SELECT ON llm.finetune_jobs, llm.finetune_events, llm.finetune_checkpoints TO llm_user;

-- The progress of each job: where it stands, the last thing the provider
-- said, the share of steps done (from the latest event or checkpoint that
-- tells), the cost estimated and spent, the model it made.
CREATE VIEW llm.finetunes WITH (security_invoker = true) AS
SELECT j.id, j.name, j.submitted_by, j.base_model, j.training_set, j.training_version, j.method,
	   j.state, j.provider_status,
	   CASE WHEN j.state = 'succeeded' THEN 1::numeric
			WHEN p.total_steps > 0 THEN round(least(p.step::numeric / p.total_steps, 1), 4) END AS progress,
	   p.step, p.total_steps,
	   e.message AS last_event, e.created_at AS last_event_at,
	   j.estimated_tokens, j.estimated_cost_usd, j.trained_tokens, j.cost_usd,
	   j.fine_tuned_model, j.model, j.error,
	   j.created_at, j.started_at, j.finished_at
  FROM llm.finetune_jobs j
  LEFT JOIN LATERAL (
	SELECT x.message, x.created_at FROM llm.finetune_events x
	 WHERE x.job = j.id ORDER BY x.created_at DESC, x.event_id DESC LIMIT 1) e ON true
  LEFT JOIN LATERAL (
	SELECT s.step, s.total_steps FROM (
		SELECT (x.data ->> 'step')::bigint AS step, (x.data ->> 'total_steps')::bigint AS total_steps,
			   x.created_at
		  FROM llm.finetune_events x
		 WHERE x.job = j.id AND jsonb_typeof(x.data -> 'step') = 'number'
		UNION ALL
		SELECT c.step, (c.metrics ->> 'total_steps')::bigint, c.created_at
		  FROM llm.finetune_checkpoints c
		 WHERE c.job = j.id AND c.step IS NOT NULL) s
	 ORDER BY s.created_at DESC, s.step DESC LIMIT 1) p ON true;
COMMENT ON VIEW llm.finetunes IS 'one row per fine-tuning job: state, progress, last event, estimated and actual cost, resulting model';
GRANT SELECT ON llm.finetunes TO llm_user;

-- Whether role who, logged in as login, owns job row j (or is llm_admin).
CREATE FUNCTION llm._finetune_owns(who name, login name, submitted_by name, login_role name)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (submitted_by = who AND (login_role = login OR who = login))
		OR pg_has_role(who, 'llm_admin', 'MEMBER')
$$;
REVOKE ALL ON FUNCTION llm._finetune_owns(name, name, name, name) FROM PUBLIC;

-- Checks a job's hyperparameters: known keys, sensible values ("auto" for
-- the provider's choice).
CREATE FUNCTION llm._finetune_check_hyperparameters(method text, hyperparameters jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	v jsonb;
BEGIN
	IF jsonb_typeof(hyperparameters) <> 'object' THEN
		RAISE EXCEPTION 'hyperparameters must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example ''{"n_epochs": 3}''.';
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(hyperparameters) LOOP
		IF k NOT IN ('n_epochs', 'batch_size', 'learning_rate_multiplier', 'beta')
		   OR (k = 'beta' AND method <> 'dpo') THEN
			RAISE EXCEPTION 'unknown hyperparameter "%" for method %', k, method
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Known: n_epochs, batch_size, learning_rate_multiplier, and beta for dpo.';
		END IF;
		IF v = '"auto"' THEN
			CONTINUE;
		END IF;
		IF jsonb_typeof(v) <> 'number'
		   OR (k IN ('n_epochs', 'batch_size') AND (v::text::numeric <> trunc(v::text::numeric) OR v::text::numeric < 1))
		   OR (k = 'n_epochs' AND v::text::numeric > 50)
		   OR (k IN ('learning_rate_multiplier', 'beta') AND v::text::numeric <= 0) THEN
			RAISE EXCEPTION 'invalid value % of hyperparameter "%"', v, k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = CASE WHEN k = 'n_epochs' THEN 'Use a whole number from 1 to 50, or "auto".'
								  WHEN k = 'batch_size' THEN 'Use a whole number of at least 1, or "auto".'
								  ELSE 'Use a positive number, or "auto".' END;
		END IF;
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION llm._finetune_check_hyperparameters(text, jsonb) FROM PUBLIC;

CREATE FUNCTION llm_finetune_create(name text, base_model text, training_set text,
									training_version integer DEFAULT NULL, validation_set text DEFAULT NULL,
									method text DEFAULT 'supervised', hyperparameters jsonb DEFAULT NULL,
									suffix text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_finetune_create(text, text, text, integer, text, text, jsonb, text) IS
	'queue a fine-tuning job of a base model on a training set: its id (the worker runs it; llm_finetune or llm_admin)';

CREATE FUNCTION llm._finetune_create(caller name, login name, name text, base_model text, training_set text,
									 training_version integer, validation_set text, method text,
									 hyperparameters jsonb, suffix text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	base record;
	set_row record;
	validation_version integer;
	requested_version integer := training_version;
	epochs integer;
	estimate record;
	b record;
	too_long record;
	job bigint;
BEGIN
	IF NOT pg_has_role(caller, 'llm_finetune', 'MEMBER') AND NOT pg_has_role(caller, 'llm_admin', 'MEMBER') THEN
		RAISE EXCEPTION 'permission denied to fine-tune models'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Role "%s" is neither in llm_finetune nor in llm_admin.', caller),
				  HINT = 'An administrator can GRANT llm_finetune TO the role.';
	END IF;
	IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid fine-tuning job name "%"', coalesce(name, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use up to 63 letters, digits, "_", "." or "-", starting with a letter or digit: the models it makes are <name>-v1, <name>-v2 and so on.';
	END IF;
	SELECT * INTO base FROM llm.models m WHERE m.name = _finetune_create.base_model;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model "%" does not exist', coalesce(base_model, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'List the models with SELECT name FROM llm.models.';
	END IF;
	IF base.kind <> 'base' THEN
		RAISE EXCEPTION 'model "%" is not a base model', base_model
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is fine-tuned from "%s".', base.base_model),
				  HINT = 'Fine-tune its base model on a larger training set instead.';
	END IF;
	IF training_set IS NULL THEN
		RAISE EXCEPTION 'training_set must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT max(s.version) INTO training_version FROM llm.training_sets s
	 WHERE s.name = _finetune_create.training_set
	   AND (_finetune_create.training_version IS NULL OR s.version = _finetune_create.training_version)
	   AND llm._training_set_readable(caller, login, s.name, s.version);
	IF training_version IS NULL THEN
		RAISE EXCEPTION 'training set "%" does not exist', training_set
			USING ERRCODE = 'undefined_object',
				  DETAIL = CASE WHEN requested_version IS NOT NULL
								THEN format('No version %s of it that you can read.', requested_version)
								ELSE 'No version of it that you can read.' END,
				  HINT = 'SELECT name, version FROM llm.training_sets lists the sets you can read.';
	END IF;
	SELECT * INTO set_row FROM llm.training_sets s
	 WHERE s.name = _finetune_create.training_set AND s.version = _finetune_create.training_version;
	IF jsonb_typeof(base.limits -> 'max_training_example_tokens') = 'number' THEN
		-- the model's own limit on one example (a training set is checked
		-- against llmext's general one when it is made)
		SELECT e.ord, e.example_key, e.tokens INTO too_long FROM llm.training_examples e
		 WHERE e.set_name = _finetune_create.training_set AND e.set_version = _finetune_create.training_version
		   AND NOT e.held_out AND e.tokens > (base.limits ->> 'max_training_example_tokens')::bigint
		 ORDER BY e.ord LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'example % (id %) of training set "%" version % is too long for model "%"',
							too_long.ord, too_long.example_key, training_set, training_version, base.name
				USING ERRCODE = 'program_limit_exceeded',
					  DETAIL = format('It has about %s tokens; the model''s max_training_example_tokens is %s.',
									  too_long.tokens, base.limits ->> 'max_training_example_tokens'),
					  HINT = 'Make a version of the set without it, or fine-tune a model that takes longer examples.';
		END IF;
	END IF;
	IF validation_set IS NOT NULL THEN
		SELECT max(s.version) INTO validation_version FROM llm.training_sets s
		 WHERE s.name = _finetune_create.validation_set
		   AND llm._training_set_readable(caller, login, s.name, s.version);
		IF validation_version IS NULL THEN
			RAISE EXCEPTION 'training set "%" does not exist', validation_set
				USING ERRCODE = 'undefined_object',
					  HINT = 'The validation set is the latest version of a training set you can read.';
		END IF;
	END IF;
	method := coalesce(method, 'supervised');
	IF method NOT IN ('supervised', 'dpo') THEN
		RAISE EXCEPTION 'invalid fine-tuning method "%"', method
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use ''supervised'' or ''dpo''.';
	END IF;
	hyperparameters := coalesce(hyperparameters, '{}');
	PERFORM llm._finetune_check_hyperparameters(method, hyperparameters);
	IF suffix IS NOT NULL AND suffix !~ '^[A-Za-z0-9_-]{1,64}$' THEN
		RAISE EXCEPTION 'invalid suffix "%"', suffix
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use 1 to 64 letters, digits, "_" or "-".';
	END IF;

	-- the estimated cost is held to the caller's budgets before anything is
	-- queued (the actual cost reaches the ledger when the job ends)
	epochs := CASE WHEN jsonb_typeof(hyperparameters -> 'n_epochs') = 'number'
				   THEN (hyperparameters ->> 'n_epochs')::integer
				   ELSE llm._training_limit('default_epochs')::integer END;
	estimate := llm._training_cost(set_row.estimated_tokens, epochs, base.training_price);
	IF estimate.cost_usd IS NOT NULL THEN
		FOR b IN SELECT * FROM llm._budget_spend(caller, login, '[]', 0) LOOP
			IF b.spent_usd + estimate.cost_usd > b.limit_usd THEN
				RAISE EXCEPTION 'the estimated cost of the job (% USD) exceeds the % budget of % (% USD left)',
								estimate.cost_usd, b.period,
								CASE WHEN b.role IS NULL THEN 'everyone' ELSE format('role "%s"', b.role) END,
								trim_scale(round(greatest(b.limit_usd - b.spent_usd, 0), 10))
					USING ERRCODE = 'LL402',
						  DETAIL = format('The limit is %s USD and %s USD has been spent this %s; the job would train about %s tokens.',
										  b.limit_usd, trim_scale(round(b.spent_usd, 10)), b.period, estimate.trained_tokens),
						  HINT = 'Train on fewer examples or epochs, or an llm_admin can raise the budget with llm_budget_set.';
			END IF;
		END LOOP;
	END IF;

	INSERT INTO llm.finetune_jobs (name, submitted_by, login_role, base_model, provider, training_set,
								   training_version, validation_set, validation_version, method,
								   hyperparameters, suffix, estimated_tokens, estimated_cost_usd)
	VALUES (name, caller, login, base.name, base.provider, training_set, training_version,
			validation_set, validation_version, method, hyperparameters, suffix,
			estimate.trained_tokens, estimate.cost_usd)
	RETURNING id INTO job;
	PERFORM llm._wake_at_commit();
	RETURN job;
END
$$;
REVOKE ALL ON FUNCTION llm._finetune_create(name, name, text, text, text, integer, text, text, jsonb, text) FROM PUBLIC;

CREATE FUNCTION llm_finetune_cancel(job bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_finetune_cancel(bigint) IS
	'cancel a fine-tuning job: a queued one at once, a started one through the worker; whether anything changed';

CREATE FUNCTION llm._finetune_cancel(caller name, login name, job bigint)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j record;
BEGIN
	SELECT * INTO j FROM llm.finetune_jobs f WHERE f.id = _finetune_cancel.job FOR UPDATE;
	IF NOT FOUND OR NOT llm._finetune_owns(caller, login, j.submitted_by, j.login_role) THEN
		-- someone else's job is as good as absent
		RAISE EXCEPTION 'fine-tuning job % does not exist', coalesce(job::text, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'SELECT id, name, state FROM llm.finetunes lists yours.';
	END IF;
	IF j.state = 'queued' THEN
		UPDATE llm.finetune_jobs f
		   SET state = 'cancelled', finished_at = now(), updated_at = now()
		 WHERE f.id = j.id;
		RETURN true;
	ELSIF j.state IN ('uploading', 'creating', 'running') THEN
		UPDATE llm.finetune_jobs f
		   SET state = 'cancelling', next_poll_at = now(), updated_at = now()
		 WHERE f.id = j.id;
		PERFORM llm._wake_at_commit();
		RETURN true;
	END IF;
	RETURN false;
END
$$;
REVOKE ALL ON FUNCTION llm._finetune_cancel(name, name, bigint) FROM PUBLIC;

-- A job's state as JSON (row level security applies: own jobs, or all for
-- llm_admin).
CREATE FUNCTION llm_finetune_status(job bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	f record;
BEGIN
	SELECT * INTO f FROM llm.finetunes v WHERE v.id = llm_finetune_status.job;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'fine-tuning job % does not exist', coalesce(job::text, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'SELECT id, name, state FROM llm.finetunes lists yours.';
	END IF;
	RETURN jsonb_build_object(
		'id', f.id, 'name', f.name, 'state', f.state, 'provider_status', f.provider_status,
		'progress', f.progress, 'step', f.step, 'total_steps', f.total_steps,
		'last_event', f.last_event, 'last_event_at', f.last_event_at,
		'estimated_tokens', f.estimated_tokens, 'estimated_cost_usd', f.estimated_cost_usd,
		'trained_tokens', f.trained_tokens, 'cost_usd', f.cost_usd,
		'fine_tuned_model', f.fine_tuned_model, 'model', f.model, 'error', f.error,
		'created_at', f.created_at, 'started_at', f.started_at, 'finished_at', f.finished_at);
END
$$;
COMMENT ON FUNCTION llm_finetune_status(bigint) IS
	'a fine-tuning job''s state, progress, last event, estimated and actual cost, resulting model and error';

-- Called by the worker when the provider reports success: registers the
-- tuned model as <job name>-v<N> with its lineage and prices, and finishes
-- the job, in the caller's transaction.  Called again for a job already
-- registered, it returns the same model.  Executable by no role.
CREATE FUNCTION llm._finetune_register(job bigint, fine_tuned_model text, trained_tokens bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j record;
	base record;
	set_row record;
	n integer;
	model_name text;
BEGIN
	SELECT * INTO j FROM llm.finetune_jobs f WHERE f.id = _finetune_register.job FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'fine-tuning job % does not exist', coalesce(job::text, 'NULL')
			USING ERRCODE = 'undefined_object';
	END IF;
	IF j.model IS NOT NULL THEN
		RETURN j.model;
	END IF;
	IF fine_tuned_model IS NULL OR fine_tuned_model = '' THEN
		RAISE EXCEPTION 'fine-tuning job %: the provider named no model', job
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT * INTO base FROM llm.models m WHERE m.name = j.base_model;
	SELECT * INTO set_row FROM llm.training_sets s WHERE s.name = j.training_set AND s.version = j.training_version;
	PERFORM pg_advisory_xact_lock(hashtext('llmext finetune ' || j.name));
	SELECT count(*) + 1 INTO n FROM llm.models m JOIN llm.finetune_jobs f ON f.id = m.finetune_job
	 WHERE f.name = j.name;
	model_name := j.name || '-v' || n;
	WHILE EXISTS (SELECT FROM llm.models m WHERE m.name = model_name) LOOP
		n := n + 1;
		model_name := j.name || '-v' || n;
	END LOOP;
	INSERT INTO llm.models (name, provider, remote_model, kind, base_model, input_price, output_price,
							cached_input_price, params, training_set, training_version,
							prompt_name, prompt_version, finetune_job)
	VALUES (model_name, base.provider, fine_tuned_model, 'fine_tuned', base.name,
			coalesce(base.tuned_input_price, base.input_price),
			coalesce(base.tuned_output_price, base.output_price),
			coalesce(base.tuned_cached_input_price,
					 CASE WHEN base.tuned_input_price IS NULL THEN base.cached_input_price END),
			base.params, j.training_set, j.training_version,
			set_row.prompt_name, set_row.prompt_version, j.id);
	UPDATE llm.finetune_jobs f
	   SET state = 'succeeded', fine_tuned_model = _finetune_register.fine_tuned_model,
		   model = model_name, trained_tokens = _finetune_register.trained_tokens,
		   cost_usd = trim_scale(round(_finetune_register.trained_tokens * base.training_price / 1000000, 10)),
		   error = NULL, finished_at = now(), updated_at = now()
	 WHERE f.id = j.id;
	RETURN model_name;
END
$$;
REVOKE ALL ON FUNCTION llm._finetune_register(bigint, text, bigint) FROM PUBLIC;

REVOKE ALL ON FUNCTION llm_finetune_create(text, text, text, integer, text, text, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_finetune_cancel(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_finetune_status(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_finetune_create(text, text, text, integer, text, text, jsonb, text) TO llm_finetune, llm_admin;
GRANT EXECUTE ON FUNCTION llm_finetune_cancel(bigint) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_finetune_status(bigint) TO llm_user;
-- Feedback from production: a score, a correction or a note on a call the
-- caller may see, by its call_id (llm.calls.entry_id, which llm_chat and
-- queued results return as "call_id"); and evaluation cases made from it
-- with what the call was asked (llm.call_io).  Training sets are made from
-- the same rows with llm_training_set_create over a query (docs/cookbook.md).

CREATE TABLE llm.feedback (
	id				bigserial PRIMARY KEY,
	call_id			text NOT NULL REFERENCES llm.calls (entry_id) ON DELETE CASCADE,
	score			numeric CHECK (score <> 'NaN'),
	correction		text,			-- the answer the call should have given
	note			text,
	given_by		name NOT NULL,
	login_role		name NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now(),
	CHECK (score IS NOT NULL OR correction IS NOT NULL OR note IS NOT NULL)
);
CREATE INDEX feedback_call_id_idx ON llm.feedback (call_id);
CREATE INDEX feedback_created_at_idx ON llm.feedback (created_at);
COMMENT ON TABLE llm.feedback IS 'feedback on production calls: score, correction, note; who and when';
SELECT pg_catalog.pg_extension_config_dump('llm.feedback', '');
SELECT pg_catalog.pg_extension_config_dump('llm.feedback_id_seq', '');

-- Feedback on the calls you may see (your own, by the ledger's rule), and
-- llm_admin all.
ALTER TABLE llm.feedback ENABLE ROW LEVEL SECURITY;
CREATE POLICY feedback_on_own_calls ON llm.feedback FOR SELECT
	USING (call_id IN (SELECT c.entry_id FROM llm.calls c)
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
GRANT SELECT ON llm.feedback TO llm_user;

CREATE FUNCTION llm_feedback(call_id text, score numeric DEFAULT NULL, correction text DEFAULT NULL,
							 note text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_feedback(text, numeric, text, text) IS
	'record feedback (a score, a correction, a note) on one of your calls, by the call_id its result carries: the feedback id';

-- Whether caller (with login) may see the ledger row entry_id: the ledger's
-- row level security, applied by hand in a SECURITY DEFINER body.
CREATE FUNCTION llm._call_visible(caller name, login name, entry_id text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT EXISTS (SELECT FROM llm.calls c
					WHERE c.entry_id = _call_visible.entry_id
					  AND ((c.role = caller AND (c.login_role = login OR caller = login))
						   OR pg_has_role(caller, 'llm_admin', 'MEMBER')))
$$;
REVOKE ALL ON FUNCTION llm._call_visible(name, name, text) FROM PUBLIC;

CREATE FUNCTION llm._feedback(caller name, login name, call_id text, score numeric, correction text,
							  note text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
BEGIN
	IF call_id IS NULL THEN
		RAISE EXCEPTION 'call_id must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'Pass the call_id of a call''s result (llm_chat returns it; so do queued results).';
	END IF;
	IF score IS NULL AND correction IS NULL AND note IS NULL THEN
		RAISE EXCEPTION 'feedback needs a score, a correction or a note'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF score = 'NaN' THEN
		RAISE EXCEPTION 'score must be a number, not NaN' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF octet_length(correction) > 1048576 OR octet_length(note) > 1048576 THEN
		RAISE EXCEPTION 'a correction or note may take at most 1 MB'
			USING ERRCODE = 'program_limit_exceeded';
	END IF;
	-- a call made a moment ago may still be on its way to the ledger
	IF NOT llm._call_visible(caller, login, call_id) THEN
		PERFORM @extschema@.llm_flush('5 seconds');
	END IF;
	IF NOT llm._call_visible(caller, login, call_id) THEN
		RAISE EXCEPTION 'call "%" does not exist', call_id
			USING ERRCODE = 'undefined_object',
				  HINT = 'Feedback is given on your own calls, by the call_id of their result (llm.calls.entry_id).';
	END IF;
	INSERT INTO llm.feedback (call_id, score, correction, note, given_by, login_role)
	VALUES (call_id, score, correction, note, caller, login)
	RETURNING feedback.id INTO id;
	RETURN id;
END
$$;
REVOKE ALL ON FUNCTION llm._feedback(name, name, text, numeric, text, text) FROM PUBLIC;

CREATE FUNCTION llm_eval_cases_from_feedback(set text, since timestamptz, min_score numeric DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_cases_from_feedback(text, timestamptz, numeric) IS
	'add your production calls with feedback since a time as cases: expected = the correction, else the answer when the score is at least min_score; how many';

-- A case per call with feedback given since `since` (the latest feedback
-- of the call counts): key "call:<call_id>", vars and input as the call was
-- asked (llm.call_io), expected = the correction, else the call's answer
-- when its score is at least min_score; calls with neither, or whose inputs
-- were not kept, are skipped, and so are keys the set has already.
CREATE FUNCTION llm._eval_cases_from_feedback(caller name, login name, set text, since timestamptz,
											  min_score numeric)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s llm.eval_sets := llm._eval_set_of(caller, login, set);
	n integer;
BEGIN
	IF since IS NULL THEN
		RAISE EXCEPTION 'since must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'For example now() - interval ''7 days''.';
	END IF;
	IF min_score = 'NaN' THEN
		RAISE EXCEPTION 'min_score must be a number, not NaN' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO llm.eval_cases (set_name, case_key, vars, input, expected, tags, source)
	SELECT s.name, 'call:' || f.call_id, io.vars, io.input,
		   to_jsonb(coalesce(f.correction, CASE WHEN f.score >= min_score THEN io.output END)),
		   ARRAY['feedback'] || CASE WHEN io.prompt_name IS NOT NULL
									 THEN ARRAY['prompt:' || io.prompt_name || '/' || io.prompt_version]
									 ELSE '{}' END,
		   'feedback:' || f.id
	  FROM (SELECT DISTINCT ON (fb.call_id) fb.*
			  FROM llm.feedback fb
			 WHERE fb.created_at >= since
			 ORDER BY fb.call_id, fb.created_at DESC, fb.id DESC) f
	  JOIN llm.call_io io ON io.entry_id = f.call_id
	 -- the ledger's rule, on the copy of the call's roles llm.call_io keeps
	 WHERE ((io.role = caller AND (io.login_role = login OR caller = login))
			OR pg_has_role(caller, 'llm_admin', 'MEMBER'))
	   AND (io.vars IS NOT NULL OR io.input IS NOT NULL)
	   AND coalesce(f.correction, CASE WHEN f.score >= min_score THEN io.output END) IS NOT NULL
	 ORDER BY f.call_id
	ON CONFLICT (set_name, case_key) DO NOTHING;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_cases_from_feedback(name, name, text, timestamptz, numeric) FROM PUBLIC;

REVOKE ALL ON FUNCTION llm_feedback(text, numeric, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_cases_from_feedback(text, timestamptz, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_feedback(text, numeric, text, text) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_cases_from_feedback(text, timestamptz, numeric) TO llm_user;
-- Evaluation: sets of labelled cases, runs of variants (a stored prompt
-- version or label with a model, or a model with a plain system prompt) over
-- them through the queue, one result row per case x variant x repeat, and
-- reports over those rows.

CREATE TABLE llm.eval_sets (
	name			text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
	description		text,
	owner			name NOT NULL,
	login_role		name NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE llm.eval_sets IS 'evaluation sets: named collections of labelled cases';

CREATE TABLE llm.eval_cases (
	set_name		text NOT NULL REFERENCES llm.eval_sets ON DELETE CASCADE,
	case_key		text NOT NULL,
	vars			jsonb CHECK (vars IS NULL OR jsonb_typeof(vars) = 'object'),
	input			text,
	expected		jsonb,
	tags			text[] NOT NULL DEFAULT '{}',
	weight			numeric NOT NULL DEFAULT 1 CHECK (weight >= 0),
	source			text,			-- e.g. 'training:<set>/<version>' for held-out examples
	created_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (set_name, case_key),
	CHECK (vars IS NOT NULL OR input IS NOT NULL)
);
COMMENT ON TABLE llm.eval_cases IS 'the cases of an evaluation set: what to ask (vars for a prompt, or input) and what is expected';

CREATE TABLE llm.eval_runs (
	id				bigserial PRIMARY KEY,
	set_name		text NOT NULL REFERENCES llm.eval_sets,
	variants		jsonb NOT NULL CHECK (jsonb_typeof(variants) = 'array'),	-- as given, checked
	repeats			integer NOT NULL DEFAULT 1 CHECK (repeats BETWEEN 1 AND 100),
	scorer			jsonb NOT NULL DEFAULT '{"type": "exact"}' CHECK (jsonb_typeof(scorer) = 'object'),
	options			jsonb CHECK (options IS NULL OR jsonb_typeof(options) = 'object'),
	tag				text NOT NULL UNIQUE,	-- the queue batch: 'eval-<id>'
	state			text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'cancelled')),
	submitted_by	name NOT NULL,
	login_role		name NOT NULL,
	cases			integer NOT NULL,		-- cases x variants x repeats requests queued
	requests		integer NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now(),
	finished_at		timestamptz
);
COMMENT ON TABLE llm.eval_runs IS 'evaluation runs: a set, its variants, repeats and scorer; progress is the queue batch tag';

CREATE TABLE llm.eval_results (
	run				bigint NOT NULL REFERENCES llm.eval_runs ON DELETE CASCADE,
	case_key		text NOT NULL,
	variant			text NOT NULL,
	repeat			integer NOT NULL,
	request_id		bigint,				-- llm.requests.id
	call_entry_id	text,				-- llm.calls.entry_id of the answer, when there was one
	output			text,
	output_json		jsonb,				-- the output parsed as JSON, when it is JSON
	score			double precision,	-- 0..1; NULL when there is no output
	passed			boolean,
	reason			text,				-- a judge's reason, or why the scorer gave 0
	input_tokens	bigint,
	output_tokens	bigint,
	cost_usd		numeric,
	judge_cost_usd	numeric,			-- what the judge call cost (scorer "judge")
	judge_request_id bigint,			-- llm.requests.id of the judge call (scorer "judge")
	latency_ms		double precision,
	temperature		double precision,	-- what the request was sent with (NULL: the provider's default)
	seed			bigint,
	contaminated	boolean NOT NULL DEFAULT false,	-- the case's input is in the variant model's training set
	error			text,
	created_at		timestamptz NOT NULL DEFAULT now(),
	scored_at		timestamptz,		-- when scored or its error recorded; NULL while pending
	PRIMARY KEY (run, case_key, variant, repeat)
);
COMMENT ON TABLE llm.eval_results IS 'one row per case x variant x repeat of a run: output, score, tokens, cost, latency, error';

COMMENT ON COLUMN llm.eval_results.scored_at IS 'when the answer was scored or its error recorded; NULL while pending';
CREATE INDEX eval_results_request_idx ON llm.eval_results (request_id);
CREATE INDEX eval_results_judge_request_idx ON llm.eval_results (judge_request_id)
	WHERE judge_request_id IS NOT NULL;
-- the rows still waiting for their answer (or judge), by run
CREATE INDEX eval_results_pending_idx ON llm.eval_results (run) WHERE scored_at IS NULL;

SELECT pg_catalog.pg_extension_config_dump('llm.eval_sets', '');
SELECT pg_catalog.pg_extension_config_dump('llm.eval_cases', '');
SELECT pg_catalog.pg_extension_config_dump('llm.eval_runs', '');
SELECT pg_catalog.pg_extension_config_dump('llm.eval_runs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('llm.eval_results', '');

-- The ledger's rule: own rows by acting and login role, and llm_admin.
ALTER TABLE llm.eval_sets ENABLE ROW LEVEL SECURITY;
CREATE POLICY eval_sets_own_rows ON llm.eval_sets FOR SELECT
	USING ((owner = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
ALTER TABLE llm.eval_cases ENABLE ROW LEVEL SECURITY;
CREATE POLICY eval_cases_own_rows ON llm.eval_cases FOR SELECT
	USING (set_name IN (SELECT s.name FROM llm.eval_sets s));
ALTER TABLE llm.eval_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY eval_runs_own_rows ON llm.eval_runs FOR SELECT
	USING ((submitted_by = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
ALTER TABLE llm.eval_results ENABLE ROW LEVEL SECURITY;
CREATE POLICY eval_results_own_rows ON llm.eval_results FOR SELECT
	USING (run IN (SELECT r.id FROM llm.eval_runs r));
GRANT SELECT ON llm.eval_sets, llm.eval_cases, llm.eval_runs, llm.eval_results TO llm_user;

-- Whether caller (with login) owns a set or a run, or is an llm_admin.
CREATE FUNCTION llm._eval_owns(who name, login name, owner name, owner_login name)
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (owner = who AND (owner_login = login OR who = login))
		   OR pg_has_role(who, 'llm_admin', 'MEMBER')
$$;
REVOKE ALL ON FUNCTION llm._eval_owns(name, name, name, name) FROM PUBLIC;

CREATE FUNCTION llm_eval_set_create(name text, description text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_set_create(text, text) IS 'create an evaluation set of your own: its name';

CREATE FUNCTION llm._eval_set_create(caller name, login name, name text, description text)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF name IS NULL THEN
		RAISE EXCEPTION 'an evaluation set''s name must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid evaluation set name "%"', name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use 1 to 63 letters, digits, "_", "." or "-", starting with a letter or digit.';
	END IF;
	IF EXISTS (SELECT FROM llm.eval_sets s WHERE s.name = _eval_set_create.name) THEN
		RAISE EXCEPTION 'evaluation set "%" already exists', name
			USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO llm.eval_sets (name, description, owner, login_role)
	VALUES (name, description, caller, login);
	RETURN name;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_set_create(name, name, text, text) FROM PUBLIC;

-- The set, if caller may add to it or run it; else 42704.
CREATE FUNCTION llm._eval_set_of(caller name, login name, set_name text)
RETURNS llm.eval_sets
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s llm.eval_sets;
BEGIN
	IF set_name IS NULL THEN
		RAISE EXCEPTION 'the evaluation set must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO s FROM llm.eval_sets e WHERE e.name = set_name;
	IF NOT FOUND OR NOT llm._eval_owns(caller, login, s.owner, s.login_role) THEN
		RAISE EXCEPTION 'evaluation set "%" does not exist', set_name
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it with llm_eval_set_create.';
	END IF;
	RETURN s;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_set_of(name, name, text) FROM PUBLIC;

-- Stores cases read by llm_eval_cases_add (as a JSON array of its rows).
-- Harmless: only into a set of the caller's own, rows the caller could
-- have produced with a query anyway.
CREATE FUNCTION llm.llm_eval_cases_store(set_name text, rows jsonb)
RETURNS integer
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;

CREATE FUNCTION llm._eval_cases_store(caller name, login name, set_name text, rows jsonb)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s llm.eval_sets := llm._eval_set_of(caller, login, set_name);
	r jsonb;
	n integer := 0;
	k text;
BEGIN
	IF jsonb_typeof(rows) IS DISTINCT FROM 'array' THEN
		RAISE EXCEPTION 'cases must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR r IN SELECT value FROM jsonb_array_elements(rows) LOOP
		k := coalesce(r ->> 'key', r ->> 'case_key');
		IF k IS NULL OR k = '' THEN
			RAISE EXCEPTION 'every case needs a non-empty "key" column'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'The query returns key, vars or input, expected, and optionally tags and weight.';
		END IF;
		IF jsonb_typeof(r -> 'vars') IS DISTINCT FROM 'object' AND nullif(r ->> 'input', '') IS NULL THEN
			RAISE EXCEPTION 'case "%" has neither vars (a JSON object) nor an input', k
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF EXISTS (SELECT FROM llm.eval_cases c WHERE c.set_name = s.name AND c.case_key = k) THEN
			RAISE EXCEPTION 'evaluation set "%" already has a case "%"', s.name, k
				USING ERRCODE = 'unique_violation';
		END IF;
		INSERT INTO llm.eval_cases (set_name, case_key, vars, input, expected, tags, weight, source)
		VALUES (s.name, k,
				CASE WHEN jsonb_typeof(r -> 'vars') = 'object' THEN r -> 'vars' END,
				nullif(r ->> 'input', ''),
				CASE WHEN jsonb_typeof(r -> 'expected') <> 'null' THEN r -> 'expected' END,
				CASE WHEN jsonb_typeof(r -> 'tags') = 'array'
					 THEN ARRAY(SELECT jsonb_array_elements_text(r -> 'tags')) ELSE '{}' END,
				coalesce((r ->> 'weight')::numeric, 1),
				'query');
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_cases_store(name, name, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.llm_eval_cases_store(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.llm_eval_cases_store(text, jsonb) TO llm_user;

-- Runs the query with the caller's rights (SECURITY INVOKER, no SET
-- search_path), like llm_training_set_create.
CREATE FUNCTION llm_eval_cases_add(set text, query text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
	rows jsonb;
BEGIN
	IF set IS NULL OR query IS NULL THEN
		RAISE EXCEPTION 'the set and the query must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF btrim(query) = '' THEN
		RAISE EXCEPTION 'the query must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	EXECUTE 'SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(q)), ''[]''::pg_catalog.jsonb) FROM ('
			|| query || ') q' INTO rows;
	RETURN llm.llm_eval_cases_store(set, rows);
END
$$;
COMMENT ON FUNCTION llm_eval_cases_add(text, text) IS
	'add cases to an evaluation set from a query (key, vars or input, expected, tags, weight) run with your rights: how many';

CREATE FUNCTION llm_eval_cases_from_training(set text, training_set text, version integer)
RETURNS integer
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_cases_from_training(text, text, integer) IS
	'add a training set version''s held-out examples as cases (input: the last user message; expected: the answer): how many';

CREATE FUNCTION llm._eval_cases_from_training(caller name, login name, set text, training_set text,
											  version integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s llm.eval_sets := llm._eval_set_of(caller, login, set);
	n integer;
BEGIN
	IF training_set IS NULL OR version IS NULL THEN
		RAISE EXCEPTION 'the training set and its version must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT llm._training_set_readable(caller, login, training_set, version) THEN
		RAISE EXCEPTION 'training set "%" has no version %', training_set, version
			USING ERRCODE = 'undefined_object';
	END IF;
	INSERT INTO llm.eval_cases (set_name, case_key, input, expected, source)
	SELECT s.name, e.example_key,
		   (SELECT m ->> 'content' FROM jsonb_array_elements(e.line::jsonb -> 'messages') WITH ORDINALITY x(m, i)
			 WHERE m ->> 'role' = 'user' ORDER BY i DESC LIMIT 1),
		   (SELECT to_jsonb(m ->> 'content') FROM jsonb_array_elements(e.line::jsonb -> 'messages') WITH ORDINALITY x(m, i)
			 WHERE m ->> 'role' = 'assistant' ORDER BY i DESC LIMIT 1),
		   'training:' || training_set || '/' || version
	  FROM llm.training_examples e
	 WHERE e.set_name = training_set AND e.set_version = version AND e.held_out
	 ORDER BY e.ord
	ON CONFLICT (set_name, case_key) DO NOTHING;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_cases_from_training(name, name, text, text, integer) FROM PUBLIC;

-- The last user message of a list of chat messages.
CREATE FUNCTION llm._eval_last_user(messages jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT m ->> 'content' FROM jsonb_array_elements(messages) WITH ORDINALITY x(m, i)
	 WHERE m ->> 'role' = 'user' ORDER BY i DESC LIMIT 1
$$;
REVOKE ALL ON FUNCTION llm._eval_last_user(jsonb) FROM PUBLIC;

-- Runs: every case x variant x repeat is queued (tag 'eval-<run>'), and its
-- llm.eval_results row made here, empty, with its request id.  The worker
-- scores the answers in sets as it writes them (llm._eval_collect); only a
-- "function" scorer, the submitter's own code, runs as a callback
-- (llm.eval_collect) with the submitter's rights.
CREATE FUNCTION llm_eval_run(set text, variants jsonb, repeats integer DEFAULT 1,
							 scorer jsonb DEFAULT '{"type": "exact"}', options jsonb DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_run(text, jsonb, integer, jsonb, jsonb) IS
	'queue an evaluation run of variants over a set (tag eval-<run>): the run id';

CREATE FUNCTION llm._eval_run(caller name, login name, set text, variants jsonb, repeats integer,
							  scorer jsonb, options jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s llm.eval_sets := llm._eval_set_of(caller, login, set);
	v jsonb;
	vname text;
	names text[] := '{}';
	m llm.models;
	c llm.eval_cases;
	fn regprocedure;
	run_id bigint;
	run_tag text;
	n_cases integer;
	rendered jsonb;
	msgs jsonb;
	opts jsonb;
	model_name text;
	contaminated boolean;
	chosen record;
	callback regprocedure;
	-- each case x variant, queued at the end in one statement with its repeats
	item_case text[] := '{}';
	item_variant text[] := '{}';
	item_model text[] := '{}';
	item_messages jsonb[] := '{}';
	item_options jsonb[] := '{}';
	item_prompt text[] := '{}';
	item_version integer[] := '{}';
	item_contaminated boolean[] := '{}';
BEGIN
	IF variants IS NULL OR jsonb_typeof(variants) <> 'array' OR jsonb_array_length(variants) = 0 THEN
		RAISE EXCEPTION 'variants must be a non-empty JSON array'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example ''[{"name": "a", "prompt": "triage", "version": 3, "model": "mini"}]''.';
	END IF;
	IF repeats IS NULL OR repeats NOT BETWEEN 1 AND 100 THEN
		RAISE EXCEPTION 'repeats must be from 1 to 100' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF options IS NOT NULL AND jsonb_typeof(options) <> 'object' THEN
		RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	scorer := coalesce(scorer, '{"type": "exact"}');
	IF jsonb_typeof(scorer) <> 'object' OR jsonb_typeof(scorer -> 'type') IS DISTINCT FROM 'string' THEN
		RAISE EXCEPTION 'a scorer is a JSON object with a "type"' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF scorer ->> 'type' = 'function' THEN
		fn := to_regprocedure((scorer ->> 'function') || '(text, jsonb, jsonb)');
		IF fn IS NULL THEN
			RAISE EXCEPTION 'function %(text, jsonb, jsonb) does not exist', scorer ->> 'function'
				USING ERRCODE = 'undefined_function',
					  HINT = 'Name the scorer function with its schema, e.g. {"type": "function", "function": "public.my_score"}.';
		END IF;
		IF NOT has_function_privilege(caller, fn, 'EXECUTE') THEN
			RAISE EXCEPTION 'role "%" may not execute %', caller, fn USING ERRCODE = 'insufficient_privilege';
		END IF;
		scorer := scorer || jsonb_build_object('function', fn::text);
	ELSIF scorer ->> 'type' = 'judge' THEN
		-- a stored prompt run on a judge model: both exist, the version is fixed now
		IF jsonb_typeof(scorer -> 'prompt') IS DISTINCT FROM 'string' THEN
			RAISE EXCEPTION 'a judge scorer names its stored prompt: {"type": "judge", "prompt": "...", "model": "..."}'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF scorer ? 'version' AND scorer ? 'label' THEN
			RAISE EXCEPTION 'the judge scorer: give a version or a label, not both'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF scorer ? 'threshold' AND jsonb_typeof(scorer -> 'threshold') IS DISTINCT FROM 'number' THEN
			RAISE EXCEPTION 'the judge scorer''s threshold must be a number'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		SELECT * INTO chosen FROM llm._prompt_choose(scorer ->> 'prompt', (scorer ->> 'version')::integer,
													 scorer ->> 'label', NULL);
		model_name := coalesce(scorer ->> 'model', chosen.chosen_model,
							   (SELECT p.model FROM llm.prompts p
								 WHERE p.name = scorer ->> 'prompt' AND p.version = chosen.chosen_version));
		IF model_name IS NULL THEN
			RAISE EXCEPTION 'the judge scorer names no model' USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF NOT EXISTS (SELECT FROM llm.models mm WHERE mm.name = model_name) THEN
			RAISE EXCEPTION 'the judge scorer: model "%" does not exist', model_name
				USING ERRCODE = 'undefined_object';
		END IF;
		scorer := scorer || jsonb_build_object('version', chosen.chosen_version, 'model', model_name);
	ELSE
		-- refuses an unknown scorer; with no output an embedding_similarity
		-- scorer checks its model and sends no request
		PERFORM @extschema@.llm_eval_score(scorer,
			CASE WHEN scorer ->> 'type' <> 'embedding_similarity' THEN 'x' END, '"x"', '{}');
	END IF;
	SELECT count(*) INTO n_cases FROM llm.eval_cases ec WHERE ec.set_name = s.name;
	IF n_cases = 0 THEN
		RAISE EXCEPTION 'evaluation set "%" has no cases', s.name USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- every variant is checked before anything is queued
	FOR v IN SELECT value FROM jsonb_array_elements(variants) LOOP
		vname := v ->> 'name';
		IF jsonb_typeof(v) <> 'object' OR vname IS NULL
		   OR vname !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
			RAISE EXCEPTION 'every variant needs a "name" (1 to 63 letters, digits, "_", "." or "-")'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF vname = ANY (names) THEN
			RAISE EXCEPTION 'variant name "%" is used twice', vname USING ERRCODE = 'invalid_parameter_value';
		END IF;
		names := names || vname;
		IF v ? 'options' AND jsonb_typeof(v -> 'options') <> 'object' THEN
			RAISE EXCEPTION 'variant "%": options must be a JSON object', vname
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF v ? 'prompt' THEN
			IF v ? 'system' THEN
				RAISE EXCEPTION 'variant "%": give a prompt or a system text, not both', vname
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			IF v ? 'version' AND v ? 'label' THEN
				RAISE EXCEPTION 'variant "%": give a version or a label, not both', vname
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			SELECT * INTO chosen FROM llm._prompt_choose(v ->> 'prompt', (v ->> 'version')::integer,
														 v ->> 'label', NULL);
			model_name := coalesce(v ->> 'model', chosen.chosen_model,
								   (SELECT p.model FROM llm.prompts p
									 WHERE p.name = v ->> 'prompt' AND p.version = chosen.chosen_version));
		ELSE
			model_name := v ->> 'model';
		END IF;
		IF model_name IS NULL THEN
			RAISE EXCEPTION 'variant "%" names no model', vname USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF NOT EXISTS (SELECT FROM llm.models mm WHERE mm.name = model_name) THEN
			RAISE EXCEPTION 'variant "%": model "%" does not exist', vname, model_name
				USING ERRCODE = 'undefined_object';
		END IF;
	END LOOP;

	IF scorer ->> 'type' = 'function' THEN
		callback := 'llm.eval_collect(bigint, jsonb)'::regprocedure;
	END IF;
	run_id := nextval('llm.eval_runs_id_seq');
	run_tag := 'eval-' || run_id;
	INSERT INTO llm.eval_runs (id, set_name, variants, repeats, scorer, options, tag, submitted_by,
							   login_role, cases, requests)
	VALUES (run_id, s.name, variants, repeats, scorer, options, run_tag, caller, login, n_cases,
			n_cases * jsonb_array_length(variants) * repeats);

	FOR c IN SELECT * FROM llm.eval_cases ec WHERE ec.set_name = s.name ORDER BY ec.case_key LOOP
		FOR v IN SELECT value FROM jsonb_array_elements(variants) LOOP
			IF v ? 'prompt' THEN
				rendered := @extschema@.llm_render(v ->> 'prompt',
					coalesce(c.vars, '{}') || CASE WHEN c.input IS NOT NULL
												   THEN jsonb_build_object('input', c.input) ELSE '{}' END,
					(v ->> 'version')::integer, v ->> 'label', NULL);
				msgs := rendered -> 'messages';
				model_name := coalesce(v ->> 'model', rendered ->> 'model');
				opts := coalesce(rendered -> 'params', '{}')
						|| CASE WHEN jsonb_typeof(rendered -> 'response_format') = 'object'
								THEN jsonb_build_object('response_format', rendered -> 'response_format')
								ELSE '{}' END;
			ELSE
				rendered := NULL;
				IF coalesce(c.input, c.vars ->> 'input') IS NULL THEN
					RAISE EXCEPTION 'case "%" has no input for variant "%", which has no prompt',
						c.case_key, v ->> 'name' USING ERRCODE = 'invalid_parameter_value';
				END IF;
				msgs := CASE WHEN coalesce(v ->> 'system', '') = '' THEN '[]'::jsonb
							 ELSE jsonb_build_array(jsonb_build_object('role', 'system', 'content', v ->> 'system')) END
						|| jsonb_build_array(jsonb_build_object('role', 'user',
															   'content', coalesce(c.input, c.vars ->> 'input')));
				model_name := v ->> 'model';
				opts := '{}';
			END IF;
			-- repeats measure consistency: never answered from the cache
			opts := opts || coalesce(options, '{}') || coalesce(v -> 'options', '{}')
					|| '{"cache": "off"}';
			IF m.name IS DISTINCT FROM model_name THEN
				SELECT * INTO m FROM llm.models mm WHERE mm.name = model_name;
			END IF;
			contaminated := m.training_set IS NOT NULL AND EXISTS (
				SELECT FROM llm.training_examples e
				 WHERE e.set_name = m.training_set AND e.set_version = m.training_version
				   AND NOT e.held_out
				   AND llm._eval_last_user(e.line::jsonb -> 'messages') = llm._eval_last_user(msgs));
			item_case := item_case || c.case_key;
			item_variant := item_variant || (v ->> 'name');
			item_model := item_model || model_name;
			item_messages := item_messages || msgs;
			item_options := item_options || opts;
			item_prompt := item_prompt || (rendered ->> 'prompt');
			item_version := item_version || (rendered ->> 'version')::integer;
			item_contaminated := item_contaminated || contaminated;
		END LOOP;
	END LOOP;
	-- every repeat a request of its own, and its empty result row
	WITH item AS (
		SELECT x.*, rep, nextval('llm.requests_id_seq') AS request_id
		  FROM unnest(item_case, item_variant, item_model, item_messages, item_options, item_prompt,
					  item_version, item_contaminated)
			   AS x(case_key, variant, model, messages, options, prompt, version, contaminated),
			   generate_series(1, repeats) rep),
	queued AS (
		INSERT INTO llm.requests (id, tag, submitted_by, login_role, priority, model, messages, options,
								  callback, prompt_name, prompt_version)
		SELECT i.request_id, run_tag, caller, login, 0, i.model, i.messages, i.options, callback,
			   i.prompt, i.version
		  FROM item i ORDER BY i.request_id)
	INSERT INTO llm.eval_results (run, case_key, variant, repeat, request_id, temperature, seed, contaminated)
	SELECT run_id, i.case_key, i.variant, i.rep, i.request_id,
		   CASE WHEN jsonb_typeof(i.options -> 'temperature') = 'number'
				THEN (i.options ->> 'temperature')::double precision END,
		   CASE WHEN jsonb_typeof(i.options -> 'seed') = 'number' THEN (i.options ->> 'seed')::numeric::bigint END,
		   i.contaminated
	  FROM item i;
	PERFORM llm._wake_at_commit();
	RETURN run_id;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_run(name, name, text, jsonb, integer, jsonb, jsonb) FROM PUBLIC;
-- Evaluation, second part: what an answer becomes.  The worker scores a
-- turn's answers in sets, in the transaction that writes them
-- (llm._eval_collect); a judge scorer's answers come back the same way;
-- a run ends when nothing of it is pending.  The report's aggregates are
-- kept per case and per variant by triggers on llm.eval_results, so that
-- llm.eval_report reads a row per variant instead of every result.
--
-- Who writes a run's results: llm_eval_run inserts them; while any of its
-- requests is queued or running only the worker changes them (and the
-- callback of a "function" scorer, which the worker runs); a session
-- changes them only to end a run the worker is done with.  So the rows and
-- aggregates of a running run are never locked by a session that a user
-- could keep open.

-- Per case of a run and variant (its repeats).
CREATE TABLE llm.eval_case_stats (
	run				bigint NOT NULL REFERENCES llm.eval_runs ON DELETE CASCADE,
	variant			text NOT NULL,
	case_key		text NOT NULL,
	weight			numeric NOT NULL,	-- the case's weight in its set
	results			integer NOT NULL,	-- result rows (repeats)
	answers			integer NOT NULL,	-- with an output
	scored			integer NOT NULL,	-- with a score
	mean_score		numeric,			-- the mean of its scores (15 decimals); NULL: none
	distinct_outputs integer NOT NULL,
	agreement		numeric,			-- share of pairs of answers that agree (15 decimals); NULL: fewer than 2
	contaminated	boolean NOT NULL,
	PRIMARY KEY (run, variant, case_key)
);
COMMENT ON TABLE llm.eval_case_stats IS 'per run, variant and case: its repeats summed up (kept by triggers on llm.eval_results)';

-- Per run and variant: sums of the rows, and of the per-case rows.
CREATE TABLE llm.eval_variant_stats (
	run				bigint NOT NULL REFERENCES llm.eval_runs ON DELETE CASCADE,
	variant			text NOT NULL,
	results			bigint NOT NULL DEFAULT 0,
	errors			bigint NOT NULL DEFAULT 0,
	pending			bigint NOT NULL DEFAULT 0,
	answered		bigint NOT NULL DEFAULT 0,	-- rows with an output
	passed			bigint NOT NULL DEFAULT 0,
	pass_known		bigint NOT NULL DEFAULT 0,	-- rows with passed not NULL
	json_valid		bigint NOT NULL DEFAULT 0,	-- answered rows whose output is JSON
	input_tokens	numeric NOT NULL DEFAULT 0,	-- of answered rows
	input_tokens_n	bigint NOT NULL DEFAULT 0,
	output_tokens	numeric NOT NULL DEFAULT 0,
	output_tokens_n	bigint NOT NULL DEFAULT 0,
	cost_answered	numeric NOT NULL DEFAULT 0,
	cost_answered_n	bigint NOT NULL DEFAULT 0,
	cost_usd		numeric NOT NULL DEFAULT 0,	-- of every row
	cost_n			bigint NOT NULL DEFAULT 0,
	judge_cost_usd	numeric NOT NULL DEFAULT 0,
	judge_cost_n	bigint NOT NULL DEFAULT 0,
	latencies		bigint NOT NULL DEFAULT 0,	-- rows with a latency (the percentiles' n)
	cases			bigint NOT NULL DEFAULT 0,
	scored_cases	bigint NOT NULL DEFAULT 0,
	score_sum		numeric NOT NULL DEFAULT 0,	-- of the cases' mean scores
	score_sumsq		numeric NOT NULL DEFAULT 0,
	weight_sum		numeric NOT NULL DEFAULT 0,	-- of scored cases
	weighted_score_sum numeric NOT NULL DEFAULT 0,
	repeated_cases	bigint NOT NULL DEFAULT 0,	-- cases with 2 answers or more
	consistent_cases bigint NOT NULL DEFAULT 0,	-- of those, all answers alike
	agreement_sum	numeric NOT NULL DEFAULT 0,
	contaminated_cases bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (run, variant)
);
COMMENT ON TABLE llm.eval_variant_stats IS 'per run and variant: the sums llm.eval_report is computed from (kept by triggers on llm.eval_results)';

-- Derived data: not dumped; restoring llm.eval_results fills them again.
ALTER TABLE llm.eval_case_stats ENABLE ROW LEVEL SECURITY;
CREATE POLICY eval_case_stats_own_rows ON llm.eval_case_stats FOR SELECT
	USING (run IN (SELECT r.id FROM llm.eval_runs r));
ALTER TABLE llm.eval_variant_stats ENABLE ROW LEVEL SECURITY;
CREATE POLICY eval_variant_stats_own_rows ON llm.eval_variant_stats FOR SELECT
	USING (run IN (SELECT r.id FROM llm.eval_runs r));
GRANT SELECT ON llm.eval_case_stats, llm.eval_variant_stats TO llm_user;

-- The latencies of a run and variant in order, for the report's percentiles.
CREATE INDEX eval_results_latency_idx ON llm.eval_results (run, variant, latency_ms)
	WHERE latency_ms IS NOT NULL;

-- The statement that applies changes of llm.eval_results to the
-- aggregates; changes is a query of (sign, the result row's columns): +1
-- for a row added, -1 for a row removed (an update is both).  The rows'
-- own sums change by their signs; each case touched is summed up again
-- from its rows, and its variant changes by the new case row less the old.
-- Exact: numeric sums of stored values, so that any order of changes ends
-- where summing up from scratch does.  One statement, planned for its sets
-- (a trigger's transition tables, or a whole run): a run's million rows
-- are joined, not looked up one case at a time.
CREATE FUNCTION llm._eval_stats_statement(changes text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $outer$
SELECT format($$
WITH d AS (
	SELECT x.* FROM (%s) x
	 WHERE x.run IN (SELECT r.id FROM llm.eval_runs r)),	-- a run being dropped takes its aggregates along
touched AS (
	SELECT DISTINCT d.run, d.variant, d.case_key FROM d),
-- each case touched, before and after: looked up by its keys (LATERAL ...
-- OFFSET 0), never joined by a plan that guesses a trigger's sets
cases AS (
	-- (old is a row of llm.eval_case_stats, NULL when the case is new: test
	-- (old).run, as a row with some NULL field is not IS NOT NULL)
	SELECT t.run, t.variant, t.case_key, b.old, c.*,
		   coalesce((b.old).weight,
					(SELECT ec.weight FROM llm.eval_cases ec
					  WHERE ec.set_name = (SELECT er.set_name FROM llm.eval_runs er WHERE er.id = t.run)
						AND ec.case_key = t.case_key),
					1) AS weight
	  FROM touched t
	  LEFT JOIN LATERAL (
		SELECT s AS old FROM llm.eval_case_stats s
		 WHERE s.run = t.run AND s.variant = t.variant AND s.case_key = t.case_key OFFSET 0) b ON true
	 CROSS JOIN LATERAL (
		SELECT sum(o.n)::integer AS results,
			   coalesce(sum(o.n) FILTER (WHERE o.output IS NOT NULL), 0)::integer AS answers,
			   sum(o.scored)::integer AS scored,
			   round(sum(o.score_sum) / nullif(sum(o.scored), 0), 15) AS mean_score,
			   count(*) FILTER (WHERE o.output IS NOT NULL)::integer AS distinct_outputs,
			   coalesce(sum(o.n * (o.n - 1) / 2) FILTER (WHERE o.output IS NOT NULL), 0) AS agreeing_pairs,
			   bool_or(o.contaminated) AS contaminated
		  FROM (SELECT res.output, count(*) AS n, count(res.score) AS scored,
					   sum(res.score::numeric) AS score_sum, bool_or(res.contaminated) AS contaminated
				  FROM llm.eval_results res
				 WHERE res.run = t.run AND res.case_key = t.case_key AND res.variant = t.variant
				 GROUP BY res.output) o) c),
after AS (	-- the cases that still have rows
	SELECT c.run, c.variant, c.case_key, c.weight, c.results, c.answers, c.scored, c.mean_score,
		   c.distinct_outputs,
		   CASE WHEN c.answers >= 2
				THEN round(c.agreeing_pairs::numeric / (c.answers * (c.answers - 1) / 2), 15) END AS agreement,
		   c.contaminated
	  FROM cases c WHERE c.results > 0),
kept AS (
	INSERT INTO llm.eval_case_stats AS c
	SELECT a.* FROM after a ORDER BY a.run, a.variant, a.case_key
	ON CONFLICT (run, variant, case_key) DO UPDATE
	   SET weight = excluded.weight, results = excluded.results, answers = excluded.answers,
		   scored = excluded.scored, mean_score = excluded.mean_score,
		   distinct_outputs = excluded.distinct_outputs, agreement = excluded.agreement,
		   contaminated = excluded.contaminated
	RETURNING 1),
gone AS (
	DELETE FROM llm.eval_case_stats s
	 USING cases c
	 WHERE c.results IS NULL AND (c.old).run IS NOT NULL
	   AND s.run = c.run AND s.variant = c.variant AND s.case_key = c.case_key
	RETURNING 1),
row_delta AS (
	SELECT d.run, d.variant, sum(d.sign) AS results,
		   sum(CASE WHEN d.error IS NOT NULL THEN d.sign ELSE 0 END) AS errors,
		   sum(CASE WHEN d.scored_at IS NULL THEN d.sign ELSE 0 END) AS pending,
		   sum(CASE WHEN d.output IS NOT NULL THEN d.sign ELSE 0 END) AS answered,
		   sum(CASE WHEN d.passed THEN d.sign ELSE 0 END) AS passed,
		   sum(CASE WHEN d.passed IS NOT NULL THEN d.sign ELSE 0 END) AS pass_known,
		   sum(CASE WHEN d.output IS NOT NULL AND d.output_json IS NOT NULL THEN d.sign ELSE 0 END) AS json_valid,
		   coalesce(sum(d.sign * d.input_tokens) FILTER (WHERE d.output IS NOT NULL), 0) AS input_tokens,
		   sum(CASE WHEN d.output IS NOT NULL AND d.input_tokens IS NOT NULL THEN d.sign ELSE 0 END) AS input_tokens_n,
		   coalesce(sum(d.sign * d.output_tokens) FILTER (WHERE d.output IS NOT NULL), 0) AS output_tokens,
		   sum(CASE WHEN d.output IS NOT NULL AND d.output_tokens IS NOT NULL THEN d.sign ELSE 0 END) AS output_tokens_n,
		   coalesce(sum(d.sign * d.cost_usd) FILTER (WHERE d.output IS NOT NULL), 0) AS cost_answered,
		   sum(CASE WHEN d.output IS NOT NULL AND d.cost_usd IS NOT NULL THEN d.sign ELSE 0 END) AS cost_answered_n,
		   coalesce(sum(d.sign * d.cost_usd), 0) AS cost_usd,
		   sum(CASE WHEN d.cost_usd IS NOT NULL THEN d.sign ELSE 0 END) AS cost_n,
		   coalesce(sum(d.sign * d.judge_cost_usd), 0) AS judge_cost_usd,
		   sum(CASE WHEN d.judge_cost_usd IS NOT NULL THEN d.sign ELSE 0 END) AS judge_cost_n,
		   sum(CASE WHEN d.latency_ms IS NOT NULL THEN d.sign ELSE 0 END) AS latencies
	  FROM d GROUP BY d.run, d.variant),
case_delta AS (
	SELECT x.run, x.variant, sum(x.sign) AS cases,
		   sum(CASE WHEN x.mean_score IS NOT NULL THEN x.sign ELSE 0 END) AS scored_cases,
		   coalesce(sum(x.sign * x.mean_score), 0) AS score_sum,
		   coalesce(sum(x.sign * x.mean_score * x.mean_score), 0) AS score_sumsq,
		   coalesce(sum(x.sign * x.weight) FILTER (WHERE x.mean_score IS NOT NULL), 0) AS weight_sum,
		   coalesce(sum(x.sign * x.weight * x.mean_score), 0) AS weighted_score_sum,
		   sum(CASE WHEN x.answers >= 2 THEN x.sign ELSE 0 END) AS repeated_cases,
		   sum(CASE WHEN x.answers >= 2 AND x.distinct_outputs = 1 THEN x.sign ELSE 0 END) AS consistent_cases,
		   coalesce(sum(x.sign * x.agreement), 0) AS agreement_sum,
		   sum(CASE WHEN x.contaminated THEN x.sign ELSE 0 END) AS contaminated_cases
	  FROM (SELECT 1 AS sign, a.* FROM after a
			UNION ALL
			SELECT -1, (c.old).* FROM cases c WHERE (c.old).run IS NOT NULL) x
	 GROUP BY x.run, x.variant)
INSERT INTO llm.eval_variant_stats AS s
SELECT coalesce(r.run, c.run), coalesce(r.variant, c.variant),
	   coalesce(r.results, 0), coalesce(r.errors, 0), coalesce(r.pending, 0), coalesce(r.answered, 0),
	   coalesce(r.passed, 0), coalesce(r.pass_known, 0), coalesce(r.json_valid, 0),
	   coalesce(r.input_tokens, 0), coalesce(r.input_tokens_n, 0),
	   coalesce(r.output_tokens, 0), coalesce(r.output_tokens_n, 0),
	   coalesce(r.cost_answered, 0), coalesce(r.cost_answered_n, 0),
	   coalesce(r.cost_usd, 0), coalesce(r.cost_n, 0), coalesce(r.judge_cost_usd, 0),
	   coalesce(r.judge_cost_n, 0), coalesce(r.latencies, 0),
	   coalesce(c.cases, 0), coalesce(c.scored_cases, 0), coalesce(c.score_sum, 0),
	   coalesce(c.score_sumsq, 0), coalesce(c.weight_sum, 0), coalesce(c.weighted_score_sum, 0),
	   coalesce(c.repeated_cases, 0), coalesce(c.consistent_cases, 0), coalesce(c.agreement_sum, 0),
	   coalesce(c.contaminated_cases, 0)
  FROM row_delta r FULL JOIN case_delta c USING (run, variant)
 ORDER BY 1, 2
ON CONFLICT (run, variant) DO UPDATE
   SET results = s.results + excluded.results, errors = s.errors + excluded.errors,
	   pending = s.pending + excluded.pending, answered = s.answered + excluded.answered,
	   passed = s.passed + excluded.passed, pass_known = s.pass_known + excluded.pass_known,
	   json_valid = s.json_valid + excluded.json_valid,
	   input_tokens = s.input_tokens + excluded.input_tokens,
	   input_tokens_n = s.input_tokens_n + excluded.input_tokens_n,
	   output_tokens = s.output_tokens + excluded.output_tokens,
	   output_tokens_n = s.output_tokens_n + excluded.output_tokens_n,
	   cost_answered = s.cost_answered + excluded.cost_answered,
	   cost_answered_n = s.cost_answered_n + excluded.cost_answered_n,
	   cost_usd = s.cost_usd + excluded.cost_usd, cost_n = s.cost_n + excluded.cost_n,
	   judge_cost_usd = s.judge_cost_usd + excluded.judge_cost_usd,
	   judge_cost_n = s.judge_cost_n + excluded.judge_cost_n,
	   latencies = s.latencies + excluded.latencies,
	   cases = s.cases + excluded.cases, scored_cases = s.scored_cases + excluded.scored_cases,
	   score_sum = s.score_sum + excluded.score_sum, score_sumsq = s.score_sumsq + excluded.score_sumsq,
	   weight_sum = s.weight_sum + excluded.weight_sum,
	   weighted_score_sum = s.weighted_score_sum + excluded.weighted_score_sum,
	   repeated_cases = s.repeated_cases + excluded.repeated_cases,
	   consistent_cases = s.consistent_cases + excluded.consistent_cases,
	   agreement_sum = s.agreement_sum + excluded.agreement_sum,
	   contaminated_cases = s.contaminated_cases + excluded.contaminated_cases
$$, changes)
$outer$;
REVOKE ALL ON FUNCTION llm._eval_stats_statement(text) FROM PUBLIC;

-- A trigger may name transition tables for one event only: three triggers,
-- one function, which sees its transition tables in what it EXECUTEs.
CREATE FUNCTION llm._eval_results_changed()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- a statement that changed no row (the worker's turn had no judge's verdict, say)
	IF TG_OP = 'INSERT' THEN
		IF NOT EXISTS (SELECT FROM new_rows) THEN
			RETURN NULL;
		END IF;
	ELSIF NOT EXISTS (SELECT FROM old_rows) THEN
		RETURN NULL;
	END IF;
	EXECUTE llm._eval_stats_statement(CASE TG_OP
		WHEN 'INSERT' THEN 'SELECT 1 AS sign, n.* FROM new_rows n'
		WHEN 'UPDATE' THEN 'SELECT 1 AS sign, n.* FROM new_rows n UNION ALL SELECT -1, o.* FROM old_rows o'
		ELSE 'SELECT -1 AS sign, o.* FROM old_rows o' END);
	-- a variant whose rows are all gone
	IF TG_OP = 'DELETE' THEN
		DELETE FROM llm.eval_variant_stats s WHERE s.results = 0;
	END IF;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_results_changed() FROM PUBLIC;
CREATE TRIGGER eval_results_added AFTER INSERT ON llm.eval_results
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION llm._eval_results_changed();
CREATE TRIGGER eval_results_changed AFTER UPDATE ON llm.eval_results
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION llm._eval_results_changed();
CREATE TRIGGER eval_results_removed AFTER DELETE ON llm.eval_results
	REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION llm._eval_results_changed();

-- Sums a run's aggregates up again from its rows (after an upgrade, or to
-- check them): the number of variants.
CREATE FUNCTION llm._eval_stats_rebuild(run_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	DELETE FROM llm.eval_case_stats c WHERE c.run = run_id;
	DELETE FROM llm.eval_variant_stats s WHERE s.run = run_id;
	EXECUTE llm._eval_stats_statement(format(
		'SELECT 1 AS sign, r.* FROM llm.eval_results r WHERE r.run = %s', run_id));
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_stats_rebuild(bigint) FROM PUBLIC;

-- An answer as JSON, or NULL when it is not JSON that jsonb can hold.
CREATE FUNCTION llm._eval_output_json(output text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_eval_output_json'
LANGUAGE C IMMUTABLE STRICT;
REVOKE ALL ON FUNCTION llm._eval_output_json(text) FROM PUBLIC;

-- Queues the judge of one answer (scorer "judge") with the run's tag: the
-- stored prompt, at the version fixed when the run was queued, rendered
-- with the case, the expected answer and the output.
CREATE FUNCTION llm._eval_judge_enqueue(run llm.eval_runs, c llm.eval_cases, output text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	rendered jsonb;
BEGIN
	rendered := @extschema@.llm_render(run.scorer ->> 'prompt',
		coalesce(c.vars, '{}')
		|| jsonb_build_object('input', coalesce(c.input, c.vars ->> 'input', ''),
							  'expected', CASE WHEN jsonb_typeof(c.expected) = 'string'
											   THEN c.expected #>> '{}'
											   ELSE coalesce(c.expected::text, '') END,
							  'output', output),
		(run.scorer ->> 'version')::integer, NULL, NULL);
	RETURN llm._enqueue(run.submitted_by, run.login_role, run.scorer ->> 'model', rendered -> 'messages',
		coalesce(rendered -> 'params', '{}')
		|| CASE WHEN jsonb_typeof(rendered -> 'response_format') = 'object'
				THEN jsonb_build_object('response_format', rendered -> 'response_format')
				ELSE '{}' END
		|| '{"cache": "off"}',
		run.tag, 0, NULL, rendered ->> 'prompt', (rendered ->> 'version')::integer);
END
$$;
REVOKE ALL ON FUNCTION llm._eval_judge_enqueue(llm.eval_runs, llm.eval_cases, text) FROM PUBLIC;

-- Records the answers to the requests ids into their result rows, in sets:
-- answers scored (or their judges queued), failed requests as errors, and
-- judges' verdicts checked against {"score": 0..1, "reason": text}.
-- Called by the worker with the evaluation requests it has written (a set
-- every moment); by the callback of a "function" scorer with its score
-- (by_function); and at the worker's start for what its predecessor left
-- (callbacks_lost).  A row whose request was cancelled is left for the
-- run's end.  Ends the runs it completed.  The number of rows recorded.
CREATE FUNCTION llm._eval_collect(ids bigint[], function_score double precision DEFAULT NULL,
								  function_error text DEFAULT NULL, by_function boolean DEFAULT false,
								  callbacks_lost boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	answered bigint[];
	judged bigint[];
	run_id bigint;
BEGIN
	-- Each row looked up from its id (LATERAL ... OFFSET 0 fixes the order):
	-- a plan that starts from the run's pending rows, which the planner
	-- guesses few while a new run's statistics are not yet gathered, reads
	-- every case of the run for every answer.
	WITH answer AS (
		SELECT res.run, res.case_key, res.variant, res.repeat, q.state, q.completion, q.response,
			   q.cost_usd, er.run_row, ec.case_row,
			   CASE WHEN q.state = 'error' THEN coalesce(q.error, 'the request failed')
					WHEN (er.run_row).scorer ->> 'type' = 'function' AND NOT by_function
					THEN 'the scorer failed: '
						 || coalesce(q.callback_error, 'its callback was lost when the worker stopped')
			   END AS failure
		  FROM unnest(ids) AS i(id)
		 CROSS JOIN LATERAL (SELECT * FROM llm.eval_results r WHERE r.request_id = i.id OFFSET 0) res
		 CROSS JOIN LATERAL (SELECT * FROM llm.requests r WHERE r.id = i.id OFFSET 0) q
		 CROSS JOIN LATERAL (SELECT r AS run_row FROM llm.eval_runs r WHERE r.id = res.run OFFSET 0) er
		 CROSS JOIN LATERAL (SELECT c AS case_row FROM llm.eval_cases c
							  WHERE c.set_name = (er.run_row).set_name AND c.case_key = res.case_key OFFSET 0) ec
		 WHERE res.scored_at IS NULL AND res.judge_request_id IS NULL
		   AND (q.state = 'error'
				OR (q.state = 'done'
					AND ((er.run_row).scorer ->> 'type' <> 'function' OR by_function
						 OR q.callback_error IS NOT NULL OR callbacks_lost)))),
	scored AS (
		SELECT a.*,
			   CASE WHEN a.failure IS NOT NULL OR a.completion IS NULL OR (a.run_row).scorer ->> 'type' = 'judge'
					THEN NULL
					WHEN (a.run_row).scorer ->> 'type' = 'function'
					THEN jsonb_build_object('score', CASE WHEN function_score IS NOT NULL
														  THEN least(greatest(function_score, 0), 1) END,
											'passed', function_score
													  >= coalesce(((a.run_row).scorer ->> 'threshold')::double precision, 0.5))
					ELSE llm._eval_score_for((a.run_row).submitted_by, (a.run_row).login_role,
						(a.run_row).scorer, a.completion, (a.case_row).expected,
						coalesce((a.case_row).vars, '{}')
						|| CASE WHEN (a.case_row).input IS NOT NULL
								THEN jsonb_build_object('input', (a.case_row).input) ELSE '{}' END)
			   END AS verdict,
			   CASE WHEN a.failure IS NULL AND a.completion IS NOT NULL
						 AND (a.run_row).scorer ->> 'type' = 'judge'
					THEN llm._eval_judge_enqueue(a.run_row, a.case_row, a.completion)
			   END AS judge_id
		  FROM answer a),
	written AS (
		UPDATE llm.eval_results res
		   SET output = s.completion, output_json = llm._eval_output_json(s.completion),
			   score = (s.verdict ->> 'score')::double precision,
			   passed = (s.verdict ->> 'passed')::boolean,
			   reason = CASE WHEN s.failure IS NULL AND s.completion IS NULL AND s.state = 'done'
							 THEN 'no output' ELSE s.verdict ->> 'reason' END,
			   error = CASE WHEN s.failure IS NOT NULL THEN s.failure
							WHEN (s.run_row).scorer ->> 'type' = 'function' AND function_error IS NOT NULL
							THEN 'the scorer failed: ' || function_error END,
			   input_tokens = (s.response -> 'usage' ->> 'input_tokens')::numeric::bigint,
			   output_tokens = (s.response -> 'usage' ->> 'output_tokens')::numeric::bigint,
			   cost_usd = coalesce(s.cost_usd, (s.response ->> 'cost_usd')::numeric),
			   latency_ms = (s.response ->> 'latency_ms')::double precision,
			   call_entry_id = s.response ->> 'entry_id',
			   judge_request_id = s.judge_id,
			   scored_at = CASE WHEN s.judge_id IS NULL THEN now() END
		  FROM scored s
		 WHERE res.run = s.run AND res.case_key = s.case_key AND res.variant = s.variant
		   AND res.repeat = s.repeat AND res.scored_at IS NULL
		RETURNING res.run)
	SELECT array_agg(w.run) INTO answered FROM written w;

	-- judges' verdicts (and judges that failed)
	WITH verdict AS (
		SELECT res.run, res.case_key, res.variant, res.repeat, q.state, q.error, q.completion,
			   coalesce(q.cost_usd, (q.response ->> 'cost_usd')::numeric) AS cost,
			   llm._eval_output_json(q.completion) AS parsed,
			   coalesce((run.scorer ->> 'threshold')::double precision, 0.5) AS threshold
		  FROM unnest(ids) AS i(id)
		 CROSS JOIN LATERAL (SELECT * FROM llm.eval_results r WHERE r.judge_request_id = i.id OFFSET 0) res
		 CROSS JOIN LATERAL (SELECT * FROM llm.requests r WHERE r.id = i.id OFFSET 0) q
		 CROSS JOIN LATERAL (SELECT * FROM llm.eval_runs r WHERE r.id = res.run OFFSET 0) run
		 WHERE res.scored_at IS NULL AND q.state IN ('done', 'error')),
	checked AS (
		SELECT v.*,
			   CASE WHEN v.state <> 'done' OR jsonb_typeof(v.parsed) IS DISTINCT FROM 'object'
						 OR jsonb_typeof(v.parsed -> 'score') IS DISTINCT FROM 'number'
						 OR jsonb_typeof(v.parsed -> 'reason') IS DISTINCT FROM 'string' THEN false
					ELSE (v.parsed ->> 'score')::numeric BETWEEN 0 AND 1
			   END AS valid
		  FROM verdict v),
	written AS (
		UPDATE llm.eval_results res
		   SET score = CASE WHEN j.valid THEN (j.parsed ->> 'score')::double precision END,
			   passed = CASE WHEN j.valid THEN (j.parsed ->> 'score')::double precision >= j.threshold END,
			   reason = CASE WHEN j.valid THEN j.parsed ->> 'reason' END,
			   error = CASE WHEN j.valid THEN NULL
							WHEN j.state = 'error' THEN 'the judge failed: ' || coalesce(j.error, 'the request failed')
							WHEN j.parsed IS NULL
							THEN 'the judge''s answer is not JSON: ' || coalesce(left(j.completion, 200), '(none)')
							ELSE 'the judge''s answer is not {"score": 0..1, "reason": text}: '
								 || left(j.parsed::text, 200) END,
			   judge_cost_usd = j.cost, scored_at = now()
		  FROM checked j
		 WHERE res.run = j.run AND res.case_key = j.case_key AND res.variant = j.variant
		   AND res.repeat = j.repeat AND res.scored_at IS NULL
		RETURNING res.run)
	SELECT array_agg(w.run) INTO judged FROM written w;

	FOR run_id IN SELECT DISTINCT x FROM unnest(answered || judged) x ORDER BY x LOOP
		PERFORM llm._eval_try_end(run_id, false);
	END LOOP;
	RETURN coalesce(cardinality(answered), 0) + coalesce(cardinality(judged), 0);
END
$$;
REVOKE ALL ON FUNCTION llm._eval_collect(bigint[], double precision, text, boolean, boolean) FROM PUBLIC;

-- At the worker's start: the answers its predecessor wrote and did not score
-- (it scores them a moment after writing them), and those of a function
-- scorer whose callback it never ran.
CREATE FUNCTION llm._eval_recover()
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(sum(llm._eval_collect(ARRAY(
			SELECT coalesce(res.judge_request_id, res.request_id)
			  FROM llm.eval_results res
			  JOIN llm.requests q ON q.id = coalesce(res.judge_request_id, res.request_id)
			 WHERE res.run = r.id AND res.scored_at IS NULL AND q.state IN ('done', 'error')),
		callbacks_lost => true)), 0)::integer
	  FROM llm.eval_runs r
	 WHERE r.state = 'running'
$$;
REVOKE ALL ON FUNCTION llm._eval_recover() FROM PUBLIC;

-- When scoring a request's answer fails even alone (an expected answer that
-- is not a valid regular expression, a judge's budget spent...), the worker
-- records why on its row, which then counts as an error, never as pending.
CREATE FUNCTION llm._eval_collect_failed(id bigint, message text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	run_id bigint;
BEGIN
	UPDATE llm.eval_results res
	   SET output = CASE WHEN res.request_id = _eval_collect_failed.id THEN q.completion ELSE res.output END,
		   cost_usd = CASE WHEN res.request_id = _eval_collect_failed.id THEN q.cost_usd ELSE res.cost_usd END,
		   judge_cost_usd = CASE WHEN res.judge_request_id = _eval_collect_failed.id
								 THEN q.cost_usd ELSE res.judge_cost_usd END,
		   error = 'scoring failed: ' || message, scored_at = now()
	  FROM llm.requests q
	 WHERE q.id = _eval_collect_failed.id AND q.state IN ('done', 'error')
	   AND (res.request_id = _eval_collect_failed.id OR res.judge_request_id = _eval_collect_failed.id)
	   AND res.scored_at IS NULL
	RETURNING res.run INTO run_id;
	IF run_id IS NOT NULL THEN
		PERFORM llm._eval_try_end(run_id, false);
	END IF;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_collect_failed(bigint, text) FROM PUBLIC;

-- Ends a run when nothing of it is pending: 'done', or 'cancelled' when a
-- request of it was.  A run with requests cancelled ends once the worker
-- is done with it (nothing queued or running, no answer written and not
-- yet scored): then its rows whose requests were cancelled are removed, a
-- judge cancelled is recorded as the result's error, and a row whose
-- request is gone (purged) as having no answer.  The worker asks after
-- scoring (look_everywhere false: it probes the tag's requests only when
-- some were cancelled); llm_eval_wait on every poll.  Never waits on a
-- lock: a run row locked by another session is being ended by it.
CREATE FUNCTION llm._eval_try_end(run_id bigint, look_everywhere boolean)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	run llm.eval_runs;
	pending bigint;
	cancelled boolean;
BEGIN
	SELECT * INTO run FROM llm.eval_runs r WHERE r.id = run_id;
	IF NOT FOUND OR run.state <> 'running' THEN
		RETURN run.state;
	END IF;
	SELECT coalesce(sum(s.pending), 0) INTO pending FROM llm.eval_variant_stats s WHERE s.run = run_id;
	cancelled := EXISTS (SELECT FROM llm.requests q WHERE q.tag = run.tag AND q.state = 'cancelled');
	IF pending > 0 THEN
		IF NOT (look_everywhere OR cancelled)
		   OR EXISTS (SELECT FROM llm.requests q WHERE q.tag = run.tag AND q.state IN ('queued', 'running'))
		   -- answers the worker has written and scores a moment later (or a callback still to run)
		   OR EXISTS (SELECT FROM llm.eval_results res
						JOIN llm.requests q ON q.id = coalesce(res.judge_request_id, res.request_id)
					   WHERE res.run = run_id AND res.scored_at IS NULL AND q.state IN ('done', 'error')) THEN
			RETURN 'running';
		END IF;
	END IF;
	PERFORM FROM llm.eval_runs r WHERE r.id = run_id AND r.state = 'running' FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN
		RETURN 'running';
	END IF;
	IF pending > 0 THEN
		-- the worker is done with this run: what is left pending was cancelled
		DELETE FROM llm.eval_results res
		 USING llm.requests q
		 WHERE res.run = run_id AND res.scored_at IS NULL AND res.judge_request_id IS NULL
		   AND q.id = res.request_id AND q.state = 'cancelled';
		UPDATE llm.eval_results res
		   SET error = CASE WHEN EXISTS (SELECT FROM llm.requests q
										  WHERE q.id = coalesce(res.judge_request_id, res.request_id))
							THEN 'the judge was cancelled'
							ELSE 'no answer: the request is gone' END,
			   scored_at = now()
		 WHERE res.run = run_id AND res.scored_at IS NULL;
	END IF;
	UPDATE llm.eval_runs r
	   SET state = CASE WHEN cancelled THEN 'cancelled' ELSE 'done' END, finished_at = now()
	 WHERE r.id = run_id
	RETURNING r.state INTO run.state;
	RETURN run.state;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_try_end(bigint, boolean) FROM PUBLIC;

-- The callback of a "function" scorer's requests, run by the worker as the
-- submitter.  It reads the answer from llm.requests (never from its
-- argument), runs the scorer with the submitter's rights, and has
-- llm.llm_eval_record write the row.  Harmless: it only scores requests of
-- the caller's own runs, from their stored answers.  (Requests queued by
-- llmext 0.3.0 carry it whatever their scorer.)
CREATE FUNCTION llm.eval_collect(request_id bigint, result jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
	r record;
	fscore double precision;
	ferror text;
	call text;
BEGIN
	-- from the one result row (by its request, an index): a plan that starts
	-- from the run would walk all its cases for every answer
	WITH res AS MATERIALIZED (
		SELECT * FROM llm.eval_results res WHERE res.request_id = eval_collect.request_id)
	SELECT run.scorer, c.expected, c.vars, c.input, q.completion
	  INTO r
	  FROM res
	  JOIN llm.eval_runs run ON run.id = res.run
	  JOIN llm.eval_cases c ON c.set_name = run.set_name AND c.case_key = res.case_key
	  JOIN llm.requests q ON q.id = res.request_id
	 WHERE res.request_id = eval_collect.request_id AND res.scored_at IS NULL AND q.state = 'done';
	IF NOT FOUND OR r.scorer ->> 'type' <> 'function' THEN
		PERFORM llm.llm_eval_record(request_id, NULL, NULL);
		RETURN;
	END IF;
	IF r.completion IS NOT NULL THEN
		SELECT pg_catalog.format('SELECT %I.%I($1, $2, $3)::double precision', n.nspname, p.proname)
		  INTO call
		  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		 WHERE p.oid = (r.scorer ->> 'function')::pg_catalog.regprocedure;
		BEGIN
			EXECUTE call
			   INTO fscore
			  USING r.completion, r.expected,
					COALESCE(r.vars, '{}'::jsonb)
					|| CASE WHEN r.input IS NOT NULL THEN pg_catalog.jsonb_build_object('input', r.input)
							ELSE '{}'::jsonb END;
			IF fscore IS NULL THEN
				ferror := 'it returned NULL';
			END IF;
		EXCEPTION WHEN OTHERS THEN
			fscore := NULL;
			ferror := SQLERRM;
		END;
	END IF;
	PERFORM llm.llm_eval_record(request_id, fscore, ferror);
END
$$;
COMMENT ON FUNCTION llm.eval_collect(bigint, jsonb) IS
	'the callback of a function scorer''s evaluation requests: scores the answer into its llm.eval_results row';
REVOKE ALL ON FUNCTION llm.eval_collect(bigint, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.eval_collect(bigint, jsonb) TO llm_user;

CREATE FUNCTION llm.llm_eval_record(request_id bigint, function_score double precision,
									function_error text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;

-- Records the answer to one request of the caller's own runs (a function
-- scorer's score given), as the worker does for the others.
CREATE FUNCTION llm._eval_record(caller name, login name, request_id bigint,
								 function_score double precision, function_error text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM llm.eval_results res JOIN llm.eval_runs run ON run.id = res.run
					WHERE res.request_id = _eval_record.request_id AND res.scored_at IS NULL
					  AND run.submitted_by = caller AND (run.login_role = login OR caller = login))
	   AND NOT EXISTS (SELECT FROM llm.eval_results res JOIN llm.eval_runs run ON run.id = res.run
						WHERE res.judge_request_id = _eval_record.request_id AND res.scored_at IS NULL
						  AND run.submitted_by = caller AND (run.login_role = login OR caller = login)) THEN
		RETURN false;
	END IF;
	RETURN llm._eval_collect(ARRAY[request_id], function_score, function_error, true) > 0;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_record(name, name, bigint, double precision, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.llm_eval_record(bigint, double precision, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.llm_eval_record(bigint, double precision, text) TO llm_user;

CREATE FUNCTION llm_eval_wait(run bigint, timeout interval DEFAULT '5 minutes')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_wait(bigint, interval) IS
	'wait until an evaluation run has ended (or the timeout passes): its state and counts';

CREATE FUNCTION llm._eval_wait(caller name, login name, run bigint, timeout interval)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	give_up timestamptz := clock_timestamp() + coalesce(timeout, '5 minutes');
	next_look timestamptz := clock_timestamp();
	look_every interval := '50 milliseconds';
	r llm.eval_runs;
	state text;
	summary jsonb;
BEGIN
	SELECT * INTO r FROM llm.eval_runs e WHERE e.id = run;
	IF NOT FOUND OR NOT llm._eval_owns(caller, login, r.submitted_by, r.login_role) THEN
		RAISE EXCEPTION 'evaluation run % does not exist', run USING ERRCODE = 'undefined_object';
	END IF;
	LOOP
		-- the worker ends a run as it scores its last answers: one row to read
		SELECT e.state INTO state FROM llm.eval_runs e WHERE e.id = run;
		-- a run with requests cancelled ends here; a look may walk the run's
		-- requests: more and more seldom, up to once a second
		IF state = 'running' AND clock_timestamp() >= next_look THEN
			state := llm._eval_try_end(run, true);
			next_look := clock_timestamp() + look_every;
			look_every := least(look_every * 2, interval '1 second');
		END IF;
		EXIT WHEN state <> 'running' OR clock_timestamp() >= give_up;
		PERFORM pg_sleep(0.05);
	END LOOP;
	SELECT jsonb_build_object('run', _eval_wait.run, 'state', state, 'requests', r.requests,
							  'results', coalesce(sum(s.results), 0),
							  'scored', coalesce(sum(s.results - s.pending - s.errors), 0),
							  'errors', coalesce(sum(s.errors), 0),
							  'pending', coalesce(sum(s.pending), 0),
							  'cancelled', r.requests - coalesce(sum(s.results), 0))
	  INTO summary
	  FROM llm.eval_variant_stats s WHERE s.run = _eval_wait.run;
	RETURN summary;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_wait(name, name, bigint, interval) FROM PUBLIC;
-- Evaluation drift: a watch re-runs an evaluation set against what a stored
-- prompt's label serves now, on a pg_cron schedule, and llm.eval_drift
-- compares the latest score with the score right after the label last
-- moved (a deploy, split or rollback: a promotion).  A drop beyond the
-- watch's threshold is announced on channel llm_eval_drift when the run
-- that shows it ends.
--
-- This file sorts before 99_eval_report.sql: the view reads the mean
-- score from llm.eval_variant_stats (98_eval_collect.sql), the same sums
-- llm.eval_report's mean_score is computed from, rather than the report.

CREATE TABLE llm.eval_watches (
	id				bigserial PRIMARY KEY,
	set_name		text NOT NULL REFERENCES llm.eval_sets,
	prompt			text NOT NULL,
	label			text NOT NULL,
	schedule		text NOT NULL,		-- pg_cron syntax, minutes (UTC with pg_cron 1.4)
	threshold		numeric NOT NULL CHECK (threshold >= 0 AND threshold < 1),
	scorer			jsonb NOT NULL DEFAULT '{"type": "exact"}' CHECK (jsonb_typeof(scorer) = 'object'),
	job_name		text NOT NULL,		-- the pg_cron job's name: 'llm-eval-watch-<id>'
	owner			name NOT NULL,
	login_role		name NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE llm.eval_watches IS
	'evaluation watches: a set re-run on a schedule against a prompt label''s current variant, with the drop in score that counts as drift';

-- Each run a watch queued, and where the label stood when it was queued:
-- runs queued under the same label move are comparable.
CREATE TABLE llm.eval_watch_runs (
	watch			bigint NOT NULL REFERENCES llm.eval_watches ON DELETE CASCADE,
	run				bigint NOT NULL REFERENCES llm.eval_runs ON DELETE CASCADE,
	label_move		bigint,				-- llm.prompt_label_history.id of the label's last move then
	variants		jsonb NOT NULL,		-- what the label pointed at then
	notified_at		timestamptz,		-- when its drift was announced on llm_eval_drift
	PRIMARY KEY (watch, run)
);
CREATE INDEX eval_watch_runs_run_idx ON llm.eval_watch_runs (run);
COMMENT ON TABLE llm.eval_watch_runs IS
	'the runs of each evaluation watch, with the label''s position when each was queued';

SELECT pg_catalog.pg_extension_config_dump('llm.eval_watches', '');
SELECT pg_catalog.pg_extension_config_dump('llm.eval_watches_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('llm.eval_watch_runs', '');

-- The rule of llm.eval_runs: own rows by acting and login role, and llm_admin.
ALTER TABLE llm.eval_watches ENABLE ROW LEVEL SECURITY;
CREATE POLICY eval_watches_own_rows ON llm.eval_watches FOR SELECT
	USING ((owner = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
ALTER TABLE llm.eval_watch_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY eval_watch_runs_own_rows ON llm.eval_watch_runs FOR SELECT
	USING (watch IN (SELECT w.id FROM llm.eval_watches w));
GRANT SELECT ON llm.eval_watches, llm.eval_watch_runs TO llm_user;

-- Per watch: the baseline (the first run queued after the label's last
-- move to have finished), the latest finished run queued since that move,
-- and the drop between their mean scores.  Runs are ordered by id (the
-- order they were queued in).  Runs queued before the move measured what
-- the label served before: they count for nothing here.
CREATE VIEW llm.eval_drift WITH (security_invoker = true) AS
SELECT w.id AS watch, w.set_name, w.prompt, w.label, w.schedule, w.threshold,
	   mv.changed_at AS label_moved_at,
	   b.run AS baseline_run, b.score AS baseline_score,
	   l.run AS latest_run, l.score AS latest_score, l.finished_at AS latest_finished_at,
	   b.score - l.score AS score_drop,
	   coalesce(b.score - l.score > w.threshold, false) AS drifted,
	   l.notified_at, n.runs, w.owner
  FROM llm.eval_watches w
  LEFT JOIN LATERAL (
		SELECT h.id, h.changed_at FROM llm.prompt_label_history h
		 WHERE h.name = w.prompt AND h.label = w.label
		 ORDER BY h.id DESC LIMIT 1) mv ON true
  LEFT JOIN LATERAL (
		SELECT wr.run, (s.score_sum / nullif(s.scored_cases, 0))::double precision AS score
		  FROM llm.eval_watch_runs wr
		  JOIN llm.eval_runs r ON r.id = wr.run AND r.state = 'done'
		  LEFT JOIN llm.eval_variant_stats s ON s.run = wr.run AND s.variant = w.label
		 WHERE wr.watch = w.id AND wr.label_move IS NOT DISTINCT FROM mv.id
		 ORDER BY wr.run LIMIT 1) b ON true
  LEFT JOIN LATERAL (
		SELECT wr.run, (s.score_sum / nullif(s.scored_cases, 0))::double precision AS score,
			   r.finished_at, wr.notified_at
		  FROM llm.eval_watch_runs wr
		  JOIN llm.eval_runs r ON r.id = wr.run AND r.state = 'done'
		  LEFT JOIN llm.eval_variant_stats s ON s.run = wr.run AND s.variant = w.label
		 WHERE wr.watch = w.id AND wr.label_move IS NOT DISTINCT FROM mv.id
		 ORDER BY wr.run DESC LIMIT 1) l ON true
  LEFT JOIN LATERAL (
		SELECT count(*) AS runs
		  FROM llm.eval_watch_runs wr
		  JOIN llm.eval_runs r ON r.id = wr.run AND r.state = 'done'
		 WHERE wr.watch = w.id AND wr.label_move IS NOT DISTINCT FROM mv.id) n ON true;
COMMENT ON VIEW llm.eval_drift IS
	'per evaluation watch: the score right after the label last moved, the latest score, the drop, and whether it exceeds the threshold';
GRANT SELECT ON llm.eval_drift TO llm_user;

-- A pg_cron schedule (five fields, minute granularity, as pg_cron 1.4
-- reads it), with its fields separated by one space; else 22023.  pg_cron
-- checks it again when it schedules the job; this check is what a watch
-- gets when pg_cron is not installed.
CREATE FUNCTION llm._eval_cron_schedule(schedule text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	fields text[] := regexp_split_to_array(btrim(lower(schedule)), '\s+');
	low integer[] := ARRAY[0, 0, 1, 1, 0];
	high integer[] := ARRAY[59, 23, 31, 12, 7];
	names text[] := ARRAY[NULL, NULL, NULL,
						  'jan feb mar apr may jun jul aug sep oct nov dec', 'sun mon tue wed thu fri sat'];
	item text;
	parts text[];
	value text;
	bad boolean := false;
BEGIN
	IF btrim(lower(schedule)) IN ('@yearly', '@annually', '@monthly', '@weekly', '@daily', '@hourly') THEN
		RETURN btrim(lower(schedule));
	END IF;
	IF cardinality(fields) <> 5 THEN
		bad := true;
	ELSE
		<<fields>>
		FOR i IN 1 .. 5 LOOP
			FOREACH item IN ARRAY string_to_array(fields[i], ',') LOOP
				parts := regexp_match(item, '^(\*|([0-9]+|[a-z]{3})(-([0-9]+|[a-z]{3}))?)(/([0-9]+))?$');
				IF parts IS NULL OR (parts[6] IS NOT NULL AND (length(parts[6]) > 3 OR parts[6]::integer < 1)) THEN
					bad := true;
					EXIT fields;
				END IF;
				FOREACH value IN ARRAY ARRAY[parts[2], parts[4]] LOOP
					CONTINUE WHEN value IS NULL;
					IF value ~ '^[0-9]+$' THEN
						bad := length(value) > 3 OR value::integer NOT BETWEEN low[i] AND high[i];
					ELSE
						bad := names[i] IS NULL OR NOT value = ANY (string_to_array(names[i], ' '));
					END IF;
					EXIT fields WHEN bad;
				END LOOP;
			END LOOP;
		END LOOP;
	END IF;
	IF bad THEN
		RAISE EXCEPTION 'invalid schedule "%"', schedule
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give a cron schedule: minute hour day-of-month month day-of-week, e.g. ''0 3 * * *'' for 03:00 every day (UTC with pg_cron 1.4, which has no seconds).';
	END IF;
	RETURN array_to_string(fields, ' ');
END
$$;
REVOKE ALL ON FUNCTION llm._eval_cron_schedule(text) FROM PUBLIC;

-- The watch, if caller may run, check or remove it; else 42704.
CREATE FUNCTION llm._eval_watch_of(caller name, login name, watch bigint)
RETURNS llm.eval_watches
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w llm.eval_watches;
BEGIN
	IF watch IS NULL THEN
		RAISE EXCEPTION 'the evaluation watch must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO w FROM llm.eval_watches e WHERE e.id = watch;
	IF NOT FOUND OR NOT llm._eval_owns(caller, login, w.owner, w.login_role) THEN
		RAISE EXCEPTION 'evaluation watch % does not exist', watch
			USING ERRCODE = 'undefined_object',
				  HINT = 'List yours with SELECT * FROM llm.eval_watches.';
	END IF;
	RETURN w;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_of(name, name, bigint) FROM PUBLIC;

-- Announces the watch's drift, once per run: when the latest finished run
-- since the label's last move dropped beyond the threshold and was not
-- announced yet.  The payload names the watch, the run and the drop, and
-- nothing else: NOTIFY has no privileges, every session that listens on
-- llm_eval_drift in the database receives it; the rest is in
-- llm.eval_drift, under row level security.  Whether the watch drifted.
CREATE FUNCTION llm._eval_watch_announce(watch_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	d record;
BEGIN
	SELECT * INTO d FROM llm.eval_drift e WHERE e.watch = watch_id;
	IF NOT FOUND OR NOT d.drifted THEN
		RETURN false;
	END IF;
	-- the row lock makes one of two sessions checking at once the announcer
	UPDATE llm.eval_watch_runs wr SET notified_at = now()
	 WHERE wr.watch = watch_id AND wr.run = d.latest_run AND wr.notified_at IS NULL;
	IF FOUND THEN
		PERFORM pg_notify('llm_eval_drift',
						  jsonb_build_object('watch', watch_id, 'run', d.latest_run,
											 'drop', round(d.score_drop::numeric, 6))::text);
	END IF;
	RETURN true;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_announce(bigint) FROM PUBLIC;

-- When a run ends done, its watches (if it is a watch's run) are checked:
-- the drift is announced as soon as the run that shows it is scored, by
-- whichever process ends the run (the scorer, the worker, llm_eval_wait).
-- A failed check must not undo the end of the run: it is a warning.
CREATE FUNCTION llm._eval_watch_run_ended()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	watch_id bigint;
BEGIN
	FOR watch_id IN SELECT wr.watch FROM llm.eval_watch_runs wr WHERE wr.run = NEW.id LOOP
		BEGIN
			PERFORM llm._eval_watch_announce(watch_id);
		EXCEPTION WHEN OTHERS THEN
			RAISE WARNING 'could not check evaluation watch % for drift: %', watch_id, SQLERRM
				USING HINT = format('SELECT llm_eval_watch_check(%s) checks it again.', watch_id);
		END;
	END LOOP;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_run_ended() FROM PUBLIC;
CREATE TRIGGER eval_runs_watch_ended AFTER UPDATE OF state ON llm.eval_runs
	FOR EACH ROW WHEN (NEW.state = 'done' AND OLD.state IS DISTINCT FROM 'done')
	EXECUTE FUNCTION llm._eval_watch_run_ended();

-- Records a watch for llm_eval_watch, which schedules it as the caller.
CREATE FUNCTION llm.llm_eval_watch_store(set text, label text, every text, threshold numeric,
										 prompt text, scorer jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;

CREATE FUNCTION llm._eval_watch_store(caller name, login name, set text, label text, every text,
									  threshold numeric, prompt text, scorer jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s llm.eval_sets;
	fn regprocedure;
	watch_id bigint;
BEGIN
	IF set IS NULL OR label IS NULL OR every IS NULL OR threshold IS NULL THEN
		RAISE EXCEPTION 'the set, label, schedule and threshold must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	s := llm._eval_set_of(caller, login, set);
	-- the label of a prompt: 'prompt:label', or the label with prompt => ...
	-- (neither name may hold a ":")
	IF prompt IS NULL THEN
		IF position(':' IN label) = 0 THEN
			RAISE EXCEPTION 'name the prompt of label "%"', label
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Give the label as ''prompt:label'', e.g. ''triage:production'', or add prompt => ''triage''.';
		END IF;
		prompt := split_part(label, ':', 1);
		label := substr(label, position(':' IN label) + 1);
	ELSIF position(':' IN label) > 0 THEN
		RAISE EXCEPTION 'give the prompt once: label "%" and prompt "%"', label, prompt
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT EXISTS (SELECT FROM llm.prompts p WHERE p.name = prompt) THEN
		RAISE EXCEPTION 'prompt "%" does not exist', prompt
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it with llm_prompt_create.';
	END IF;
	IF NOT EXISTS (SELECT FROM llm.prompt_labels l WHERE l.name = prompt AND l.label = _eval_watch_store.label) THEN
		RAISE EXCEPTION 'prompt "%" has no label "%"', prompt, label
			USING ERRCODE = 'undefined_object',
				  HINT = format('List them with SELECT label FROM llm.prompt_labels WHERE name = %L.', prompt);
	END IF;
	IF threshold = 'NaN' OR threshold < 0 OR threshold >= 1 THEN
		RAISE EXCEPTION 'invalid threshold %', threshold
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The threshold is the drop in mean score (0 to 1) that counts as drift, from 0 up to but not including 1: 0.05 is 5 points.';
	END IF;
	every := llm._eval_cron_schedule(every);
	-- the scorer is checked as llm_eval_run checks it, so that a mistake
	-- shows now rather than in the first scheduled run's error
	scorer := coalesce(scorer, '{"type": "exact"}');
	IF jsonb_typeof(scorer) <> 'object' OR jsonb_typeof(scorer -> 'type') IS DISTINCT FROM 'string' THEN
		RAISE EXCEPTION 'a scorer is a JSON object with a "type"' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF scorer ->> 'type' = 'function' THEN
		fn := to_regprocedure((scorer ->> 'function') || '(text, jsonb, jsonb)');
		IF fn IS NULL OR NOT has_function_privilege(caller, fn, 'EXECUTE') THEN
			RAISE EXCEPTION 'function %(text, jsonb, jsonb) does not exist', scorer ->> 'function'
				USING ERRCODE = 'undefined_function';
		END IF;
	ELSIF scorer ->> 'type' = 'judge' THEN
		IF NOT EXISTS (SELECT FROM llm.prompts p WHERE p.name = scorer ->> 'prompt') THEN
			RAISE EXCEPTION 'the judge scorer''s prompt "%" does not exist', scorer ->> 'prompt'
				USING ERRCODE = 'undefined_object';
		END IF;
	ELSE
		-- refuses an unknown scorer; with no output an embedding_similarity
		-- scorer checks its model and sends no request
		PERFORM @extschema@.llm_eval_score(scorer,
			CASE WHEN scorer ->> 'type' <> 'embedding_similarity' THEN 'x' END, '"x"', '{}');
	END IF;
	watch_id := nextval('llm.eval_watches_id_seq');
	INSERT INTO llm.eval_watches (id, set_name, prompt, label, schedule, threshold, scorer, job_name,
								  owner, login_role)
	VALUES (watch_id, s.name, prompt, label, every, threshold, scorer, 'llm-eval-watch-' || watch_id,
			caller, login);
	RETURN watch_id;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_store(name, name, text, text, text, numeric, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.llm_eval_watch_store(text, text, text, numeric, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.llm_eval_watch_store(text, text, text, numeric, text, jsonb) TO llm_user;

-- Records the watch (through the gate above), then schedules its job with
-- the caller's own rights: pg_cron runs a job as the role that scheduled
-- it, so a job scheduled by a SECURITY DEFINER body would run the
-- caller's watch as the extension's owner.  Without pg_cron, or without
-- the right to use it, the statement to run is returned as the recipe.
CREATE FUNCTION llm_eval_watch(set text, label text, every text, threshold numeric,
							   prompt text DEFAULT NULL, scorer jsonb DEFAULT '{"type": "exact"}',
							   OUT watch bigint, OUT job bigint, OUT recipe text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w llm.eval_watches;
BEGIN
	watch := llm.llm_eval_watch_store(set, label, every, threshold, prompt, scorer);
	SELECT * INTO w FROM llm.eval_watches e WHERE e.id = watch;
	recipe := format('SELECT cron.schedule(%L, %L, %L)', w.job_name, w.schedule,
					 format('SELECT %s.llm_eval_watch_run(%s)', '@extschema@', watch));
	IF NOT EXISTS (SELECT FROM pg_extension x WHERE x.extname = 'pg_cron') THEN
		RAISE NOTICE 'pg_cron is not installed in this database: watch % runs when llm_eval_watch_run(%) is called', watch, watch
			USING HINT = 'Install pg_cron here (the database of cron.database_name) and run the recipe: ' || recipe || ';';
	ELSIF NOT has_schema_privilege('cron', 'USAGE') THEN
		RAISE NOTICE 'role "%" may not schedule pg_cron jobs: watch % runs when llm_eval_watch_run(%) is called', current_user, watch, watch
			USING HINT = format('A superuser runs GRANT USAGE ON SCHEMA cron TO %I; then run the recipe as %I: %s;',
								current_user, current_user, recipe);
	ELSE
		EXECUTE recipe INTO job;
	END IF;
END
$$;
COMMENT ON FUNCTION llm_eval_watch(text, text, text, numeric, text, jsonb) IS
	'watch a prompt label''s score on an evaluation set: re-run it on a pg_cron schedule (the job, or the recipe to schedule it) and flag a drop beyond threshold';

-- One scheduled re-evaluation: queues the set against the label's
-- current variant (the label is resolved now, as llm_eval_run resolves
-- it), unless the watch's previous run is still running.  The run id, or
-- NULL when nothing was queued.
CREATE FUNCTION llm_eval_watch_run(watch bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_watch_run(bigint) IS
	'run an evaluation watch once (what its pg_cron job calls): the queued run''s id, NULL while the previous one still runs';

CREATE FUNCTION llm._eval_watch_run(caller name, login name, watch bigint)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w llm.eval_watches := llm._eval_watch_of(caller, login, watch);
	variants jsonb;
	move bigint;
	busy bigint;
	run_id bigint;
BEGIN
	-- a run that ended unannounced (its check failed) is announced now
	PERFORM llm._eval_watch_announce(w.id);
	SELECT wr.run INTO busy FROM llm.eval_watch_runs wr JOIN llm.eval_runs r ON r.id = wr.run
	 WHERE wr.watch = w.id AND r.state = 'running' ORDER BY wr.run DESC LIMIT 1;
	IF FOUND THEN
		RAISE NOTICE 'run % of evaluation watch % is still running: nothing queued', busy, w.id;
		RETURN NULL;
	END IF;
	-- the label cannot move until this run is queued: the move recorded is
	-- the one the run renders with
	SELECT l.variants INTO variants FROM llm.prompt_labels l
	 WHERE l.name = w.prompt AND l.label = w.label FOR SHARE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'prompt "%" has no label "%"', w.prompt, w.label
			USING ERRCODE = 'undefined_object';
	END IF;
	SELECT max(h.id) INTO move FROM llm.prompt_label_history h WHERE h.name = w.prompt AND h.label = w.label;
	run_id := llm._eval_run(caller, login, w.set_name,
							jsonb_build_array(jsonb_build_object('name', w.label, 'prompt', w.prompt,
																 'label', w.label)),
							1, w.scorer, NULL);
	INSERT INTO llm.eval_watch_runs (watch, run, label_move, variants) VALUES (w.id, run_id, move, variants);
	RETURN run_id;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_run(name, name, bigint) FROM PUBLIC;

CREATE FUNCTION llm_eval_watch_check(watch bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_watch_check(bigint) IS
	'whether an evaluation watch''s latest score dropped beyond its threshold; announces it on llm_eval_drift if not yet done';

CREATE FUNCTION llm._eval_watch_check(caller name, login name, watch bigint)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN llm._eval_watch_announce((llm._eval_watch_of(caller, login, watch)).id);
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_check(name, name, bigint) FROM PUBLIC;

-- Removes a watch for llm_eval_unwatch: its pg_cron job's name.
CREATE FUNCTION llm.llm_eval_watch_drop(watch bigint)
RETURNS text
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;

CREATE FUNCTION llm._eval_watch_drop(caller name, login name, watch bigint)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w llm.eval_watches := llm._eval_watch_of(caller, login, watch);
BEGIN
	DELETE FROM llm.eval_watches e WHERE e.id = w.id;
	RETURN w.job_name;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_drop(name, name, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.llm_eval_watch_drop(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.llm_eval_watch_drop(bigint) TO llm_user;

-- Removes the watch (its runs stay), then its pg_cron job with the
-- caller's own rights, as it was scheduled.  A job the caller may not
-- remove (another role's: an llm_admin removing a user's watch) is named
-- in a warning; it then fails on every run, as the watch is gone.
CREATE FUNCTION llm_eval_unwatch(watch bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	job_name text := llm.llm_eval_watch_drop(watch);
	removed bigint := 0;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_extension x WHERE x.extname = 'pg_cron') THEN
		RETURN true;
	END IF;
	IF has_schema_privilege('cron', 'USAGE') THEN
		-- cron.job shows a role its own jobs (a superuser all of them)
		EXECUTE 'SELECT count(cron.unschedule(j.jobid)) FROM cron.job j WHERE j.jobname = $1'
			INTO removed USING job_name;
	END IF;
	IF removed = 0 THEN
		RAISE WARNING 'no pg_cron job "%" of role "%" was removed', job_name, current_user
			USING HINT = format('If the watch had a job, the role that scheduled it removes it with SELECT cron.unschedule(%L).',
								job_name);
	END IF;
	RETURN true;
END
$$;
COMMENT ON FUNCTION llm_eval_unwatch(bigint) IS
	'remove an evaluation watch and its pg_cron job (its runs stay)';

REVOKE ALL ON FUNCTION llm_eval_watch(text, text, text, numeric, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_watch_run(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_watch_check(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_unwatch(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_eval_watch(text, text, text, numeric, text, jsonb) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_watch_run(bigint) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_watch_check(bigint) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_unwatch(bigint) TO llm_user;
-- Evaluation, third part: scoring one output, the statistics of
-- comparisons, and the reports over a run's results.

-- Scores one output: {"score": 0..1 or null, "passed": bool or null,
-- "reason": text or null}.  scorer is {"type": "exact" | "normalized" |
-- "contains" | "regex" | "json_valid" | "json_schema" | "json_match" |
-- "numeric" | "similarity" | "embedding_similarity", ...options}; "judge"
-- and "function" scorers are run by the evaluation itself (see
-- llm_eval_run).  Volatile: embedding_similarity calls an embedding model
-- (a request, a ledger row), which must happen once a call, as written.
CREATE FUNCTION llm_eval_score(scorer jsonb, output text, expected jsonb, vars jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_eval_score'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_score(jsonb, text, jsonb, jsonb) IS
	'score one output against the expected answer: {"score", "passed", "reason"}';
REVOKE ALL ON FUNCTION llm_eval_score(jsonb, text, jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_eval_score(jsonb, text, jsonb, jsonb) TO llm_user;

-- llm_eval_score acting for an evaluation run's submitter and login: what
-- the scorer process calls, so that a scorer that calls a model
-- (embedding_similarity) does so on the submitter's ledger and budgets.
CREATE FUNCTION llm._eval_score_for(submitter name, login name, scorer jsonb, output text,
									expected jsonb, vars jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_eval_score_for'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION llm._eval_score_for(name, name, jsonb, text, jsonb, jsonb) FROM PUBLIC;

-- Statistics of comparisons (src/core/stats.c), for llm_eval_compare and
-- for analysts: exact sign test and McNemar's exact test (p-values), the
-- percentile bootstrap 95 % interval of a mean difference (a fixed seed:
-- the same input gives the same interval), and a mean with its 95 %
-- Student's t interval.
CREATE FUNCTION llm.eval_sign_test(wins integer, losses integer)
RETURNS double precision
AS 'MODULE_PATHNAME', 'llm_eval_sign_test'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION llm.eval_sign_test(integer, integer) IS
	'exact two-sided sign test p-value of wins against losses (ties dropped)';

CREATE FUNCTION llm.eval_mcnemar(b integer, c integer)
RETURNS double precision
AS 'MODULE_PATHNAME', 'llm_eval_mcnemar'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION llm.eval_mcnemar(integer, integer) IS
	'McNemar''s exact test p-value of paired pass/fail: b passed with the first only, c with the second only';

CREATE FUNCTION llm.eval_bootstrap(diffs double precision[], resamples integer DEFAULT 2000)
RETURNS double precision[]
AS 'MODULE_PATHNAME', 'llm_eval_bootstrap'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION llm.eval_bootstrap(double precision[], integer) IS
	'percentile bootstrap 95 % interval {low, high} of the mean of paired differences (NULLs skipped; fixed seed)';

CREATE FUNCTION llm.eval_mean_interval(scores double precision[])
RETURNS double precision[]
AS 'MODULE_PATHNAME', 'llm_eval_mean_interval'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION llm.eval_mean_interval(double precision[]) IS
	'the mean of scores and its 95 % Student''s t interval: {mean, low, high} (NULLs skipped)';

REVOKE ALL ON FUNCTION llm.eval_sign_test(integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.eval_mcnemar(integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.eval_bootstrap(double precision[], integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.eval_mean_interval(double precision[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.eval_sign_test(integer, integer) TO llm_user;
GRANT EXECUTE ON FUNCTION llm.eval_mcnemar(integer, integer) TO llm_user;
GRANT EXECUTE ON FUNCTION llm.eval_bootstrap(double precision[], integer) TO llm_user;
GRANT EXECUTE ON FUNCTION llm.eval_mean_interval(double precision[]) TO llm_user;

-- The 97.5 % quantile of Student's t with df degrees of freedom.
CREATE FUNCTION llm.eval_t975(df bigint)
RETURNS double precision
AS 'MODULE_PATHNAME', 'llm_eval_t975'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION llm.eval_t975(bigint) IS
	'the 97.5 % quantile of Student''s t with df degrees of freedom (NULL below 1)';
REVOKE ALL ON FUNCTION llm.eval_t975(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.eval_t975(bigint) TO llm_user;

-- The mean of n values from their sum and sum of squares, with its 95 %
-- Student's t interval: {mean, low, high} (bounds NULL for one value).
CREATE FUNCTION llm._eval_mean_interval(n bigint, total numeric, squares numeric)
RETURNS double precision[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN coalesce(n, 0) < 1 THEN ARRAY[NULL, NULL, NULL]::double precision[]
				WHEN n = 1 THEN ARRAY[total::double precision, NULL, NULL]
				ELSE ARRAY[m, m - half, m + half] END
	  FROM (SELECT (total / nullif(n, 0))::double precision AS m,
				   CASE WHEN n > 1
						THEN llm.eval_t975(n - 1)
							 * sqrt(greatest((squares - total * total / n) / (n - 1), 0)::double precision / n)
				   END AS half) x
$$;
REVOKE ALL ON FUNCTION llm._eval_mean_interval(bigint, numeric, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._eval_mean_interval(bigint, numeric, numeric) TO llm_user;

-- The fraction-th latency of a run's variant (of n), interpolated as
-- percentile_cont does: two rows read from an index instead of a sort.
CREATE FUNCTION llm._eval_latency(run bigint, variant text, n bigint, fraction double precision)
RETURNS double precision
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN count(*) = 0 THEN NULL
				ELSE min(x.v) + (fraction * (n - 1) - floor(fraction * (n - 1))) * (max(x.v) - min(x.v)) END
	  FROM (SELECT res.latency_ms AS v
			  FROM llm.eval_results res
			 WHERE res.run = _eval_latency.run AND res.variant = _eval_latency.variant
			   AND res.latency_ms IS NOT NULL
			 ORDER BY res.latency_ms
			OFFSET floor(fraction * (greatest(n, 1) - 1))::bigint LIMIT 2) x
$$;
REVOKE ALL ON FUNCTION llm._eval_latency(bigint, text, bigint, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._eval_latency(bigint, text, bigint, double precision) TO llm_user;

-- Per run and variant, from the aggregates kept as answers are recorded
-- (llm.eval_variant_stats): a row per variant is read, not every result.
CREATE VIEW llm.eval_report WITH (security_invoker = true) AS
SELECT s.run, s.variant, s.cases, s.results, s.errors, s.pending,
	   i.mean[1] AS mean_score, i.mean[2] AS score_low, i.mean[3] AS score_high,
	   s.passed::numeric / nullif(s.pass_known, 0) AS pass_rate,
	   s.consistent_cases::double precision / nullif(s.repeated_cases, 0) AS consistency,
	   (s.agreement_sum / nullif(s.repeated_cases, 0))::double precision AS pairwise_agreement,
	   s.json_valid::numeric / nullif(s.answered, 0) AS json_valid_rate,
	   llm._eval_latency(s.run, s.variant, s.latencies, 0.5) AS latency_p50_ms,
	   llm._eval_latency(s.run, s.variant, s.latencies, 0.95) AS latency_p95_ms,
	   s.input_tokens / nullif(s.input_tokens_n, 0) AS input_tokens_per_case,
	   s.output_tokens / nullif(s.output_tokens_n, 0) AS output_tokens_per_case,
	   s.cost_answered / nullif(s.cost_answered_n, 0) AS cost_per_case,
	   s.cost_answered / nullif(s.cost_answered_n, 0) * 1000 AS cost_per_1000_cases,
	   CASE WHEN s.cost_n > 0 THEN s.cost_usd END AS cost_usd,
	   CASE WHEN s.judge_cost_n > 0 THEN s.judge_cost_usd END AS judge_cost_usd,
	   s.contaminated_cases,
	   (s.weighted_score_sum / nullif(s.weight_sum, 0))::double precision AS weighted_mean_score
  FROM llm.eval_variant_stats s,
	   LATERAL (SELECT llm._eval_mean_interval(s.scored_cases, s.score_sum, s.score_sumsq) AS mean) i;
COMMENT ON VIEW llm.eval_report IS
	'per run and variant: cases, errors, mean score with a 95% interval, pass rate, consistency, JSON validity, latency, tokens, cost, contamination';
GRANT SELECT ON llm.eval_report TO llm_user;

-- Paired per case (mean over repeats): a against b.
CREATE FUNCTION llm_eval_compare(run bigint, a text, b text)
RETURNS TABLE (cases bigint, wins bigint, ties bigint, losses bigint,
			   mean_diff double precision, diff_low double precision, diff_high double precision,
			   sign_test_p double precision, a_only_passed bigint, b_only_passed bigint,
			   mcnemar_p double precision, cost_diff_per_case numeric,
			   input_tokens_diff_per_case numeric, output_tokens_diff_per_case numeric,
			   latency_diff_ms double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	diffs double precision[];
	interval_ double precision[];
BEGIN
	IF run IS NULL OR a IS NULL OR b IS NULL THEN
		RAISE EXCEPTION 'the run and both variants must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT EXISTS (SELECT FROM llm.eval_runs r WHERE r.id = run) THEN
		RAISE EXCEPTION 'evaluation run % does not exist', run USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT EXISTS (SELECT FROM llm.eval_results res WHERE res.run = llm_eval_compare.run AND res.variant = a)
	   OR NOT EXISTS (SELECT FROM llm.eval_results res WHERE res.run = llm_eval_compare.run AND res.variant = b) THEN
		RAISE EXCEPTION 'run % has no results of variant "%" or "%"', run, a, b USING ERRCODE = 'undefined_object';
	END IF;
	RETURN QUERY
	WITH per_case AS (
		SELECT res.case_key, res.variant, avg(res.score) AS score,
			   avg(CASE WHEN res.passed THEN 1.0 ELSE 0.0 END) >= 0.5 AS passed,
			   avg(res.cost_usd) AS cost, avg(res.input_tokens) AS input_tokens,
			   avg(res.output_tokens) AS output_tokens, avg(res.latency_ms) AS latency
		  FROM llm.eval_results res
		 WHERE res.run = llm_eval_compare.run AND res.variant IN (a, b) AND res.score IS NOT NULL
		 GROUP BY res.case_key, res.variant),
	paired AS (
		SELECT x.score - y.score AS d, x.passed AS pa, y.passed AS pb,
			   x.cost - y.cost AS cost, x.input_tokens - y.input_tokens AS itok,
			   x.output_tokens - y.output_tokens AS otok, x.latency - y.latency AS lat
		  FROM per_case x JOIN per_case y ON x.case_key = y.case_key AND x.variant = a AND y.variant = b),
	summary AS (
		SELECT count(*) AS n,
			   count(*) FILTER (WHERE d > 0) AS w, count(*) FILTER (WHERE d = 0) AS t,
			   count(*) FILTER (WHERE d < 0) AS l, avg(d) AS mean_d, array_agg(d) AS ds,
			   count(*) FILTER (WHERE pa AND NOT pb) AS ab, count(*) FILTER (WHERE pb AND NOT pa) AS ba,
			   avg(cost) AS cost, avg(itok) AS itok, avg(otok) AS otok, avg(lat) AS lat
		  FROM paired)
	SELECT s.n, s.w, s.t, s.l, s.mean_d,
		   bs[1], bs[2],
		   CASE WHEN s.n > 0 THEN llm.eval_sign_test(s.w::integer, s.l::integer) END,
		   s.ab, s.ba,
		   CASE WHEN s.n > 0 THEN llm.eval_mcnemar(s.ab::integer, s.ba::integer) END,
		   s.cost, s.itok, s.otok, s.lat
	  FROM summary s,
		   LATERAL (SELECT CASE WHEN s.n > 0 THEN llm.eval_bootstrap(s.ds) END AS bs) b;
END
$$;
COMMENT ON FUNCTION llm_eval_compare(bigint, text, text) IS
	'variant a against b, paired per case: wins, ties, losses, mean difference with a bootstrap 95% interval, sign test, McNemar, cost, token and latency differences';

CREATE FUNCTION llm_eval_cases_diff(run bigint, a text, b text)
RETURNS TABLE (case_key text, input text, vars jsonb, expected jsonb,
			   a_score double precision, b_score double precision,
			   a_outputs text[], b_outputs text[])
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
	WITH per_case AS (
		SELECT res.case_key, res.variant, avg(res.score) AS score,
			   array_agg(res.output ORDER BY res.repeat) AS outputs
		  FROM llm.eval_results res
		 WHERE res.run = llm_eval_cases_diff.run AND res.variant IN (a, b)
		 GROUP BY res.case_key, res.variant)
	SELECT x.case_key, c.input, c.vars, c.expected, x.score, y.score, x.outputs, y.outputs
	  FROM per_case x
	  JOIN per_case y ON y.case_key = x.case_key AND y.variant = b
	  JOIN llm.eval_runs r ON r.id = llm_eval_cases_diff.run
	  JOIN llm.eval_cases c ON c.set_name = r.set_name AND c.case_key = x.case_key
	 WHERE x.variant = a AND x.score IS DISTINCT FROM y.score
	 ORDER BY x.case_key
$$;
COMMENT ON FUNCTION llm_eval_cases_diff(bigint, text, text) IS
	'the cases where two variants of a run score differently, with both outputs';

REVOKE ALL ON FUNCTION llm_eval_set_create(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_cases_add(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_cases_from_training(text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_run(text, jsonb, integer, jsonb, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_wait(bigint, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_compare(bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_cases_diff(bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_eval_set_create(text, text) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_cases_add(text, text) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_cases_from_training(text, text, integer) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_run(text, jsonb, integer, jsonb, jsonb) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_wait(bigint, interval) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_compare(bigint, text, text) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_cases_diff(bigint, text, text) TO llm_user;
-- Evaluation, fourth part: a run as one self-contained HTML page, for
-- people who would rather look than read.  Everything on the page comes
-- from the report's own sources (llm.eval_report, llm_eval_compare,
-- llm.eval_case_stats, llm.eval_results), read with the caller's rights:
-- row level security decides which runs a caller can draw.

-- Text made safe for HTML, in element content and in quoted attribute
-- values alike: every value that goes into a page passes through it.
CREATE FUNCTION llm._html_escape(value text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT replace(replace(replace(replace(replace(value,
		'&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;'), '''', '&#39;')
$$;
COMMENT ON FUNCTION llm._html_escape(text) IS
	'text escaped for HTML: & < > " and '' as character references';
REVOKE ALL ON FUNCTION llm._html_escape(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._html_escape(text) TO llm_user;

-- The page: a title, a summary table per variant, three bar charts in
-- inline SVG, the paired comparison of the first variant against each
-- other one, and the matrix of cases x variants.  Variants come in the
-- order the run names them (so the first is the one the run was given
-- first: usually the baseline), cases in byte order of their keys (COLLATE
-- "C": the same page whatever the database's collation).  No script, no
-- link, no font or image from elsewhere, and a Content-Security-Policy
-- that forbids fetching anything, should a value ever slip through.  No
-- clock is read: the same run gives the same page.
CREATE FUNCTION llm_eval_report_html(run bigint)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	-- the matrix shows at most this many cases: a page a browser opens at once
	max_cases constant integer := 500;
	-- the longest output, expected answer or error shown in a cell
	max_chars constant integer := 200;
	-- the distinct outputs shown per cell (repeats that differ)
	max_outputs constant integer := 3;
	-- the charts: labels left of bar_x, bars up to bar_w long, a row per variant
	bar_x constant integer := 170;
	bar_w constant integer := 330;
	row_h constant integer := 26;
	na constant text := '<span class="na">n/a</span>';
	css constant text := '
body { font: 14px/1.45 system-ui, sans-serif; color: #222; margin: 24px; max-width: 1400px; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 16px; margin: 28px 0 6px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
thead th { background: #f3f3f3; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.na { color: #888; }
.note { color: #555; font-size: 13px; }
figure { display: inline-block; margin: 4px 24px 4px 0; vertical-align: top; }
figcaption { font-weight: 600; }
svg text { font: 12px sans-serif; fill: #222; }
svg .bar { fill: #4a78b5; }
svg .whisker { stroke: #111; stroke-width: 1.5; }
svg .axis { stroke: #999; }
tr.differ th, tr.differ td { background: #fff3cd; }
.o { font-family: monospace; font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere; max-width: 380px; margin-top: 2px; }
.e { color: #a00; font-size: 12px; overflow-wrap: anywhere; max-width: 380px; }
.s { font-weight: 600; }
';
	r llm.eval_runs;
	names text[];
	n integer;
	score double precision[];
	score_low double precision[];
	score_high double precision[];
	cost double precision[];
	p95 double precision[];
	score_txt text[];
	cost_txt text[];
	p95_txt text[];
	vals double precision[];
	txts text[];
	top double precision;
	total_cases bigint;
	c record;
	page text;
	part text;
BEGIN
	IF run IS NULL THEN
		RAISE EXCEPTION 'the evaluation run must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- row level security: another role's run looks like no run at all
	SELECT * INTO r FROM llm.eval_runs e WHERE e.id = llm_eval_report_html.run;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'evaluation run % does not exist', run
			USING ERRCODE = 'undefined_object',
				  HINT = 'You see only your own runs: SELECT id FROM llm.eval_runs lists them.';
	END IF;
	names := ARRAY(SELECT v.value ->> 'name'
					 FROM jsonb_array_elements(r.variants) WITH ORDINALITY AS v(value, ord)
					ORDER BY v.ord);
	n := cardinality(names);

	-- the report's figures per variant, in the run's order (NULL: none)
	SELECT array_agg(rep.mean_score ORDER BY v.ord),
		   array_agg(rep.score_low ORDER BY v.ord),
		   array_agg(rep.score_high ORDER BY v.ord),
		   array_agg(rep.cost_per_1000_cases::double precision ORDER BY v.ord),
		   array_agg(rep.latency_p95_ms ORDER BY v.ord),
		   array_agg(round(rep.mean_score::numeric, 3)::text ORDER BY v.ord),
		   array_agg('$' || CASE WHEN rep.cost_per_1000_cases >= 100 THEN round(rep.cost_per_1000_cases)
								 WHEN rep.cost_per_1000_cases >= 1 THEN round(rep.cost_per_1000_cases, 2)
								 ELSE round(rep.cost_per_1000_cases, 4) END ORDER BY v.ord),
		   array_agg(round(rep.latency_p95_ms::numeric)::text || ' ms' ORDER BY v.ord)
	  INTO score, score_low, score_high, cost, p95, score_txt, cost_txt, p95_txt
	  FROM unnest(names) WITH ORDINALITY AS v(name, ord)
	  LEFT JOIN llm.eval_report rep ON rep.run = r.id AND rep.variant = v.name;

	page := format(
'<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src ''none''; style-src ''unsafe-inline''">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Evaluation run %s</title>
<style>%s</style>
</head>
<body>
<h1>Evaluation run %s</h1>
<p>Set <b>%s</b>, state <b>%s</b>, variants: %s.<br>
%s cases &times; %s variants &times; %s repeats: %s requests; scorer <b>%s</b>.</p>
',
		r.id, css, r.id, llm._html_escape(r.set_name), llm._html_escape(r.state),
		(SELECT string_agg('<b>' || llm._html_escape(v) || '</b>', ', ' ORDER BY o)
		   FROM unnest(names) WITH ORDINALITY AS x(v, o)),
		r.cases, n, r.repeats, r.requests, llm._html_escape(r.scorer ->> 'type'));

	-- the summary table
	SELECT string_agg(format(
'<tr><th scope="row">%s</th><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td></tr>',
			llm._html_escape(v.name),
			coalesce(rep.cases::text, na), coalesce(rep.results::text, na),
			coalesce(rep.errors::text, na), coalesce(rep.pending::text, na),
			coalesce(score_txt[v.ord]
					 || coalesce(' [' || round(rep.score_low::numeric, 3) || ', '
								 || round(rep.score_high::numeric, 3) || ']', ''), na),
			coalesce(round(rep.pass_rate * 100, 1) || ' %', na),
			coalesce(round(rep.consistency::numeric * 100, 1) || ' %', na),
			coalesce(round(rep.json_valid_rate * 100, 1) || ' %', na),
			coalesce(p95_txt[v.ord], na), coalesce(cost_txt[v.ord], na)), E'\n' ORDER BY v.ord)
	  INTO part
	  FROM unnest(names) WITH ORDINALITY AS v(name, ord)
	  LEFT JOIN llm.eval_report rep ON rep.run = r.id AND rep.variant = v.name;
	page := page || '<h2>Summary</h2>
<table>
<thead><tr><th>variant</th><th>cases</th><th>results</th><th>errors</th><th>pending</th><th>mean score [95% interval]</th><th>pass rate</th><th>consistency</th><th>JSON valid</th><th>p95 latency</th><th>cost per 1,000 cases</th></tr></thead>
<tbody>
' || coalesce(part, '') || '
</tbody>
</table>
<p class="note">Mean score: over cases of each case''s mean over its repeats, with a 95% Student''s t interval. Consistency: the share of cases whose repeats all gave the same output. Cost: USD per 1,000 answered requests.</p>
';

	-- three bar charts: the score on its own scale (0 to 1) with the
	-- interval as a whisker; cost and latency scaled to the largest value
	page := page || '<h2>By variant</h2>
';
	FOR k IN 1..3 LOOP
		vals := CASE k WHEN 1 THEN score WHEN 2 THEN cost ELSE p95 END;
		txts := CASE k WHEN 1 THEN score_txt WHEN 2 THEN cost_txt ELSE p95_txt END;
		top := CASE WHEN k = 1 THEN 1 ELSE (SELECT max(x) FROM unnest(vals) x) END;
		SELECT string_agg(format(
'<g><title>%s: %s</title><text x="0" y="%s">%s</text>%s%s<text x="%s" y="%s">%s</text></g>',
				llm._html_escape(names[i]), coalesce(txts[i], 'n/a'),
				y + 13,
				llm._html_escape(CASE WHEN length(names[i]) > 24 THEN left(names[i], 23) || '~' ELSE names[i] END),
				CASE WHEN vals[i] IS NOT NULL
					 THEN format('<rect class="bar" x="%s" y="%s" width="%s" height="18"/>', bar_x, y, w) END,
				CASE WHEN wl IS NOT NULL
					 THEN format('<path class="whisker" d="M%s %sH%sM%s %sV%sM%s %sV%s"/>',
								 bar_x + wl, y + 9, bar_x + wh, bar_x + wl, y + 4, y + 14,
								 bar_x + wh, y + 4, y + 14) END,
				bar_x + greatest(w, coalesce(wh, 0)) + 6, y + 13,
				coalesce(txts[i], 'n/a')), E'\n' ORDER BY i)
		  INTO part
		  FROM generate_subscripts(names, 1) AS i,
			   LATERAL (SELECT 8 + (i - 1) * row_h AS y,
							   CASE WHEN vals[i] IS NULL OR NOT top > 0 THEN 0
									ELSE round((least(greatest(vals[i] / top, 0), 1) * bar_w)::numeric, 1) END AS w,
							   CASE WHEN k = 1 AND score_low[i] IS NOT NULL AND score_high[i] IS NOT NULL
									THEN round((least(greatest(score_low[i], 0), 1) * bar_w)::numeric, 1) END AS wl,
							   CASE WHEN k = 1 AND score_low[i] IS NOT NULL AND score_high[i] IS NOT NULL
									THEN round((least(greatest(score_high[i], 0), 1) * bar_w)::numeric, 1) END AS wh) g;
		page := page || format(
'<figure><figcaption>%s</figcaption>
<svg width="%s" height="%s" viewBox="0 0 %s %s" role="img" aria-label="%s">
<line class="axis" x1="%s" y1="4" x2="%s" y2="%s"/>
%s
<text x="%s" y="%s">0</text><text x="%s" y="%s" text-anchor="end">%s</text>
</svg></figure>
',
			CASE k WHEN 1 THEN 'Mean score, 95% interval' WHEN 2 THEN 'Cost per 1,000 cases (USD)'
				   ELSE 'p95 latency' END,
			bar_x + bar_w + 90, n * row_h + 30, bar_x + bar_w + 90, n * row_h + 30,
			CASE k WHEN 1 THEN 'mean score by variant' WHEN 2 THEN 'cost per 1,000 cases by variant'
				   ELSE 'p95 latency by variant' END,
			bar_x, bar_x, n * row_h + 8,
			coalesce(part, ''),
			bar_x - 3, n * row_h + 24, bar_x + bar_w, n * row_h + 24,
			CASE WHEN k = 1 THEN '1'
				 WHEN top IS NULL THEN 'n/a'
				 WHEN k = 2 THEN '$' || CASE WHEN top >= 100 THEN round(top::numeric)
											 WHEN top >= 1 THEN round(top::numeric, 2)
											 ELSE round(top::numeric, 4) END
				 ELSE round(top::numeric) || ' ms' END);
	END LOOP;

	-- the paired comparison: the first variant against each other one
	page := page || '<h2>Paired comparison</h2>
';
	IF n < 2 THEN
		page := page || '<p>One variant: nothing to compare.</p>
';
	ELSE
		part := '';
		FOR i IN 2..n LOOP
			IF NOT EXISTS (SELECT FROM llm.eval_variant_stats s
							WHERE s.run = r.id AND s.variant IN (names[1], names[i]) AND s.results > 0
						   HAVING count(*) = 2) THEN
				part := part || format('<tr><th scope="row">%s</th><th scope="row">%s</th><td colspan="6">no results to compare</td></tr>
', llm._html_escape(names[1]), llm._html_escape(names[i]));
				CONTINUE;
			END IF;
			SELECT * INTO c FROM @extschema@.llm_eval_compare(r.id, names[1], names[i]);
			part := part || format(
'<tr><th scope="row">%s</th><th scope="row">%s</th><td class="n">%s</td><td class="n">%s / %s / %s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s / %s</td><td class="n">%s</td></tr>
',
				llm._html_escape(names[1]), llm._html_escape(names[i]), c.cases,
				coalesce(c.wins::text, na), coalesce(c.ties::text, na), coalesce(c.losses::text, na),
				coalesce(round(c.mean_diff::numeric, 3)
						 || coalesce(' [' || round(c.diff_low::numeric, 3) || ', '
									 || round(c.diff_high::numeric, 3) || ']', ''), na),
				coalesce(CASE WHEN c.sign_test_p < 0.001 THEN '&lt; 0.001'
							  ELSE round(c.sign_test_p::numeric, 3)::text END, na),
				coalesce(c.a_only_passed::text, na), coalesce(c.b_only_passed::text, na),
				coalesce(CASE WHEN c.mcnemar_p < 0.001 THEN '&lt; 0.001'
							  ELSE round(c.mcnemar_p::numeric, 3)::text END, na));
		END LOOP;
		page := page || '<table>
<thead><tr><th>a</th><th>b</th><th>paired cases</th><th>a wins / ties / a loses</th><th>mean score a &minus; b [95% interval]</th><th>sign test p</th><th>passed by a only / b only</th><th>McNemar p</th></tr></thead>
<tbody>
' || part || '</tbody>
</table>
<p class="note">Per case, the mean score over its repeats. The interval is a bootstrap one; a case passes when at least half its repeats passed.</p>
';
	END IF;

	-- the matrix: cases x variants, the rows where variants' outputs differ
	-- highlighted (errors are no output: they are shown, but differ from nothing)
	SELECT count(DISTINCT cs.case_key) INTO total_cases FROM llm.eval_case_stats cs WHERE cs.run = r.id;
	WITH shown AS (
		SELECT cs.case_key FROM llm.eval_case_stats cs WHERE cs.run = r.id
		 GROUP BY cs.case_key ORDER BY cs.case_key COLLATE "C" LIMIT max_cases),
	outputs AS (
		-- each distinct output of a cell, numbered in the order of its first repeat
		SELECT o.*, row_number() OVER (PARTITION BY o.case_key, o.variant
									   ORDER BY o.first, o.output COLLATE "C") AS nth
		  FROM (SELECT res.case_key, res.variant, res.output, min(res.repeat) AS first, count(*) AS times
				  FROM llm.eval_results res JOIN shown s ON s.case_key = res.case_key
				 WHERE res.run = r.id AND res.output IS NOT NULL
				 GROUP BY res.case_key, res.variant, res.output) o),
	cell_outputs AS (
		SELECT o.case_key, o.variant,
			   string_agg(format('<div class="o">%s%s</div>',
								 CASE WHEN length(o.output) > max_chars
									  THEN llm._html_escape(left(o.output, max_chars)) || '&hellip;'
									  ELSE llm._html_escape(o.output) END,
								 CASE WHEN o.times > 1 THEN ' <span class="na">(&times;' || o.times || ')</span>' END),
						  '' ORDER BY o.nth) FILTER (WHERE o.nth <= max_outputs)
			   || CASE WHEN count(*) > max_outputs
					   THEN '<div class="na">and ' || count(*) - max_outputs || ' other outputs</div>'
					   ELSE '' END AS html,
			   array_agg(o.output ORDER BY o.output COLLATE "C") AS output_set
		  FROM outputs o
		 GROUP BY o.case_key, o.variant),
	cell_errors AS (
		SELECT res.case_key, res.variant, count(*) AS errors, min(res.error COLLATE "C") AS error
		  FROM llm.eval_results res JOIN shown s ON s.case_key = res.case_key
		 WHERE res.run = r.id AND res.error IS NOT NULL
		 GROUP BY res.case_key, res.variant),
	cells AS (
		SELECT s.case_key, v.ord, co.output_set,
			   CASE WHEN cs.case_key IS NULL THEN '<td class="na">no results</td>'
					ELSE '<td><span class="s">'
						 || coalesce(round(cs.mean_score, 3)::text, na) || '</span>'
						 || coalesce(co.html, '')
						 || CASE WHEN ce.errors > 0
								 THEN format('<div class="e">%s: %s</div>',
											 CASE WHEN ce.errors = 1 THEN 'error' ELSE ce.errors || ' errors' END,
											 CASE WHEN length(ce.error) > max_chars
												  THEN llm._html_escape(left(ce.error, max_chars)) || '&hellip;'
												  ELSE llm._html_escape(ce.error) END)
								 ELSE '' END
						 || '</td>' END AS html
		  FROM shown s
		 CROSS JOIN unnest(names) WITH ORDINALITY AS v(name, ord)
		  LEFT JOIN llm.eval_case_stats cs
				 ON cs.run = r.id AND cs.variant = v.name AND cs.case_key = s.case_key
		  LEFT JOIN cell_outputs co ON co.case_key = s.case_key AND co.variant = v.name
		  LEFT JOIN cell_errors ce ON ce.case_key = s.case_key AND ce.variant = v.name),
	case_rows AS (
		SELECT x.case_key, count(DISTINCT x.output_set) > 1 AS differ,
			   string_agg(x.html, '' ORDER BY x.ord) AS html
		  FROM cells x
		 GROUP BY x.case_key)
	SELECT string_agg(format('<tr%s><th scope="row">%s</th><td>%s</td>%s</tr>',
							 CASE WHEN cr.differ THEN ' class="differ"' END,
							 llm._html_escape(cr.case_key),
							 coalesce('<div class="o">'
									  || CASE WHEN length(e.shown) > max_chars
											  THEN llm._html_escape(left(e.shown, max_chars)) || '&hellip;'
											  ELSE llm._html_escape(e.shown) END || '</div>', na),
							 cr.html),
					  E'\n' ORDER BY cr.case_key COLLATE "C")
	  INTO part
	  FROM case_rows cr
	  LEFT JOIN llm.eval_cases ec ON ec.set_name = r.set_name AND ec.case_key = cr.case_key
	  LEFT JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(ec.expected) = 'string' THEN ec.expected #>> '{}'
									 ELSE ec.expected::text END AS shown) e ON true;

	page := page || '<h2>Cases</h2>
';
	IF total_cases = 0 THEN
		page := page || '<p>No results yet.</p>
';
	ELSE
		page := page || format('<p class="note">%s Highlighted: cases whose variants gave different outputs. A cell shows the case''s mean score over its repeats, its distinct outputs and its errors.</p>
<table>
<thead><tr><th>case</th><th>expected</th>%s</tr></thead>
<tbody>
%s
</tbody>
</table>
',
			CASE WHEN total_cases > max_cases
				 THEN format('The first %s cases of %s by key are shown; %s are left out.',
							 max_cases, total_cases, total_cases - max_cases)
				 ELSE format('All %s cases are shown.', total_cases) END,
			(SELECT string_agg('<th>' || llm._html_escape(v) || '</th>', '' ORDER BY o)
			   FROM unnest(names) WITH ORDINALITY AS x(v, o)),
			part);
	END IF;
	RETURN page || '<p class="note">Made by llm_eval_report_html: everything is on this page, nothing is fetched from elsewhere.</p>
</body>
</html>';
END
$$;
COMMENT ON FUNCTION llm_eval_report_html(bigint) IS
	'an evaluation run as one self-contained HTML page: summary, charts, paired comparison, cases x variants';
REVOKE ALL ON FUNCTION llm_eval_report_html(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_eval_report_html(bigint) TO llm_user;
-- The life cycle of a prompt and a tuned model after evaluation: whether a
-- fine-tuned model pays for its training (llm_breakeven), and moving a
-- label to a better variant only on the evidence of an evaluation run
-- (llm_prompt_promote).

-- The label history records promotions, and refused promotions, with their
-- evidence.  Written as ALTERs so that a fresh install and an upgrade run
-- the same statements.
ALTER TABLE llm.prompt_label_history ADD COLUMN evidence jsonb;
COMMENT ON COLUMN llm.prompt_label_history.evidence IS
	'for promote and promote_refused: the run, the paired test, the costs and the reasons (llm_prompt_promote)';
ALTER TABLE llm.prompt_label_history DROP CONSTRAINT prompt_label_history_action_check,
	ADD CONSTRAINT prompt_label_history_action_check
		CHECK (action IN ('deploy', 'split', 'rollback', 'promote', 'promote_refused'));

-- What a variant of an evaluation run ran: its stored prompt, version and
-- model (zero rows when the run has no such variant).  A variant that named
-- a version ran that version, with its own model or the version's; one
-- that named a label (or neither) ran what its requests recorded, when that
-- is one version and one model.  Read with the caller's rights.
CREATE FUNCTION llm._eval_variant_target(run bigint, variant text)
RETURNS TABLE (prompt text, version integer, model text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH picked AS (
		SELECT x.value AS spec
		  FROM llm.eval_runs r, jsonb_array_elements(r.variants) x
		 WHERE r.id = _eval_variant_target.run AND x.value ->> 'name' = _eval_variant_target.variant
		 LIMIT 1),
	asked AS (
		SELECT k.spec ->> 'prompt' AS prompt,
			   CASE WHEN k.spec ? 'prompt' THEN
					coalesce((k.spec ->> 'version')::integer,
							 (SELECT min(q.prompt_version) FROM llm.eval_results res
								JOIN llm.requests q ON q.id = res.request_id
							   WHERE res.run = _eval_variant_target.run
								 AND res.variant = _eval_variant_target.variant
							  HAVING count(DISTINCT q.prompt_version) = 1)) END AS version,
			   k.spec
		  FROM picked k)
	SELECT a.prompt, a.version,
		   coalesce(a.spec ->> 'model',
					CASE WHEN a.spec ? 'version'
						 THEN (SELECT p.model FROM llm.prompts p
								WHERE p.name = a.prompt AND p.version = a.version)
						 ELSE (SELECT min(q.model) FROM llm.eval_results res
								 JOIN llm.requests q ON q.id = res.request_id
								WHERE res.run = _eval_variant_target.run
								  AND res.variant = _eval_variant_target.variant
							   HAVING count(DISTINCT q.model) = 1) END)
	  FROM asked a
$$;
REVOKE ALL ON FUNCTION llm._eval_variant_target(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._eval_variant_target(bigint, text) TO llm_user;

-- Break-even of a fine-tuned model against a baseline.
--
-- Per call, for each side v: n = answered calls, C = everything they cost
-- (failed attempts included), E = what the failed ones cost, in and out =
-- mean input and output tokens of an answered call.  cost_per_call = C / n.
-- The saving (baseline b minus tuned t) is split in three parts that sum to
-- it exactly:
--	 from_tokens  = ((in_b - in_t) * input_price_b + (out_b - out_t) * output_price_b) / 1e6
--	 from_retries = E_b / n_b - E_t / n_t
--	 from_prices  = saving - from_tokens - from_retries
-- When every answered call cost its tokens at its model's prices,
-- from_prices is in_t * (input_price_b - input_price_t) + out_t *
-- (output_price_b - output_price_t), over 1e6; cached-input discounts and
-- prices changed since the calls land there too.
-- Break-even: n calls pay for the training when n * saving >= training
-- cost, so ceil(training / saving) with a positive saving, 0 when the
-- training cost nothing, and never (NULL) otherwise.
--
-- SECURITY INVOKER: the ledger, jobs and runs are read with the caller's
-- row level security.
CREATE FUNCTION llm_breakeven(tuned text, baseline text, run bigint DEFAULT NULL,
							  calls_per_day numeric DEFAULT NULL)
RETURNS TABLE (source text, tuned_model text, baseline_model text, training_job bigint,
			   training_cost_usd numeric, tuned_calls bigint, baseline_calls bigint,
			   tuned_cost_per_call numeric, baseline_cost_per_call numeric, saving_per_call numeric,
			   breakeven_calls numeric, never boolean, breakeven_days numeric,
			   saving_from_tokens numeric, saving_from_prices numeric, saving_from_retries numeric,
			   tuned_input_tokens_per_call numeric, baseline_input_tokens_per_call numeric,
			   tuned_output_tokens_per_call numeric, baseline_output_tokens_per_call numeric)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t_model text;
	b_model text;
	t_price llm.models;
	b_price llm.models;
	job_id bigint;
	job_ref text;
	job_cost numeric;
	train numeric;
	-- per side: answered calls, total cost, cost of failures, token sums
	t_n bigint; t_c numeric; t_e numeric; t_in numeric; t_out numeric;
	b_n bigint; b_c numeric; b_e numeric; b_in numeric; b_out numeric;
	t_cpc numeric; b_cpc numeric;
	saving numeric;
	part_tokens numeric;
	part_retries numeric;
	calls numeric;
	side text;
BEGIN
	IF tuned IS NULL OR baseline IS NULL THEN
		RAISE EXCEPTION 'the tuned and the baseline must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF calls_per_day IS NOT NULL AND calls_per_day <= 0 THEN
		RAISE EXCEPTION 'calls_per_day must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s.', calls_per_day);
	END IF;

	IF run IS NOT NULL THEN
		IF NOT EXISTS (SELECT FROM llm.eval_runs r WHERE r.id = llm_breakeven.run) THEN
			RAISE EXCEPTION 'evaluation run % does not exist', run
				USING ERRCODE = 'undefined_object',
					  HINT = 'SELECT id, set_name FROM llm.eval_runs lists the runs you can read.';
		END IF;
		FOREACH side IN ARRAY ARRAY[tuned, baseline] LOOP
			IF NOT EXISTS (SELECT FROM llm._eval_variant_target(run, side)) THEN
				RAISE EXCEPTION 'evaluation run % has no variant "%"', run, side
					USING ERRCODE = 'undefined_object',
						  HINT = format('Its variants: %s.',
										(SELECT string_agg(x.value ->> 'name', ', ')
										   FROM llm.eval_runs r, jsonb_array_elements(r.variants) x
										  WHERE r.id = llm_breakeven.run));
			END IF;
		END LOOP;
		t_model := (SELECT x.model FROM llm._eval_variant_target(run, tuned) x);
		b_model := (SELECT x.model FROM llm._eval_variant_target(run, baseline) x);
		IF t_model IS NULL OR b_model IS NULL THEN
			RAISE EXCEPTION 'the model variant "%" ran is not known',
							CASE WHEN t_model IS NULL THEN tuned ELSE baseline END
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'It named a label, and its requests are gone or ran more than one model.';
		END IF;
		-- answered: with an output; a failed request's cost counts as a retry's
		SELECT count(*) FILTER (WHERE res.output IS NOT NULL),
			   coalesce(sum(res.cost_usd), 0),
			   coalesce(sum(res.cost_usd) FILTER (WHERE res.output IS NULL), 0),
			   coalesce(sum(res.input_tokens) FILTER (WHERE res.output IS NOT NULL), 0),
			   coalesce(sum(res.output_tokens) FILTER (WHERE res.output IS NOT NULL), 0)
		  INTO t_n, t_c, t_e, t_in, t_out
		  FROM llm.eval_results res WHERE res.run = llm_breakeven.run AND res.variant = tuned;
		SELECT count(*) FILTER (WHERE res.output IS NOT NULL),
			   coalesce(sum(res.cost_usd), 0),
			   coalesce(sum(res.cost_usd) FILTER (WHERE res.output IS NULL), 0),
			   coalesce(sum(res.input_tokens) FILTER (WHERE res.output IS NOT NULL), 0),
			   coalesce(sum(res.output_tokens) FILTER (WHERE res.output IS NOT NULL), 0)
		  INTO b_n, b_c, b_e, b_in, b_out
		  FROM llm.eval_results res WHERE res.run = llm_breakeven.run AND res.variant = baseline;
	ELSE
		t_model := tuned;
		b_model := baseline;
		FOREACH side IN ARRAY ARRAY[tuned, baseline] LOOP
			IF NOT EXISTS (SELECT FROM llm.models m WHERE m.name = side) THEN
				RAISE EXCEPTION 'model "%" does not exist', side
					USING ERRCODE = 'undefined_object',
						  HINT = 'Without a run, tuned and baseline are model names: SELECT name FROM llm.models lists them.';
			END IF;
		END LOOP;
		-- the last 30 days of calls to each model; training rows (source
		-- finetune, booked on the base model) and cache hits are not calls
		-- of the model
		SELECT count(*) FILTER (WHERE c.outcome = 'ok'),
			   coalesce(sum(c.cost_usd), 0),
			   coalesce(sum(c.cost_usd) FILTER (WHERE c.outcome <> 'ok'), 0),
			   coalesce(sum(c.input_tokens) FILTER (WHERE c.outcome = 'ok'), 0),
			   coalesce(sum(c.output_tokens) FILTER (WHERE c.outcome = 'ok'), 0)
		  INTO t_n, t_c, t_e, t_in, t_out
		  FROM llm.calls c
		 WHERE c.model = tuned AND c.created_at >= now() - interval '30 days'
		   AND NOT c.cache_hit AND c.source <> 'finetune';
		SELECT count(*) FILTER (WHERE c.outcome = 'ok'),
			   coalesce(sum(c.cost_usd), 0),
			   coalesce(sum(c.cost_usd) FILTER (WHERE c.outcome <> 'ok'), 0),
			   coalesce(sum(c.input_tokens) FILTER (WHERE c.outcome = 'ok'), 0),
			   coalesce(sum(c.output_tokens) FILTER (WHERE c.outcome = 'ok'), 0)
		  INTO b_n, b_c, b_e, b_in, b_out
		  FROM llm.calls c
		 WHERE c.model = baseline AND c.created_at >= now() - interval '30 days'
		   AND NOT c.cache_hit AND c.source <> 'finetune';
	END IF;
	IF t_n = 0 OR b_n = 0 THEN
		RAISE EXCEPTION '% "%" has no answered call to measure',
						CASE WHEN run IS NULL THEN 'model' ELSE 'variant' END,
						CASE WHEN t_n = 0 THEN tuned ELSE baseline END
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = CASE WHEN run IS NULL
								THEN 'No successful call of it in the last 30 days of the ledger that you can read.'
								ELSE format('No result of it in run %s has an output.', run) END,
				  HINT = 'Measure it in an evaluation run, or after some calls.';
	END IF;

	-- the training cost: what the ledger booked for the tuned model's job
	SELECT * INTO t_price FROM llm.models m WHERE m.name = t_model;
	SELECT * INTO b_price FROM llm.models m WHERE m.name = b_model;
	job_id := t_price.finetune_job;
	IF job_id IS NULL THEN
		RAISE EXCEPTION 'model "%" was not fine-tuned by llmext: its training cost is not on record', t_model
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = CASE WHEN t_price.kind = 'fine_tuned'
								THEN 'It was registered with llm_model_create, without a fine-tuning job.'
								ELSE 'It is a base model.' END,
				  HINT = 'Compare per-call costs with llm_eval_compare, or llm.usage_by_model.';
	END IF;
	SELECT j.provider_job_id, j.cost_usd INTO job_ref, job_cost FROM llm.finetune_jobs j WHERE j.id = job_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'permission denied to read the training cost of model "%"', t_model
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Fine-tuning job %s belongs to another role.', job_id),
				  HINT = 'Its submitter or an llm_admin can compute the break-even.';
	END IF;
	-- the worker books the cost once, with the provider's job id; the job's
	-- own figure stands in when the ledger has no row of it
	SELECT sum(c.cost_usd) INTO train FROM llm.calls c
	 WHERE c.source = 'finetune' AND c.request_id = job_ref;
	train := coalesce(train, job_cost, 0);

	t_cpc := trim_scale(round(t_c / t_n, 12));
	b_cpc := trim_scale(round(b_c / b_n, 12));
	saving := trim_scale(b_cpc - t_cpc);
	part_tokens := trim_scale(round(((b_in / b_n - t_in / t_n) * b_price.input_price
									 + (b_out / b_n - t_out / t_n) * b_price.output_price) / 1000000, 12));
	part_retries := trim_scale(round(b_e / b_n - t_e / t_n, 12));
	calls := CASE WHEN train = 0 THEN 0
				  WHEN saving > 0 THEN ceil(train / saving) END;

	RETURN QUERY SELECT
		CASE WHEN run IS NULL THEN 'ledger' ELSE 'run' END, t_model, b_model, job_id,
		train, t_n, b_n, t_cpc, b_cpc, saving,
		calls, calls IS NULL,
		trim_scale(round(calls / calls_per_day, 2)),
		part_tokens, trim_scale(saving - part_tokens - part_retries), part_retries,
		trim_scale(round(t_in / t_n, 6)), trim_scale(round(b_in / b_n, 6)),
		trim_scale(round(t_out / t_n, 6)), trim_scale(round(b_out / b_n, 6));
END
$$;
COMMENT ON FUNCTION llm_breakeven(text, text, bigint, numeric) IS
	'whether a fine-tuned model pays for its training: per-call costs (from a run or the last 30 days of the ledger), the saving split into tokens, prices and retries, the calls and days to break even';
REVOKE ALL ON FUNCTION llm_breakeven(text, text, bigint, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_breakeven(text, text, bigint, numeric) TO llm_user;

-- Promotion gated by evidence: the gate (llm_gate) calls
-- llm._prompt_promote with the caller's roles.
CREATE FUNCTION llm_prompt_promote(name text, label text, run bigint, candidate text,
								   min_gain numeric DEFAULT 0, alpha numeric DEFAULT 0.05,
								   max_cost_ratio numeric DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;

-- The candidate beats the variant serving the label now when, paired per
-- case in the run (llm_eval_compare(run, candidate, current)), mean_diff >=
-- min_gain, it won more cases than it lost, and the sign test's p < alpha;
-- and, with max_cost_ratio, its cost per case is at most max_cost_ratio
-- times the current one's (llm.eval_report).  Otherwise the label stays and
-- the reasons are returned.  Either way the decision and its evidence are a
-- row of the label history: 'promote' (undone by llm_prompt_rollback like
-- a deploy) or 'promote_refused'.
CREATE FUNCTION llm._prompt_promote(caller name, login name, name text, label text, run bigint,
									candidate text, min_gain numeric, alpha numeric,
									max_cost_ratio numeric)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	serving jsonb;
	served_version integer;
	served_model text;
	run_row llm.eval_runs;
	cand record;
	cur_name text;
	cur record;
	cmp record;
	test jsonb;
	cand_cost numeric;
	cur_cost numeric;
	pending bigint;
	reasons text[] := '{}';
	proof jsonb;
	promoted boolean;
	new_variants jsonb;
BEGIN
	IF name IS NULL OR label IS NULL OR run IS NULL OR candidate IS NULL
	   OR min_gain IS NULL OR alpha IS NULL THEN
		RAISE EXCEPTION 'name, label, run, candidate, min_gain and alpha must not be NULL'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Leave max_cost_ratio NULL to promote whatever the candidate costs.';
	END IF;
	IF alpha <= 0 OR alpha >= 1 THEN
		RAISE EXCEPTION 'alpha must be between 0 and 1'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s.', alpha),
				  HINT = 'It is the largest p-value of the sign test that counts as significant, such as 0.05.';
	END IF;
	-- a negative gain would promote a worse variant; scores are 0..1
	IF min_gain < 0 OR min_gain > 1 THEN
		RAISE EXCEPTION 'min_gain must be from 0 to 1'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s.', min_gain),
				  HINT = 'It is the least mean score difference (scores are 0 to 1) the candidate must win by.';
	END IF;
	IF max_cost_ratio IS NOT NULL AND max_cost_ratio <= 0 THEN
		RAISE EXCEPTION 'max_cost_ratio must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s.', max_cost_ratio),
				  HINT = 'For example 1.2: the candidate may cost 20 % more per case than the current variant.';
	END IF;
	IF NOT EXISTS (SELECT FROM llm.prompts p WHERE p.name = _prompt_promote.name) THEN
		RAISE EXCEPTION 'prompt "%" does not exist', name
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it with llm_prompt_create.';
	END IF;
	-- the decision and the move see the same label
	SELECT l.variants INTO serving FROM llm.prompt_labels l
	 WHERE l.name = _prompt_promote.name AND l.label = _prompt_promote.label FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'prompt "%" has no label "%"', name, label
			USING ERRCODE = 'undefined_object',
				  HINT = 'A promotion moves a label that serves a variant now: deploy one first with llm_prompt_deploy.';
	END IF;
	SELECT * INTO run_row FROM llm.eval_runs r WHERE r.id = _prompt_promote.run;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'evaluation run % does not exist', run
			USING ERRCODE = 'undefined_object',
				  HINT = 'SELECT id, set_name, variants FROM llm.eval_runs lists the runs.';
	END IF;
	SELECT * INTO cand FROM llm._eval_variant_target(run, candidate);
	IF NOT FOUND THEN
		RAISE EXCEPTION 'evaluation run % has no variant "%"', run, candidate
			USING ERRCODE = 'undefined_object',
				  HINT = format('Its variants: %s.',
								(SELECT string_agg(x.value ->> 'name', ', ')
								   FROM jsonb_array_elements(run_row.variants) x));
	END IF;
	IF cand.prompt IS DISTINCT FROM name THEN
		RAISE EXCEPTION 'variant "%" of run % is not a version of prompt "%"', candidate, run, name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = CASE WHEN cand.prompt IS NULL THEN 'It is a model with a plain system prompt.'
								ELSE format('It ran prompt "%s".', cand.prompt) END,
				  HINT = 'A label can only be moved to a stored version of its own prompt.';
	END IF;
	IF cand.version IS NULL OR cand.model IS NULL THEN
		RAISE EXCEPTION 'the version and model variant "%" of run % ran are not known', candidate, run
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'It named a label, and its requests are gone or ran more than one version or model.',
				  HINT = 'Evaluate variants that name a version.';
	END IF;

	-- the evidence: which variant serves the label now, and the paired test
	IF jsonb_array_length(serving) > 1 THEN
		reasons := reasons || format('label "%s" is split between %s variants: a promotion replaces one variant',
									 label, jsonb_array_length(serving));
	ELSE
		served_version := (serving -> 0 ->> 'version')::integer;
		served_model := coalesce(serving -> 0 ->> 'model',
								 (SELECT p.model FROM llm.prompts p
								   WHERE p.name = _prompt_promote.name AND p.version = served_version));
		IF served_version = cand.version AND served_model IS NOT DISTINCT FROM cand.model THEN
			reasons := reasons || format('label "%s" already serves version %s with model %s',
										 label, served_version, coalesce(served_model, 'NULL'));
		ELSE
			-- the first variant of the run (in its order) that ran the same
			SELECT x.value ->> 'name' INTO cur_name
			  FROM jsonb_array_elements(run_row.variants) WITH ORDINALITY x(value, i),
				   LATERAL llm._eval_variant_target(run, x.value ->> 'name') t
			 WHERE t.prompt = _prompt_promote.name AND t.version = served_version
			   AND t.model IS NOT DISTINCT FROM served_model
			 ORDER BY x.i LIMIT 1;
			IF cur_name IS NULL THEN
				reasons := reasons || format('run %s has no variant of what label "%s" serves now (version %s with model %s)',
											 run, label, served_version, coalesce(served_model, 'NULL'));
			END IF;
		END IF;
	END IF;
	IF cur_name IS NOT NULL THEN
		SELECT coalesce(sum(s.pending), 0) INTO pending FROM llm.eval_variant_stats s
		 WHERE s.run = _prompt_promote.run AND s.variant IN (candidate, cur_name);
		IF pending > 0 THEN
			reasons := reasons || format('run %s still waits for %s of the results of these variants', run, pending);
		END IF;
		SELECT * INTO cmp FROM @extschema@.llm_eval_compare(run, candidate, cur_name);
		test := jsonb_build_object(
			'method', 'paired sign test', 'cases', cmp.cases, 'wins', cmp.wins, 'ties', cmp.ties,
			'losses', cmp.losses, 'mean_diff', cmp.mean_diff, 'diff_low', cmp.diff_low,
			'diff_high', cmp.diff_high, 'sign_test_p', cmp.sign_test_p,
			'candidate_only_passed', cmp.a_only_passed, 'current_only_passed', cmp.b_only_passed,
			'mcnemar_p', cmp.mcnemar_p);
		IF coalesce(cmp.cases, 0) = 0 THEN
			reasons := reasons || format('no case of run %s was scored for both variants', run);
		ELSE
			IF cmp.mean_diff < min_gain THEN
				reasons := reasons || format('the mean score gain %s is below min_gain %s',
											 trim_scale(round(cmp.mean_diff::numeric, 6)), min_gain);
			END IF;
			IF cmp.wins <= cmp.losses OR cmp.sign_test_p >= alpha THEN
				reasons := reasons || format('not significant: %s wins, %s losses, sign test p = %s, not below alpha %s',
											 cmp.wins, cmp.losses, trim_scale(round(cmp.sign_test_p::numeric, 6)), alpha);
			END IF;
		END IF;
		SELECT e.cost_per_case INTO cand_cost FROM llm.eval_report e
		 WHERE e.run = _prompt_promote.run AND e.variant = candidate;
		SELECT e.cost_per_case INTO cur_cost FROM llm.eval_report e
		 WHERE e.run = _prompt_promote.run AND e.variant = cur_name;
		IF max_cost_ratio IS NOT NULL THEN
			IF cand_cost IS NULL OR cur_cost IS NULL THEN
				reasons := reasons || format('the cost per case of %s was not measured',
											 CASE WHEN cand_cost IS NULL THEN 'the candidate' ELSE 'the current variant' END);
			-- multiplied, not divided: a current variant that cost nothing
			-- admits only a candidate that costs nothing
			ELSIF cand_cost > max_cost_ratio * cur_cost THEN
				reasons := reasons || format('it costs %s USD per case, %s times the current variant''s %s: more than max_cost_ratio %s',
											 trim_scale(round(cand_cost, 12)),
											 coalesce(trim_scale(round(cand_cost / nullif(cur_cost, 0), 6))::text, 'infinitely many'),
											 trim_scale(round(cur_cost, 12)), max_cost_ratio);
			END IF;
		END IF;
	END IF;

	promoted := cardinality(reasons) = 0;
	proof := jsonb_build_object(
		'run', run, 'set', run_row.set_name,
		'candidate', jsonb_build_object('variant', candidate, 'version', cand.version, 'model', cand.model),
		'current', CASE WHEN jsonb_array_length(serving) = 1 THEN
						jsonb_build_object('variant', cur_name, 'version', served_version, 'model', served_model) END,
		'test', test,
		'cost', CASE WHEN cur_name IS NOT NULL THEN jsonb_build_object(
					'candidate_per_case', trim_scale(round(cand_cost, 12)),
					'current_per_case', trim_scale(round(cur_cost, 12)),
					'ratio', trim_scale(round(cand_cost / nullif(cur_cost, 0), 6))) END,
		'criteria', jsonb_build_object('min_gain', min_gain, 'alpha', alpha, 'max_cost_ratio', max_cost_ratio),
		'reasons', to_jsonb(reasons));

	IF promoted THEN
		new_variants := jsonb_build_array(jsonb_build_object(
			'version', cand.version,
			'model', (SELECT x.value ->> 'model' FROM jsonb_array_elements(run_row.variants) x
					   WHERE x.value ->> 'name' = candidate LIMIT 1),
			'weight', 1));
		-- a variant that named a label or no model ran a model found above:
		-- the label keeps to it explicitly unless it is the version's own
		IF new_variants -> 0 ->> 'model' IS NULL
		   AND cand.model IS DISTINCT FROM (SELECT p.model FROM llm.prompts p
											 WHERE p.name = _prompt_promote.name AND p.version = cand.version) THEN
			new_variants := jsonb_set(new_variants, '{0,model}', to_jsonb(cand.model));
		END IF;
		PERFORM llm._prompt_move_label(caller, name, label, new_variants, 'promote');
	ELSE
		INSERT INTO llm.prompt_label_history (name, label, action, from_variants, to_variants, changed_by)
		VALUES (name, label, 'promote_refused', serving, serving, caller);
	END IF;
	-- the row just written, by this session
	UPDATE llm.prompt_label_history h SET evidence = proof
	 WHERE h.id = currval('llm.prompt_label_history_id_seq');
	RETURN jsonb_build_object('promoted', promoted, 'name', name, 'label', label,
							  'from', serving, 'to', coalesce(new_variants, serving),
							  'reasons', to_jsonb(reasons), 'evidence', proof);
END
$$;
COMMENT ON FUNCTION llm_prompt_promote(text, text, bigint, text, numeric, numeric, numeric) IS
	'move a label to a variant of an evaluation run only if it beats the current one by min_gain (sign test under alpha) at most max_cost_ratio times the cost: the decision and its evidence, recorded in the label history';
REVOKE ALL ON FUNCTION llm._prompt_promote(name, name, text, text, bigint, text, numeric, numeric, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_prompt_promote(text, text, bigint, text, numeric, numeric, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_prompt_promote(text, text, bigint, text, numeric, numeric, numeric) TO llm_admin;
