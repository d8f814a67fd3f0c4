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
