-- The ledger: one row per provider call and per cache hit.  Rows reach this
-- table through llm._persist, called by the background worker in its own
-- transactions (so they survive the caller's ROLLBACK), or by the calling
-- backend itself when no worker serves the database.

CREATE TABLE llm.calls (
	id					bigserial PRIMARY KEY,
	entry_id			text NOT NULL UNIQUE,	-- makes a re-sent entry harmless
	created_at			timestamptz NOT NULL,
	role				name NOT NULL,	-- current_user of the call
	database			name NOT NULL,
	source				text NOT NULL DEFAULT 'sync',
	prompt_name			text,
	prompt_version		integer,
	model				text NOT NULL,
	remote_model		text,
	provider			text,
	cache_hit			boolean NOT NULL DEFAULT false,
	http_status			integer,
	outcome				text NOT NULL CHECK (outcome IN ('ok', 'error')),
	error				text,
	input_tokens		bigint NOT NULL DEFAULT 0,
	cached_input_tokens	bigint NOT NULL DEFAULT 0,
	output_tokens		bigint NOT NULL DEFAULT 0,
	reasoning_tokens	bigint NOT NULL DEFAULT 0,
	cost_usd			numeric NOT NULL DEFAULT 0,
	cost_saved_usd		numeric NOT NULL DEFAULT 0,
	latency_ms			double precision,
	request_id			text,
	fingerprint			text,
	login_role			name NOT NULL,	-- session_user of the call (added in 0.2.0)
	cache_write_tokens	bigint NOT NULL DEFAULT 0	-- (added in 0.5.0)
);
CREATE INDEX calls_created_at_idx ON llm.calls (created_at);
CREATE INDEX calls_role_created_at_idx ON llm.calls (role, created_at);
COMMENT ON COLUMN llm.calls.role IS 'the acting role: current_user where the call was made';
COMMENT ON COLUMN llm.calls.login_role IS 'the login role: session_user of the call (after SET ROLE, the role that switched)';
COMMENT ON TABLE llm.calls IS 'the ledger: every provider call and cache hit, with tokens and cost; survives the caller''s ROLLBACK';
COMMENT ON COLUMN llm.calls.cost_usd IS 'USD at the model''s prices when the call was made; 0 for a cache hit';
COMMENT ON COLUMN llm.calls.cost_saved_usd IS 'for a cache hit: what the call would have cost';
COMMENT ON COLUMN llm.calls.cache_write_tokens IS 'input tokens written to the provider''s prompt cache (Anthropic''s cache_creation_input_tokens): counted in input_tokens, as cached_input_tokens are, and priced at the model''s cache_write_price';
COMMENT ON COLUMN llm.calls.fingerprint IS 'SHA-256 of the canonical request: the cache key';

-- the ledger is kept by pg_dump (money spent is not a cache)
SELECT pg_catalog.pg_extension_config_dump('llm.calls', '');
SELECT pg_catalog.pg_extension_config_dump('llm.calls_id_seq', '');

ALTER TABLE llm.calls ENABLE ROW LEVEL SECURITY;
-- Your own rows: made as your current role, and either from your login or
-- while logged in as that role.  A role switch to a group role (SET ROLE
-- llm_user) therefore shows only what this login did under it; a pooler
-- that logs in once and switches to each tenant shows each tenant its own.
-- (The login is a sub-select: evaluated once per query, not per row.)
CREATE POLICY calls_own_rows ON llm.calls FOR SELECT
	USING ((role = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
GRANT SELECT ON llm.calls TO llm_user;

-- What a call was asked and answered, kept beside its ledger row so that a
-- production call can become an evaluation case or a training example
-- (llm_feedback, llm_eval_cases_from_feedback): a stored prompt's
-- variables, the last user message and the answer, each when it takes at
-- most 64 kB.  Kept while llmext.keep_call_io is on (the default), for
-- llmext.call_io_days (30; the worker deletes older rows), and removed with
-- llm_call_io_purge.  Evaluation runs keep nothing here: their inputs are
-- their sets' cases.
CREATE TABLE llm.call_io (
	entry_id		text PRIMARY KEY REFERENCES llm.calls (entry_id) ON DELETE CASCADE,
	created_at		timestamptz NOT NULL,
	role			name NOT NULL,
	login_role		name NOT NULL,
	prompt_name		text,
	prompt_version	integer,
	vars			jsonb,			-- the stored prompt's variables
	input			text,			-- the last user message
	output			text,			-- the answer
	too_large		boolean NOT NULL DEFAULT false	-- something was left out for its size
);
CREATE INDEX call_io_created_at_idx ON llm.call_io (created_at);
COMMENT ON TABLE llm.call_io IS 'what calls were asked and answered (prompt variables, last user message, answer), kept for llmext.call_io_days';
SELECT pg_catalog.pg_extension_config_dump('llm.call_io', '');
ALTER TABLE llm.call_io ENABLE ROW LEVEL SECURITY;
CREATE POLICY call_io_own_rows ON llm.call_io FOR SELECT
	USING ((role = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
GRANT SELECT ON llm.call_io TO llm_user;

-- Spend per UTC day, acting role and login role, kept with the ledger so
-- that a budget check reads a month as a few rows per role instead of
-- summing every call.
CREATE TABLE llm.spend_daily (
	day			date NOT NULL,
	role		name NOT NULL,
	cost_usd	numeric NOT NULL DEFAULT 0,
	login_role	name NOT NULL,
	PRIMARY KEY (day, role, login_role)
);
COMMENT ON TABLE llm.spend_daily IS 'spend per UTC day, acting role and login role, maintained from the ledger; read by budget checks';
REVOKE ALL ON llm.spend_daily FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('llm.spend_daily', '');

-- Writes ledger rows, cache entries and cache hit counts, each given as a
-- JSON object with a "kind" of "call" or "cache".  Idempotent: an entry
-- written twice (a worker that died between commit and forgetting it)
-- changes nothing the second time.
CREATE FUNCTION llm._persist(entries jsonb)
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
REVOKE ALL ON FUNCTION llm._persist(jsonb) FROM PUBLIC;

-- The worker's: deletes up to batch rows of llm.call_io older than days.
CREATE FUNCTION llm._call_io_expire(days integer, batch integer DEFAULT 10000)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	WITH gone AS (
		DELETE FROM llm.call_io
		 WHERE entry_id IN (SELECT entry_id FROM llm.call_io
							 WHERE created_at < now() - days * interval '1 day' LIMIT batch)
		RETURNING 1)
	SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION llm._call_io_expire(integer, integer) FROM PUBLIC;

CREATE FUNCTION llm_call_io_purge(before timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF before IS NULL THEN
		RAISE EXCEPTION 'before must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	DELETE FROM llm.call_io io WHERE io.created_at < before;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION llm_call_io_purge(timestamptz) IS
	'delete what calls made before a time were asked and answered (llm.call_io): how many; llm_admin only';
REVOKE ALL ON FUNCTION llm_call_io_purge(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_call_io_purge(timestamptz) TO llm_admin;

CREATE FUNCTION llm_last_call_id()
RETURNS text
AS 'MODULE_PATHNAME', 'llm_last_call_id'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_last_call_id() IS
	'the call_id (llm.calls.entry_id) of this session''s last call, for llm_feedback after a call that returns only text';
REVOKE ALL ON FUNCTION llm_last_call_id() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_last_call_id() TO llm_user;

CREATE FUNCTION llm_flush(timeout interval DEFAULT '10 seconds')
RETURNS boolean
AS 'MODULE_PATHNAME', 'llm_flush'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_flush(interval) IS
	'wait until the ledger rows and cache entries this database has produced so far are written; false on timeout';
REVOKE ALL ON FUNCTION llm_flush(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_flush(interval) TO llm_user;
