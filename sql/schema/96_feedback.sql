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
