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
REVOKE ALL ON FUNCTION llm._eval_run(name, name, text, jsonb, integer, jsonb, jsonb) FROM PUBLIC;
