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
