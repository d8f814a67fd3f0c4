-- Budgets: spending limits in USD per role (or for everyone) per UTC day or
-- month, checked before each provider request.

CREATE TABLE llm.budgets (
	role		name,			-- NULL: the total of every role
	period		text NOT NULL CHECK (period IN ('day', 'month')),
	limit_usd	numeric NOT NULL CHECK (limit_usd >= 0),
	updated_at	timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX budgets_role_period_idx ON llm.budgets ((coalesce(role, '')), period);
COMMENT ON TABLE llm.budgets IS 'spending limits per role (NULL: everyone together) per UTC day or month';
GRANT SELECT ON llm.budgets TO llm_user;
-- backends remember whether any budget exists; a change makes them ask again
CREATE TRIGGER budgets_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON llm.budgets
	FOR EACH STATEMENT EXECUTE FUNCTION llm._catalog_changed();
SELECT pg_catalog.pg_extension_config_dump('llm.budgets', '');

CREATE FUNCTION llm_budget_set(role name, period text, limit_usd numeric)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF period IS NULL OR period NOT IN ('day', 'month') THEN
		RAISE EXCEPTION 'invalid budget period "%"', coalesce(period, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use ''day'' or ''month'' (UTC).';
	END IF;
	IF limit_usd < 0 THEN
		RAISE EXCEPTION 'limit_usd must not be negative'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL to remove the budget.';
	END IF;
	IF llm_budget_set.role IS NOT NULL
	   AND NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = llm_budget_set.role) THEN
		RAISE EXCEPTION 'role "%" does not exist', llm_budget_set.role
			USING ERRCODE = 'undefined_object',
				  HINT = 'Pass NULL for a budget shared by every role.';
	END IF;
	DELETE FROM llm.budgets b
	 WHERE b.role IS NOT DISTINCT FROM llm_budget_set.role AND b.period = llm_budget_set.period;
	IF limit_usd IS NOT NULL THEN
		INSERT INTO llm.budgets (role, period, limit_usd)
		VALUES (llm_budget_set.role, llm_budget_set.period, limit_usd);
	END IF;
END
$$;
COMMENT ON FUNCTION llm_budget_set(name, text, numeric) IS
	'set (or, with a NULL limit, remove) a spending limit for a role, or for everyone with a NULL role';
REVOKE ALL ON FUNCTION llm_budget_set(name, text, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_budget_set(name, text, numeric) TO llm_admin;

-- Spend so far in each budget's current period that applies to a call by
-- acting role who with login role login (all budgets when who is NULL): a
-- budget applies when the acting role is its role or a member of it, or the
-- login role is its role or inherits it (llm._counts_for), so a role switch
-- escapes no budget.  A budget's spend is every call it applies to.  pending_own and pending_all are costs
-- already incurred but not yet written to llm.calls: the caller's own by pair
-- of roles ([{"role", "login", "cost"}]), and everyone's.
CREATE FUNCTION llm._budget_spend(who name, login name, pending_own jsonb DEFAULT '[]',
								  pending_all numeric DEFAULT 0)
RETURNS TABLE (role name, period text, limit_usd numeric, spent_usd numeric,
			   period_start timestamptz, period_end timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT b.role, b.period, b.limit_usd,
		   s.spent + CASE WHEN b.role IS NULL THEN pending_all
						  ELSE (SELECT coalesce(sum((p ->> 'cost')::numeric), 0)
								  FROM jsonb_array_elements(pending_own) p
								 WHERE llm._counts_for((p ->> 'role')::name, b.role)
									OR llm._counts_for((p ->> 'login')::name, b.role, 'USAGE')) END,
		   p.start, p.start + CASE b.period WHEN 'day' THEN interval '1 day' ELSE interval '1 month' END
	  FROM llm.budgets b
	 CROSS JOIN LATERAL (SELECT date_trunc(b.period, now(), 'UTC') AS start) p
	 CROSS JOIN LATERAL (
		SELECT coalesce(sum(d.cost_usd), 0) AS spent
		  FROM llm.spend_daily d
		 WHERE d.day >= (p.start AT TIME ZONE 'UTC')::date
		   AND (b.role IS NULL OR llm._counts_for(d.role, b.role)
				OR llm._counts_for(d.login_role, b.role, 'USAGE'))) s
	 WHERE who IS NULL OR b.role IS NULL
		OR llm._counts_for(who, b.role) OR llm._counts_for(login, b.role, 'USAGE')
	 ORDER BY b.role NULLS LAST, b.period
$$;
REVOKE ALL ON FUNCTION llm._budget_spend(name, name, jsonb, numeric) FROM PUBLIC;

CREATE FUNCTION llm_budget_status()
RETURNS TABLE (role name, period text, limit_usd numeric, spent_usd numeric,
			   remaining_usd numeric, period_start timestamptz, period_end timestamptz)
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_budget_status() IS
	'the budgets that apply to you (all of them for llm_admin), with the spend so far';

-- The body of llm_budget_status (see llm_gate): who and login are the caller's.
CREATE FUNCTION llm._budget_status(who name, login name)
RETURNS TABLE (role name, period text, limit_usd numeric, spent_usd numeric,
			   remaining_usd numeric, period_start timestamptz, period_end timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- spend still queued for the worker belongs to whoever made it: write it
	-- first (the query below then takes a snapshot that sees it)
	PERFORM @extschema@.llm_flush('5 seconds');
	RETURN QUERY
	SELECT s.role, s.period, s.limit_usd, trim_scale(round(s.spent_usd, 10)),
		   trim_scale(round(greatest(s.limit_usd - s.spent_usd, 0), 10)),
		   s.period_start, s.period_end
	  FROM llm._budget_spend(CASE WHEN pg_has_role(who, 'llm_admin', 'MEMBER') THEN NULL ELSE who END,
							 login, '[]', 0) s;
END
$$;
REVOKE ALL ON FUNCTION llm._budget_status(name, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_budget_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_budget_status() TO llm_user;
