-- The response cache: the normalised result of a deterministic request,
-- keyed by the SHA-256 of the canonical request.

CREATE TABLE llm.cache (
	key			text PRIMARY KEY,
	model		text NOT NULL,
	provider	text,
	remote_model text,
	result		jsonb NOT NULL,
	cost_usd	numeric NOT NULL DEFAULT 0,
	created_at	timestamptz NOT NULL,
	expires_at	timestamptz,
	hit_count	bigint NOT NULL DEFAULT 0,
	last_hit_at	timestamptz
);
CREATE INDEX cache_expires_at_idx ON llm.cache (expires_at);
CREATE INDEX cache_model_idx ON llm.cache (model);
COMMENT ON TABLE llm.cache IS 'cached results of deterministic requests; read through llm_complete and llm_chat, not directly';
-- backends keep recent answers in memory: a deletion makes them forget
CREATE TRIGGER cache_deleted AFTER DELETE OR TRUNCATE ON llm.cache
	FOR EACH STATEMENT EXECUTE FUNCTION llm._catalog_changed();
SELECT pg_catalog.pg_extension_config_dump('llm.cache', '');
-- users reach cached answers only through calls: entries hold others' prompts
REVOKE ALL ON llm.cache FROM PUBLIC;
GRANT SELECT ON llm.cache TO llm_admin;

CREATE FUNCTION llm_cache_purge(model text DEFAULT NULL, older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	purged bigint;
BEGIN
	IF older_than < interval '0' THEN
		RAISE EXCEPTION 'older_than must not be negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	DELETE FROM llm.cache c
	 WHERE (llm_cache_purge.model IS NULL OR c.model = llm_cache_purge.model)
	   AND (older_than IS NULL OR c.created_at < now() - older_than);
	GET DIAGNOSTICS purged = ROW_COUNT;
	RETURN purged;
END
$$;
COMMENT ON FUNCTION llm_cache_purge(text, interval) IS
	'delete cache entries (of one model, older than an age): the number deleted';
REVOKE ALL ON FUNCTION llm_cache_purge(text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_cache_purge(text, interval) TO llm_admin;

-- Expired entries are never served; the worker deletes them in batches.
CREATE FUNCTION llm._cache_expire(batch integer DEFAULT 1000)
RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	WITH gone AS (
		DELETE FROM llm.cache
		 WHERE key IN (SELECT key FROM llm.cache WHERE expires_at < now() LIMIT batch)
		RETURNING 1)
	SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION llm._cache_expire(integer) FROM PUBLIC;
