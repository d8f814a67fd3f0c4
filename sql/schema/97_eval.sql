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
