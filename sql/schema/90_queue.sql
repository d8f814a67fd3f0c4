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
	vars			jsonb,			-- a stored prompt's variables, for llm.call_io (added in 0.4.0)
	-- added in 0.5.0: sent through the provider's Batch API (fixed at submit) ...
	batch_api		boolean NOT NULL DEFAULT false,
	provider_batch	bigint			-- ... in this llm.provider_batches row (the last one)
);
CREATE INDEX requests_due_idx ON llm.requests (priority DESC, id) WHERE state = 'queued' AND NOT batch_api;
-- what the worker collects into provider batches, per model
CREATE INDEX requests_batch_api_idx ON llm.requests (model, priority DESC, id)
	WHERE state = 'queued' AND batch_api;
-- a provider batch's requests, read in chunks by id
CREATE INDEX requests_provider_batch_idx ON llm.requests (provider_batch, id)
	WHERE provider_batch IS NOT NULL;
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

-- Batches at a provider's Batch API: the worker collects queued requests
-- that asked for it (batch_api) per model, uploads them as one file of
-- lines, creates the batch, polls it, and joins its output on custom_id.
-- One provider batch may hold the requests of many users; each request is
-- still prepared, charged and answered as its submitter.
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
-- a provider batch is visible to whoever sees one of its requests
CREATE POLICY provider_batches_of_own_requests ON llm.provider_batches FOR SELECT
	USING (EXISTS (SELECT FROM llm.requests r WHERE r.provider_batch = provider_batches.id)
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
GRANT SELECT ON llm.provider_batches TO llm_user;

-- Whether a request for model with options goes through the provider's
-- Batch API: the "batch_api" option, else the provider's default.
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
	-- and an evaluation run whose requests it cancelled ends now, not at
	-- the next llm_eval_wait (the worker may still score an answer first:
	-- then the scorer ends it)
	PERFORM llm._eval_try_end(r.id, true) FROM llm.eval_runs r
	  WHERE r.tag = ANY (tags) AND r.state = 'running';
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
					   / count(*) FILTER (WHERE r.state IN ('done', 'error')) END AS eta,
	   -- added in 0.5.0: requests waiting at a provider's Batch API, and its batches' states
	   count(*) FILTER (WHERE r.state = 'running' AND r.provider_batch IS NOT NULL) AS at_provider,
	   (SELECT array_agg(DISTINCT coalesce(b.provider_status, b.state) ORDER BY coalesce(b.provider_status, b.state))
		  FROM llm.provider_batches b
		 WHERE b.id = ANY (array_agg(r.provider_batch) FILTER (WHERE r.state = 'running'))) AS provider_status
  FROM llm.requests r
 GROUP BY r.tag;
COMMENT ON VIEW llm.batches IS 'progress of each batch (tag): counts by state, tokens, cost, rate, ETA, and where its requests wait at a provider''s Batch API';
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
