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

-- Spend so far in each budget's current period.  pending_own and pending_all
-- are costs already incurred but not yet written to llm.calls.
CREATE FUNCTION llm._budget_spend(who name, pending_own numeric DEFAULT 0, pending_all numeric DEFAULT 0)
RETURNS TABLE (role name, period text, limit_usd numeric, spent_usd numeric,
			   period_start timestamptz, period_end timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT b.role, b.period, b.limit_usd,
		   s.spent + CASE WHEN b.role IS NULL THEN pending_all ELSE pending_own END,
		   p.start, p.start + CASE b.period WHEN 'day' THEN interval '1 day' ELSE interval '1 month' END
	  FROM llm.budgets b
	 CROSS JOIN LATERAL (SELECT date_trunc(b.period, now(), 'UTC') AS start) p
	 CROSS JOIN LATERAL (
		SELECT coalesce(sum(d.cost_usd), 0) AS spent
		  FROM llm.spend_daily d
		 WHERE d.day >= (p.start AT TIME ZONE 'UTC')::date
		   AND (b.role IS NULL OR d.role = b.role)) s
	 WHERE who IS NULL OR b.role IS NULL OR b.role = who
	 ORDER BY b.role NULLS LAST, b.period
$$;
REVOKE ALL ON FUNCTION llm._budget_spend(name, numeric, numeric) FROM PUBLIC;


-- The spend a caller may see: the budgets of roles the session can act as,
-- or all of them for an llm_admin (who NULL).
CREATE FUNCTION llm._visible_budget_spend(who name, pending_own numeric, pending_all numeric)
RETURNS TABLE (role name, period text, limit_usd numeric, spent_usd numeric,
			   period_start timestamptz, period_end timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT s.*
	  FROM llm._budget_spend(who, pending_own, pending_all) s
	 WHERE CASE WHEN who IS NULL THEN pg_has_role(session_user, 'llm_admin', 'MEMBER')
				ELSE pg_has_role(session_user, who, 'MEMBER') END
$$;
REVOKE ALL ON FUNCTION llm._visible_budget_spend(name, numeric, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._visible_budget_spend(name, numeric, numeric) TO llm_user;

CREATE FUNCTION llm_budget_status()
RETURNS TABLE (role name, period text, limit_usd numeric, spent_usd numeric,
			   remaining_usd numeric, period_start timestamptz, period_end timestamptz)
LANGUAGE plpgsql VOLATILE
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
	  FROM llm._visible_budget_spend(CASE WHEN pg_has_role(current_user, 'llm_admin', 'MEMBER')
										  THEN NULL ELSE current_user END, 0, 0) s;
END
$$;
COMMENT ON FUNCTION llm_budget_status() IS
	'the budgets that apply to you (all of them for llm_admin), with the spend so far';
REVOKE ALL ON FUNCTION llm_budget_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_budget_status() TO llm_user;
