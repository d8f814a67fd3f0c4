-- llmext 0.4.0 -> 0.5.0: queued requests may go through a provider's Batch
-- API (OpenAI's /v1/batches), at the model's batch_price_ratio.
--
-- llm.requests gains batch_api (fixed at submit from the "batch_api"
-- option or the provider's option of that name) and provider_batch; the
-- worker's claim leaves batch-mode requests to llm.provider_batches, a new
-- table of the batches sent.  llm.models gains batch_price_ratio (0.5), and
-- llm_model_create a parameter of that name; llm.batches two columns.
\echo Use "ALTER EXTENSION llmext UPDATE TO '0.5.0'" to load this file. \quit

-- Providers: the batch_api option.
CREATE OR REPLACE FUNCTION llm._check_provider_options(options jsonb)
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
CREATE OR REPLACE FUNCTION llm_provider_drop(name text, cascade boolean DEFAULT false)
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

-- The ledger: tokens written to a provider's prompt cache get their column.
ALTER TABLE llm.calls ADD COLUMN cache_write_tokens bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN llm.calls.cache_write_tokens IS 'input tokens written to the provider''s prompt cache (Anthropic''s cache_creation_input_tokens): counted in input_tokens, as cached_input_tokens are, and priced at the model''s cache_write_price';
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
							   latency_ms, request_id, fingerprint, cache_write_tokens)
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
			   r.latency_ms, r.request_id, r.fingerprint, coalesce(r.cache_write_tokens, 0)
		  FROM jsonb_to_recordset(entries) AS r(
				entry_id text, created_at timestamptz, created_us bigint, role name,
				login_role name, database name, source text, prompt_name text, prompt_version integer,
				model text, remote_model text, provider text, cache_hit boolean,
				http_status integer, outcome text, error text, input_tokens bigint,
				cached_input_tokens bigint, output_tokens bigint, reasoning_tokens bigint,
				cost_usd numeric, cost_saved_usd numeric, latency_ms double precision,
				request_id text, fingerprint text, cache_write_tokens bigint)
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

-- Models: the share of the prices a Batch API call costs.
ALTER TABLE llm.models ADD COLUMN batch_price_ratio numeric NOT NULL DEFAULT 0.5 CHECK (batch_price_ratio >= 0);
COMMENT ON COLUMN llm.models.batch_price_ratio IS 'the share of the normal prices a call through the provider''s Batch API costs (0.5: half price)';
DROP FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer, numeric, text);
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
	use text DEFAULT 'chat',
	batch_price_ratio numeric DEFAULT 0.5)
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
	IF batch_price_ratio < 0 THEN
		RAISE EXCEPTION 'batch_price_ratio must not be negative'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'It is the share of the normal prices that the provider''s Batch API charges: 0.5 for half price.';
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
							prompt_version, cache_write_price, use, batch_price_ratio)
	VALUES (name, provider, remote_model, kind, base_model,
			coalesce(input_price, 0), coalesce(output_price, 0), cached_input_price, params,
			limits, training_price, tuned_input_price, tuned_cached_input_price,
			tuned_output_price, training_set, training_version, set_prompt, set_prompt_version,
			cache_write_price, use, coalesce(batch_price_ratio, 0.5));
END
$$;
COMMENT ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer, numeric, text, numeric) IS
	'register a base or fine-tuned model, for chat or embeddings, under a name SQL can use';
REVOKE ALL ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer, numeric, text, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer, numeric, text, numeric) TO llm_admin;

-- A tuned model keeps its base model's batch_price_ratio.
CREATE OR REPLACE FUNCTION llm._finetune_register(job bigint, fine_tuned_model text, trained_tokens bigint)
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
							prompt_name, prompt_version, finetune_job, batch_price_ratio)
	VALUES (model_name, base.provider, fine_tuned_model, 'fine_tuned', base.name,
			coalesce(base.tuned_input_price, base.input_price),
			coalesce(base.tuned_output_price, base.output_price),
			coalesce(base.tuned_cached_input_price,
					 CASE WHEN base.tuned_input_price IS NULL THEN base.cached_input_price END),
			base.params, j.training_set, j.training_version,
			set_row.prompt_name, set_row.prompt_version, j.id, base.batch_price_ratio);
	UPDATE llm.finetune_jobs f
	   SET state = 'succeeded', fine_tuned_model = _finetune_register.fine_tuned_model,
		   model = model_name, trained_tokens = _finetune_register.trained_tokens,
		   cost_usd = trim_scale(round(_finetune_register.trained_tokens * base.training_price / 1000000, 10)),
		   error = NULL, finished_at = now(), updated_at = now()
	 WHERE f.id = j.id;
	RETURN model_name;
END
$$;
CREATE OR REPLACE FUNCTION llm_model_drop(name text)
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
	-- the worker reaches a batch at the provider through its model: its
	-- answers, already paid for, would never be read
	SELECT string_agg(b.id::text, ', ' ORDER BY b.id) INTO dependents
	  FROM llm.provider_batches b
	 WHERE b.model = llm_model_drop.name AND b.state NOT IN ('done', 'failed', 'cancelled');
	IF dependents IS NOT NULL THEN
		RAISE EXCEPTION 'cannot drop model "%" while provider batches of it are unfinished', name
			USING ERRCODE = 'object_in_use',
				  DETAIL = format('Provider batches (llm.provider_batches): %s.', dependents),
				  HINT = 'Wait for them to end, or cancel their requests (llm_cancel_batch) and wait for the batches to be cancelled.';
	END IF;
	DELETE FROM llm.models m WHERE m.name = llm_model_drop.name;
END
$$;

-- The queue: requests in batch mode, and the provider batches they go in.
ALTER TABLE llm.requests ADD COLUMN batch_api boolean NOT NULL DEFAULT false,
						 ADD COLUMN provider_batch bigint;
DROP INDEX llm.requests_due_idx;
CREATE INDEX requests_due_idx ON llm.requests (priority DESC, id) WHERE state = 'queued' AND NOT batch_api;
CREATE INDEX requests_batch_api_idx ON llm.requests (model, priority DESC, id)
	WHERE state = 'queued' AND batch_api;
CREATE INDEX requests_provider_batch_idx ON llm.requests (provider_batch, id)
	WHERE provider_batch IS NOT NULL;

CREATE TABLE llm.provider_batches (
	id				bigserial PRIMARY KEY,
	model			text NOT NULL,		-- the llmext model every line was built for
	provider		text NOT NULL,
	state			text NOT NULL DEFAULT 'uploading'
					CHECK (state IN ('uploading', 'creating', 'submitted', 'cancelling', 'finishing',
									 'done', 'failed', 'cancelled')),
	requests		integer NOT NULL DEFAULT 0,	-- lines sent
	input_bytes		bigint,
	input_file_id	text,
	provider_batch_id text,
	provider_status	text,		-- whatever the provider said last
	completed		bigint,		-- the provider's request_counts
	failed			bigint,
	output_file_id	text,
	error_file_id	text,
	answered		integer NOT NULL DEFAULT 0,	-- lines of the output and error files read
	error			text,
	attempts		integer NOT NULL DEFAULT 0,	-- failed requests to the provider in a row
	next_poll_at	timestamptz NOT NULL DEFAULT now(),
	created_at		timestamptz NOT NULL DEFAULT now(),
	submitted_at	timestamptz,
	finished_at		timestamptz,
	updated_at		timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_batches_due_idx ON llm.provider_batches (next_poll_at)
	WHERE state NOT IN ('done', 'failed', 'cancelled');
COMMENT ON TABLE llm.provider_batches IS 'batches sent to providers'' Batch APIs by the worker, and their state there';
COMMENT ON COLUMN llm.provider_batches.state IS 'uploading, creating, submitted (polled), cancelling, finishing (reading the answers), done, failed or cancelled';
SELECT pg_catalog.pg_extension_config_dump('llm.provider_batches', '');
SELECT pg_catalog.pg_extension_config_dump('llm.provider_batches_id_seq', '');
ALTER TABLE llm.provider_batches ENABLE ROW LEVEL SECURITY;
CREATE POLICY provider_batches_of_own_requests ON llm.provider_batches FOR SELECT
	USING (EXISTS (SELECT FROM llm.requests r WHERE r.provider_batch = provider_batches.id)
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
GRANT SELECT ON llm.provider_batches TO llm_user;

CREATE FUNCTION llm._batch_api_wanted(model text, options jsonb)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	asked jsonb := options -> 'batch_api';
	provider_row llm.providers;
	wanted boolean;
BEGIN
	IF asked IS NOT NULL AND jsonb_typeof(asked) <> 'boolean' THEN
		RAISE EXCEPTION 'option "batch_api" must be true or false'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'With true the request waits for the provider''s Batch API: up to 24 hours, at the model''s batch_price_ratio.';
	END IF;
	SELECT p.* INTO provider_row
	  FROM llm.models m JOIN llm.providers p ON p.name = m.provider
	 WHERE m.name = _batch_api_wanted.model;
	wanted := coalesce((asked #>> '{}')::boolean, (provider_row.options ->> 'batch_api')::boolean, false);
	IF wanted AND model IS NULL THEN
		RAISE EXCEPTION 'a request without a model has no batch mode'
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'No model was given and llmext.default_model is empty.',
				  HINT = 'Name the model: each provider batch is for one model.';
	END IF;
	IF wanted AND provider_row.kind IS DISTINCT FROM 'openai' THEN
		RAISE EXCEPTION 'model "%" has no batch mode', model
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = CASE WHEN provider_row.kind IS NULL THEN 'The model is not registered.'
							   ELSE format('Provider "%s" is of kind %s; llmext sends batches to kind openai only.',
										   provider_row.name, provider_row.kind) END,
				  HINT = 'Submit without "batch_api", or with "batch_api": false.';
	END IF;
	RETURN wanted;
END
$$;
REVOKE ALL ON FUNCTION llm._batch_api_wanted(text, jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION llm._enqueue(caller name, login name, model text, messages jsonb, options jsonb,
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
	IF EXISTS (SELECT FROM llm.models m WHERE m.name = _enqueue.model AND m.use = 'embedding') THEN
		RAISE EXCEPTION 'model "%" is registered for embedding, not for chat', model
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The queue runs chat requests: call llm_embed or llm_embed_batch for an embedding model, or pick a chat model.';
	END IF;
	IF callback IS NOT NULL AND NOT has_function_privilege(caller, callback, 'EXECUTE') THEN
		RAISE EXCEPTION 'role "%" may not execute callback %', caller, callback
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'The callback runs with the submitter''s rights.';
	END IF;
	INSERT INTO llm.requests (tag, submitted_by, login_role, priority, model, messages, options,
							  callback, prompt_name, prompt_version, vars, batch_api)
	VALUES (tag, caller, login, coalesce(priority, 0), model, messages, options, callback,
			prompt_name, prompt_version, vars, llm._batch_api_wanted(model, options))
	RETURNING id INTO new_id;
	PERFORM llm._wake_at_commit();
	RETURN new_id;
END
$$;
CREATE OR REPLACE FUNCTION llm._claim(batch integer, after_priority integer DEFAULT NULL,
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
					  WHERE q.state = 'queued' AND NOT q.batch_api AND q.run_after <= now()
					  ORDER BY q.priority DESC, q.id LIMIT batch FOR UPDATE SKIP LOCKED);
	ELSE
		-- the rest of the last claim's priority, then the lower priorities
		ids := ARRAY(SELECT q.id FROM llm.requests q
					  WHERE q.state = 'queued' AND NOT q.batch_api AND q.run_after <= now()
						AND q.priority = after_priority AND q.id > after_id
					  ORDER BY q.priority DESC, q.id LIMIT batch FOR UPDATE SKIP LOCKED);
		IF cardinality(ids) < batch THEN
			ids := ids || ARRAY(SELECT q.id FROM llm.requests q
								 WHERE q.state = 'queued' AND NOT q.batch_api AND q.run_after <= now()
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
CREATE OR REPLACE FUNCTION llm._recover()
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
		 WHERE r.state = 'running' AND NOT r.batch_api	-- those wait at a provider
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
CREATE OR REPLACE FUNCTION llm._finish_many(results jsonb, busy_tags text[] DEFAULT '{}')
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
		 -- not "q.state = 'running'": with a provider batch's thousands of
		 -- rows running, statistics from when they were queued would make
		 -- the planner walk them all for each answer instead of looking
		 -- each one up by id
		 WHERE q.id = r.id AND CASE WHEN q.state = 'running' THEN true ELSE false END
		RETURNING q.id, q.tag)
	SELECT array_agg(id), array_agg(DISTINCT tag) FILTER (WHERE tag IS NOT NULL)
	  INTO written, tags
	  FROM done;
	PERFORM llm._announce_finished(tags, busy_tags);
	RETURN QUERY SELECT unnest(coalesce(written, '{}'));
END
$$;
CREATE OR REPLACE FUNCTION llm._cancel_rows(caller name, login name, ids bigint[], batch_tag text)
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
	-- and an evaluation run whose requests it cancelled ends now, not at
	-- the next llm_eval_wait (the worker may still score an answer first:
	-- then the scorer ends it)
	PERFORM llm._eval_try_end(r.id, true) FROM llm.eval_runs r
	  WHERE r.tag = ANY (tags) AND r.state = 'running';
	RETURN n;
END
$$;
CREATE OR REPLACE FUNCTION llm._eval_run(caller name, login name, set text, variants jsonb, repeats integer,
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
								  callback, prompt_name, prompt_version, batch_api)
		SELECT i.request_id, run_tag, caller, login, 0, i.model, i.messages, i.options, callback,
			   i.prompt, i.version,
			   -- asked per item only when anything could ask for it
			   CASE WHEN i.options ? 'batch_api'
						 OR EXISTS (SELECT FROM llm.providers p WHERE p.options ? 'batch_api')
					THEN llm._batch_api_wanted(i.model, i.options) ELSE false END
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
CREATE OR REPLACE VIEW llm.batches WITH (security_invoker = true) AS
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
					   / count(*) FILTER (WHERE r.state IN ('done', 'error')) END AS eta,
	   -- added in 0.5.0: requests waiting at a provider's Batch API, and its batches' states
	   count(*) FILTER (WHERE r.state = 'running' AND r.provider_batch IS NOT NULL) AS at_provider,
	   (SELECT array_agg(DISTINCT coalesce(b.provider_status, b.state) ORDER BY coalesce(b.provider_status, b.state))
		  FROM llm.provider_batches b
		 WHERE b.id = ANY (array_agg(r.provider_batch) FILTER (WHERE r.state = 'running'))) AS provider_status
  FROM llm.requests r
 GROUP BY r.tag;
COMMENT ON VIEW llm.batches IS 'progress of each batch (tag): counts by state, tokens, cost, rate, ETA, and where its requests wait at a provider''s Batch API';

-- The worker's side of provider batches (llm.provider_batches, in
-- 90_queue.sql): collecting requests, and ending the ones a batch did not
-- answer.  Nobody but the worker calls these.

-- The models with queued batch-mode requests ready to go: the oldest has
-- waited wait_ms since it was queued, or there are max_requests of them.
CREATE FUNCTION llm._batch_api_due(wait_ms double precision, max_requests integer)
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT q.model
	  FROM llm.requests q
	 WHERE q.state = 'queued' AND q.batch_api AND q.run_after <= now()
	 GROUP BY q.model
	HAVING min(q.created_at) <= now() - wait_ms * interval '1 millisecond'
		OR count(*) >= max_requests
	 ORDER BY min(q.created_at)
$$;
REVOKE ALL ON FUNCTION llm._batch_api_due(double precision, integer) FROM PUBLIC;

-- Puts up to max_requests of a model's queued batch-mode requests (by
-- priority, then age) in a new provider batch, running; its id, or NULL
-- when there were none.
CREATE FUNCTION llm._batch_api_collect(model_name text, max_requests integer)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	batch_id bigint;
	n integer;
BEGIN
	INSERT INTO llm.provider_batches (model, provider)
	SELECT model_name, coalesce((SELECT m.provider FROM llm.models m WHERE m.name = model_name), '')
	RETURNING id INTO batch_id;
	UPDATE llm.requests r
	   SET state = 'running', attempts = r.attempts + 1, started_at = coalesce(r.started_at, now()),
		   provider_batch = batch_id
	 WHERE r.id = ANY (ARRAY(SELECT q.id FROM llm.requests q
							  WHERE q.state = 'queued' AND q.batch_api AND q.model = model_name
								AND q.run_after <= now()
							  ORDER BY q.priority DESC, q.id
							  LIMIT max_requests FOR UPDATE SKIP LOCKED));
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n = 0 THEN
		DELETE FROM llm.provider_batches b WHERE b.id = batch_id;
		RETURN NULL;
	END IF;
	UPDATE llm.provider_batches b SET requests = n WHERE b.id = batch_id;
	RETURN batch_id;
END
$$;
REVOKE ALL ON FUNCTION llm._batch_api_collect(text, integer) FROM PUBLIC;

-- Ends the requests of a provider batch that are still running once its
-- answers are read: queued again while attempts remain (requeue), else
-- in error with reason.  Batches their ending finished are announced.
CREATE FUNCTION llm._batch_api_leftovers(batch_id bigint, requeue boolean, max_attempts integer,
										 reason text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n integer;
	tags text[];
BEGIN
	WITH ended AS (
		UPDATE llm.requests r
		   SET state = CASE WHEN requeue AND r.attempts < max_attempts THEN 'queued' ELSE 'error' END,
			   error = reason,
			   run_after = now(),
			   finished_at = CASE WHEN requeue AND r.attempts < max_attempts THEN NULL ELSE now() END
		 WHERE r.provider_batch = batch_id AND r.state = 'running'
		RETURNING r.tag, r.state)
	SELECT count(*), array_agg(DISTINCT tag) FILTER (WHERE tag IS NOT NULL AND state = 'error')
	  INTO n, tags
	  FROM ended;
	PERFORM llm._announce_finished(tags);
	RETURN n;
END
$$;
REVOKE ALL ON FUNCTION llm._batch_api_leftovers(bigint, boolean, integer, text) FROM PUBLIC;
