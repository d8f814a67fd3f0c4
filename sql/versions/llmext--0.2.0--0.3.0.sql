-- llmext 0.2.0 -> 0.3.0: fine-tuning.
--
-- Training sets (llm.training_sets, llm.training_examples), fine-tuning jobs
-- run by the worker (llm.finetune_jobs, llm.finetune_events,
-- llm.finetune_checkpoints), tuning prices and lineage on llm.models.

\echo Use "ALTER EXTENSION llmext UPDATE TO '0.3.0'" to load this file. \quit

ALTER TABLE llm.models
	ADD COLUMN training_price numeric CHECK (training_price >= 0),
	ADD COLUMN tuned_input_price numeric CHECK (tuned_input_price >= 0),
	ADD COLUMN tuned_cached_input_price numeric CHECK (tuned_cached_input_price >= 0),
	ADD COLUMN tuned_output_price numeric CHECK (tuned_output_price >= 0),
	ADD COLUMN training_set text,
	ADD COLUMN training_version integer,
	ADD COLUMN prompt_name text,
	ADD COLUMN prompt_version integer,
	ADD COLUMN finetune_job bigint,
	ADD CHECK ((training_set IS NULL) = (training_version IS NULL));

-- A model's limits may bound the examples it is fine-tuned on.
CREATE OR REPLACE FUNCTION llm._check_model_limits(limits jsonb)
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
					 'max_training_example_tokens') THEN
			RAISE EXCEPTION 'unknown model limit "%"', k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Known limits: max_concurrency, requests_per_minute, tokens_per_minute, max_training_example_tokens.';
		END IF;
		PERFORM llm._check_limit('model limit', k, v);
	END LOOP;
END
$$;
COMMENT ON COLUMN llm.models.limits IS 'this model''s own max_concurrency, requests_per_minute and tokens_per_minute, on top of its provider''s; max_training_example_tokens bounds the examples it is fine-tuned on';

-- Comments of the new model columns
COMMENT ON COLUMN llm.models.training_price IS 'USD per million trained tokens for fine-tuning this model (NULL: not known)';
COMMENT ON COLUMN llm.models.tuned_input_price IS 'input price of models tuned from this one; NULL means this model''s own';
COMMENT ON COLUMN llm.models.tuned_cached_input_price IS 'cached input price of models tuned from this one; NULL means the tuned input price';
COMMENT ON COLUMN llm.models.tuned_output_price IS 'output price of models tuned from this one; NULL means this model''s own';
COMMENT ON COLUMN llm.models.training_set IS 'lineage of a fine-tuned model: the training set (with training_version) it was trained on';
COMMENT ON COLUMN llm.models.prompt_name IS 'lineage: the stored prompt (with prompt_version) its training set was rendered through';
COMMENT ON COLUMN llm.models.finetune_job IS 'lineage: the llm.finetune_jobs row that trained it (NULL when trained elsewhere)';

-- llm_model_create takes tuning prices and the lineage of a model trained
-- elsewhere: a new signature.
DROP FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb);
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
	training_version integer DEFAULT NULL)
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
	IF coalesce(input_price, 0) < 0 OR coalesce(output_price, 0) < 0 OR cached_input_price < 0
	   OR training_price < 0 OR tuned_input_price < 0 OR tuned_cached_input_price < 0 OR tuned_output_price < 0 THEN
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
							prompt_version)
	VALUES (name, provider, remote_model, kind, base_model,
			coalesce(input_price, 0), coalesce(output_price, 0), cached_input_price, params,
			limits, training_price, tuned_input_price, tuned_cached_input_price,
			tuned_output_price, training_set, training_version, set_prompt, set_prompt_version);
END
$$;
COMMENT ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer) IS
	'register a base or fine-tuned model under a name SQL can use';
REVOKE ALL ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_model_create(text, text, text, text, text, numeric, numeric, numeric, jsonb, jsonb, numeric, numeric, numeric, numeric, text, integer) TO llm_admin;

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

-- Evaluation: sets, cases, runs, results, reports (sql/schema/97_eval.sql).

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
	finished_at		timestamptz,
	last_request	bigint			-- the last request queued for the run's answers (judges come later)
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

-- Runs: every case x variant x repeat is queued (tag 'eval-<run>') with
-- the callback llm.eval_collect, which scores the answer into its
-- llm.eval_results row (made here, empty, with its request id).
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
	req bigint;
	contaminated boolean;
	chosen record;
	rep integer;
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
		PERFORM @extschema@.llm_eval_score(scorer, 'x', '"x"', '{}');	-- refuses an unknown scorer
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
			SELECT * INTO m FROM llm.models mm WHERE mm.name = model_name;
			contaminated := m.training_set IS NOT NULL AND EXISTS (
				SELECT FROM llm.training_examples e
				 WHERE e.set_name = m.training_set AND e.set_version = m.training_version
				   AND NOT e.held_out
				   AND llm._eval_last_user(e.line::jsonb -> 'messages') = llm._eval_last_user(msgs));
			FOR rep IN 1 .. repeats LOOP
				req := llm._enqueue(caller, login, model_name, msgs, opts, run_tag, 0,
									'llm.eval_collect(bigint, jsonb)'::regprocedure,
									rendered ->> 'prompt', (rendered ->> 'version')::integer);
				INSERT INTO llm.eval_results (run, case_key, variant, repeat, request_id, temperature,
											  seed, contaminated)
				VALUES (run_id, c.case_key, v ->> 'name', rep, req,
						CASE WHEN jsonb_typeof(opts -> 'temperature') = 'number' THEN (opts ->> 'temperature')::double precision END,
						CASE WHEN jsonb_typeof(opts -> 'seed') = 'number' THEN (opts ->> 'seed')::numeric::bigint END,
						contaminated);
			END LOOP;
		END LOOP;
	END LOOP;
	UPDATE llm.eval_runs r SET last_request = req WHERE r.id = run_id;
	RETURN run_id;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_run(name, name, text, jsonb, integer, jsonb, jsonb) FROM PUBLIC;

-- Whether the answer to request_id may be the last of its run, so that the
-- run's end is worth looking for (llm._eval_sync reads all its rows): the
-- answer to the run's last request, and every 256th (judges' answers, a last
-- request answered early); llm_eval_wait looks on every poll.  Asked for
-- every answer, so it reads one row: a probe of the run's pending rows would
-- walk, while a session waits in llm_eval_wait with its snapshot, every row
-- already scored (the versions they replaced cannot be pruned yet).
CREATE FUNCTION llm._eval_may_end(run_id bigint, request_id bigint)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT request_id % 256 = 0
		OR request_id = (SELECT r.last_request FROM llm.eval_runs r WHERE r.id = run_id)
$$;
REVOKE ALL ON FUNCTION llm._eval_may_end(bigint, bigint) FROM PUBLIC;

-- Records errors and cancellations of a run's requests, and ends the run
-- when nothing is pending.  Never waits on a lock: a run row locked by
-- another session is being ended by it.
CREATE FUNCTION llm._eval_sync(run_id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	run llm.eval_runs;
BEGIN
	SELECT * INTO run FROM llm.eval_runs r WHERE r.id = run_id;
	IF NOT FOUND OR run.state <> 'running' THEN
		RETURN run.state;
	END IF;
	UPDATE llm.eval_results res
	   SET error = coalesce(q.error, 'the request failed'), scored_at = now()
	  FROM llm.requests q
	 WHERE res.run = run_id AND q.id = res.request_id AND res.scored_at IS NULL AND q.state = 'error';
	UPDATE llm.eval_results res
	   SET error = 'scoring failed: ' || q.callback_error, scored_at = now()
	  FROM llm.requests q
	 WHERE res.run = run_id AND q.id = res.request_id AND res.scored_at IS NULL
	   AND q.state = 'done' AND q.callback_error IS NOT NULL;
	-- a judge call that failed, whose answer could not be recorded, or was cancelled: no score
	UPDATE llm.eval_results res
	   SET reason = CASE q.state WHEN 'error' THEN 'the judge failed: ' || coalesce(q.error, 'the request failed')
								 WHEN 'cancelled' THEN 'the judge was cancelled'
								 ELSE 'recording the judge''s answer failed: ' || q.callback_error END,
		   judge_cost_usd = q.cost_usd, scored_at = now()
	  FROM llm.requests q
	 WHERE res.run = run_id AND q.id = res.judge_request_id AND res.scored_at IS NULL
	   AND (q.state IN ('error', 'cancelled') OR (q.state = 'done' AND q.callback_error IS NOT NULL));
	-- a cancelled request has no result
	DELETE FROM llm.eval_results res
	 USING llm.requests q
	 WHERE res.run = run_id AND q.id = res.request_id AND res.scored_at IS NULL AND q.state = 'cancelled';
	IF EXISTS (SELECT FROM llm.requests q WHERE q.tag = run.tag AND q.state IN ('queued', 'running'))
	   OR EXISTS (SELECT FROM llm.eval_results res WHERE res.run = run_id AND res.scored_at IS NULL) THEN
		RETURN 'running';
	END IF;
	PERFORM FROM llm.eval_runs r WHERE r.id = run_id AND r.state = 'running' FOR UPDATE SKIP LOCKED;
	IF FOUND THEN
		UPDATE llm.eval_runs r
		   SET state = CASE WHEN EXISTS (SELECT FROM llm.requests q
										  WHERE q.tag = run.tag AND q.state = 'cancelled')
							THEN 'cancelled' ELSE 'done' END,
			   finished_at = now()
		 WHERE r.id = run_id
		RETURNING r.state INTO run.state;
	END IF;
	RETURN run.state;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_sync(bigint) FROM PUBLIC;

-- The result callback of every evaluation request (and judge call), run by the worker as
-- the submitter.  It reads the answer from llm.requests (never from its
-- argument), runs a "function" scorer with the submitter's rights, and has
-- llm.llm_eval_record write the row.  Harmless: it only scores requests of
-- the caller's own runs, from their stored answers.
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
	IF NOT FOUND THEN
		-- perhaps a judge's answer (scorer "judge"): recorded the same way
		PERFORM llm.llm_eval_record(request_id, NULL, NULL);
		RETURN;
	END IF;
	IF r.scorer ->> 'type' = 'function' THEN
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
		EXCEPTION WHEN OTHERS THEN
			fscore := NULL;
			ferror := SQLERRM;
		END;
	END IF;
	PERFORM llm.llm_eval_record(request_id, fscore, ferror);
END
$$;
COMMENT ON FUNCTION llm.eval_collect(bigint, jsonb) IS
	'the callback of evaluation requests: scores the answer into its llm.eval_results row';
REVOKE ALL ON FUNCTION llm.eval_collect(bigint, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.eval_collect(bigint, jsonb) TO llm_user;

CREATE FUNCTION llm.llm_eval_record(request_id bigint, function_score double precision,
									function_error text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;

CREATE FUNCTION llm._eval_record(caller name, login name, request_id bigint,
								 function_score double precision, function_error text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
	s jsonb;
	parsed jsonb;
	rendered jsonb;
	judge_req bigint;
BEGIN
	-- a judge's answer: its score and reason, checked against the fixed schema
	SELECT res.run, run.scorer, q.completion, q.cost_usd, q.response
	  INTO r
	  FROM llm.eval_results res
	  JOIN llm.eval_runs run ON run.id = res.run
	  JOIN llm.requests q ON q.id = res.judge_request_id
	 WHERE res.judge_request_id = _eval_record.request_id AND res.scored_at IS NULL AND q.state = 'done'
	   AND run.submitted_by = caller AND (run.login_role = login OR caller = login)
	   FOR UPDATE OF res;
	IF FOUND THEN
		BEGIN
			parsed := r.completion::jsonb;
		EXCEPTION WHEN OTHERS THEN
			parsed := NULL;
		END;
		IF parsed IS NULL THEN
			s := jsonb_build_object('reason', 'the judge''s answer is not JSON: '
											  || coalesce(left(r.completion, 200), '(none)'));
		ELSIF jsonb_typeof(parsed) <> 'object' OR jsonb_typeof(parsed -> 'score') IS DISTINCT FROM 'number'
			  OR (parsed ->> 'score')::double precision NOT BETWEEN 0 AND 1
			  OR jsonb_typeof(parsed -> 'reason') IS DISTINCT FROM 'string' THEN
			s := jsonb_build_object('reason', 'the judge''s answer is not {"score": 0..1, "reason": text}: '
											  || left(parsed::text, 200));
		ELSE
			s := jsonb_build_object('score', (parsed ->> 'score')::double precision,
									'passed', (parsed ->> 'score')::double precision
											  >= coalesce((r.scorer ->> 'threshold')::double precision, 0.5),
									'reason', parsed ->> 'reason');
		END IF;
		UPDATE llm.eval_results res
		   SET score = (s ->> 'score')::double precision, passed = (s ->> 'passed')::boolean,
			   reason = s ->> 'reason',
			   judge_cost_usd = coalesce(r.cost_usd, (r.response ->> 'cost_usd')::numeric),
			   scored_at = now()
		 WHERE res.judge_request_id = _eval_record.request_id;
		IF llm._eval_may_end(r.run, _eval_record.request_id) THEN
			PERFORM llm._eval_sync(r.run);
		END IF;
		RETURN true;
	END IF;

	-- locked first, by its request (an index): a plan that starts from the run
	-- would walk all its cases for every answer
	PERFORM FROM llm.eval_results res WHERE res.request_id = _eval_record.request_id FOR UPDATE;
	SELECT res.run, res.case_key, res.variant, res.repeat, run.scorer, run.tag, c.expected, c.vars,
		   c.input, q.completion, q.response, q.cost_usd
	  INTO r
	  FROM (SELECT * FROM llm.eval_results x WHERE x.request_id = _eval_record.request_id OFFSET 0) res
	  JOIN llm.eval_runs run ON run.id = res.run
	  JOIN llm.eval_cases c ON c.set_name = run.set_name AND c.case_key = res.case_key
	  JOIN llm.requests q ON q.id = res.request_id
	 WHERE res.request_id = _eval_record.request_id AND res.scored_at IS NULL AND q.state = 'done'
	   AND res.judge_request_id IS NULL
	   AND run.submitted_by = caller AND (run.login_role = login OR caller = login);
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	IF r.scorer ->> 'type' = 'judge' AND r.completion IS NOT NULL THEN
		-- queued now with the run's tag (the run ends when the judge has answered);
		-- the score waits for its answer, recorded by this function too
		rendered := @extschema@.llm_render(r.scorer ->> 'prompt',
			coalesce(r.vars, '{}')
			|| jsonb_build_object('input', coalesce(r.input, r.vars ->> 'input', ''),
								  'expected', CASE WHEN jsonb_typeof(r.expected) = 'string'
												   THEN r.expected #>> '{}'
												   ELSE coalesce(r.expected::text, '') END,
								  'output', r.completion),
			(r.scorer ->> 'version')::integer, NULL, NULL);
		judge_req := llm._enqueue(caller, login, r.scorer ->> 'model', rendered -> 'messages',
			coalesce(rendered -> 'params', '{}')
			|| CASE WHEN jsonb_typeof(rendered -> 'response_format') = 'object'
					THEN jsonb_build_object('response_format', rendered -> 'response_format')
					ELSE '{}' END
			|| '{"cache": "off"}',
			r.tag, 0, 'llm.eval_collect(bigint, jsonb)'::regprocedure,
			rendered ->> 'prompt', (rendered ->> 'version')::integer);
		s := jsonb_build_object('judge_request_id', judge_req);
	ELSIF r.scorer ->> 'type' = 'function' THEN
		s := jsonb_build_object('score', CASE WHEN function_score IS NOT NULL THEN least(greatest(function_score, 0), 1) END,
								'passed', function_score >= coalesce((r.scorer ->> 'threshold')::double precision, 0.5),
								'reason', function_error);
	ELSIF r.completion IS NULL THEN
		s := '{"score": null, "passed": null, "reason": "no output"}';
	ELSE
		s := @extschema@.llm_eval_score(r.scorer, r.completion, r.expected,
										coalesce(r.vars, '{}') || CASE WHEN r.input IS NOT NULL
											THEN jsonb_build_object('input', r.input) ELSE '{}' END);
	END IF;
	BEGIN
		parsed := r.completion::jsonb;
	EXCEPTION WHEN OTHERS THEN
		parsed := NULL;
	END;
	UPDATE llm.eval_results res
	   SET output = r.completion, output_json = parsed,
		   score = (s ->> 'score')::double precision, passed = (s ->> 'passed')::boolean,
		   reason = s ->> 'reason',
		   input_tokens = (r.response -> 'usage' ->> 'input_tokens')::numeric::bigint,
		   output_tokens = (r.response -> 'usage' ->> 'output_tokens')::numeric::bigint,
		   cost_usd = coalesce(r.cost_usd, (r.response ->> 'cost_usd')::numeric),
		   latency_ms = (r.response ->> 'latency_ms')::double precision,
		   call_entry_id = r.response ->> 'entry_id',
		   judge_request_id = (s ->> 'judge_request_id')::bigint,
		   scored_at = CASE WHEN s ? 'judge_request_id' THEN NULL ELSE now() END
	 WHERE res.request_id = _eval_record.request_id;
	IF llm._eval_may_end(r.run, _eval_record.request_id) THEN
		PERFORM llm._eval_sync(r.run);
	END IF;
	RETURN true;
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
	pause double precision := 0.05;
	r llm.eval_runs;
	state text;
	summary jsonb;
BEGIN
	SELECT * INTO r FROM llm.eval_runs e WHERE e.id = run;
	IF NOT FOUND OR NOT llm._eval_owns(caller, login, r.submitted_by, r.login_role) THEN
		RAISE EXCEPTION 'evaluation run % does not exist', run USING ERRCODE = 'undefined_object';
	END IF;
	LOOP
		state := llm._eval_sync(run);
		EXIT WHEN state <> 'running' OR clock_timestamp() >= give_up;
		-- a look reads the whole run: more and more seldom, up to once a second
		PERFORM pg_sleep(pause);
		pause := least(pause * 1.5, 1.0);
	END LOOP;
	SELECT jsonb_build_object('run', _eval_wait.run, 'state', state, 'requests', r.requests,
							  'results', count(*),
							  'scored', count(*) FILTER (WHERE res.scored_at IS NOT NULL AND res.error IS NULL),
							  'errors', count(*) FILTER (WHERE res.error IS NOT NULL),
							  'pending', count(*) FILTER (WHERE res.scored_at IS NULL),
							  'cancelled', r.requests - count(*))
	  INTO summary
	  FROM llm.eval_results res WHERE res.run = _eval_wait.run;
	RETURN summary;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_wait(name, name, bigint, interval) FROM PUBLIC;

-- Reports.  The statistics (llm.eval_mean_interval, llm.eval_bootstrap,
-- llm.eval_sign_test, llm.eval_mcnemar) are bound when first called.
CREATE FUNCTION llm._eval_interval(scores double precision[])
RETURNS double precision[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF coalesce(cardinality(scores), 0) = 0 THEN
		RETURN ARRAY[NULL, NULL, NULL]::double precision[];
	END IF;
	RETURN llm.eval_mean_interval(scores);
END
$$;
REVOKE ALL ON FUNCTION llm._eval_interval(double precision[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._eval_interval(double precision[]) TO llm_user;

CREATE VIEW llm.eval_report WITH (security_invoker = true) AS
WITH by_output AS (
	-- one pass over the rows: per case and distinct output (NULL: no answer)
	SELECT res.run, res.variant, res.case_key, res.output,
		   count(*)::integer AS n, sum(res.score) AS score_sum, count(res.score) AS scored,
		   bool_or(res.contaminated) AS contaminated
	  FROM llm.eval_results res
	 GROUP BY res.run, res.variant, res.case_key, res.output),
per_case AS (
	SELECT o.run, o.variant, o.case_key,
		   sum(o.score_sum) / nullif(sum(o.scored), 0) AS score,
		   coalesce(sum(o.n) FILTER (WHERE o.output IS NOT NULL), 0) AS answers,
		   count(*) FILTER (WHERE o.output IS NOT NULL) AS distinct_outputs,
		   sum(o.n * (o.n - 1) / 2) FILTER (WHERE o.output IS NOT NULL) AS agreeing_pairs,
		   bool_or(o.contaminated) AS contaminated
	  FROM by_output o
	 GROUP BY o.run, o.variant, o.case_key),
by_case AS (
	SELECT p.run, p.variant,
		   count(*) AS cases,
		   llm._eval_interval(array_agg(p.score) FILTER (WHERE p.score IS NOT NULL)) AS interval,
		   avg((p.distinct_outputs = 1)::integer::float8) FILTER (WHERE p.answers >= 2) AS consistency,
		   avg(p.agreeing_pairs::float8 / (p.answers * (p.answers - 1) / 2)) FILTER (WHERE p.answers >= 2) AS pairwise_agreement,
		   count(*) FILTER (WHERE p.contaminated) AS contaminated_cases
	  FROM per_case p
	 GROUP BY p.run, p.variant),
by_row AS (
	SELECT res.run, res.variant,
		   count(*) AS results,
		   count(*) FILTER (WHERE res.error IS NOT NULL) AS errors,
		   count(*) FILTER (WHERE res.scored_at IS NULL) AS pending,
		   avg(CASE WHEN res.passed THEN 1.0 ELSE 0.0 END) FILTER (WHERE res.passed IS NOT NULL) AS pass_rate,
		   avg(CASE WHEN res.output_json IS NOT NULL THEN 1.0 ELSE 0.0 END) FILTER (WHERE res.output IS NOT NULL) AS json_valid_rate,
		   percentile_cont(0.5) WITHIN GROUP (ORDER BY res.latency_ms) AS latency_p50_ms,
		   percentile_cont(0.95) WITHIN GROUP (ORDER BY res.latency_ms) AS latency_p95_ms,
		   avg(res.input_tokens) FILTER (WHERE res.output IS NOT NULL) AS input_tokens_per_case,
		   avg(res.output_tokens) FILTER (WHERE res.output IS NOT NULL) AS output_tokens_per_case,
		   avg(res.cost_usd) FILTER (WHERE res.output IS NOT NULL) AS cost_per_case,
		   sum(res.cost_usd) AS cost_usd,
		   sum(res.judge_cost_usd) AS judge_cost_usd
	  FROM llm.eval_results res
	 GROUP BY res.run, res.variant)
SELECT r.run, r.variant, c.cases, r.results, r.errors, r.pending,
	   c.interval[1] AS mean_score, c.interval[2] AS score_low, c.interval[3] AS score_high,
	   r.pass_rate, c.consistency, c.pairwise_agreement, r.json_valid_rate,
	   r.latency_p50_ms, r.latency_p95_ms, r.input_tokens_per_case, r.output_tokens_per_case,
	   r.cost_per_case, r.cost_per_case * 1000 AS cost_per_1000_cases, r.cost_usd, r.judge_cost_usd,
	   c.contaminated_cases
  FROM by_row r
  JOIN by_case c USING (run, variant);
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

-- Scores one output: {"score": 0..1 or null, "passed": bool or null,
-- "reason": text or null}.  scorer is {"type": "exact" | "normalized" |
-- "contains" | "regex" | "json_valid" | "json_schema" | "json_match" |
-- "numeric" | "similarity", ...options}; "judge" and "function" scorers are
-- run by the evaluation itself (see llm_eval_run).
CREATE FUNCTION llm_eval_score(scorer jsonb, output text, expected jsonb, vars jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_eval_score'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION llm_eval_score(jsonb, text, jsonb, jsonb) IS
	'score one output against the expected answer: {"score", "passed", "reason"}';
REVOKE ALL ON FUNCTION llm_eval_score(jsonb, text, jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_eval_score(jsonb, text, jsonb, jsonb) TO llm_user;

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
