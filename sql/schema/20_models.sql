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
	-- added in 0.5.0
	batch_price_ratio	numeric NOT NULL DEFAULT 0.5 CHECK (batch_price_ratio >= 0),
	CHECK ((kind = 'fine_tuned') = (base_model IS NOT NULL)),
	CHECK (base_model IS DISTINCT FROM name),
	CHECK ((training_set IS NULL) = (training_version IS NULL))
);
CREATE INDEX ON llm.models (base_model);
COMMENT ON TABLE llm.models IS 'models SQL can call: base and fine-tuned, with prices in USD per million tokens';
COMMENT ON COLUMN llm.models.cached_input_price IS 'price of cached input tokens; NULL means the input price';
COMMENT ON COLUMN llm.models.cache_write_price IS 'price of input tokens written to the provider''s prompt cache (Anthropic); NULL means the input price';
COMMENT ON COLUMN llm.models.batch_price_ratio IS 'the share of the normal prices a call through the provider''s Batch API costs (0.5: half price)';
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
COMMENT ON FUNCTION llm_model_drop(text) IS 'remove a registered model';

REVOKE ALL ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer, numeric, text, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_model_drop(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_model_set_limits(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_model_set_limits(text, jsonb) TO llm_admin;
GRANT EXECUTE ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer, numeric, text, numeric) TO llm_admin;
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
