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
		WHEN 'batch_api' THEN
			IF jsonb_typeof(v) <> 'boolean' THEN
				RAISE EXCEPTION 'provider option "batch_api" must be true or false'
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'With true, requests queued for the provider''s models go through its Batch API unless their options say "batch_api": false.';
			END IF;
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
					  HINT = 'Known options: headers, auth_header, chat_path, max_concurrency, max_attempts, requests_per_minute, tokens_per_minute, batch_api.';
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
	IF (options ->> 'batch_api')::boolean AND kind IS DISTINCT FROM 'openai' THEN
		RAISE EXCEPTION 'provider kind "%" has no batch mode', kind
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'llmext sends batches to kind openai only; leave out the option "batch_api".';
	END IF;
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
	SELECT string_agg(b.id::text, ', ' ORDER BY b.id) INTO dependents
	  FROM llm.provider_batches b
	 WHERE b.provider = llm_provider_drop.name AND b.state NOT IN ('done', 'failed', 'cancelled');
	IF dependents IS NOT NULL THEN
		RAISE EXCEPTION 'cannot drop provider "%" while its provider batches are unfinished', name
			USING ERRCODE = 'object_in_use',
				  DETAIL = format('Provider batches (llm.provider_batches): %s.', dependents),
				  HINT = 'Wait for them to end, or cancel their requests (llm_cancel_batch) and wait for the batches to be cancelled.';
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
