-- Views for analysts.  security_invoker: each reader sees the totals of the
-- ledger rows that row level security lets them see.

CREATE VIEW llm.usage_daily WITH (security_invoker = true) AS
SELECT (c.created_at AT TIME ZONE 'UTC')::date AS day,
	   c.model, c.prompt_name, c.prompt_version, c.role,
	   count(*) AS calls,
	   count(*) FILTER (WHERE c.outcome = 'error') AS errors,
	   count(*) FILTER (WHERE c.cache_hit) AS cache_hits,
	   round(count(*) FILTER (WHERE c.cache_hit)::numeric / count(*), 4) AS hit_rate,
	   sum(c.input_tokens) AS input_tokens,
	   sum(c.cached_input_tokens) AS cached_input_tokens,
	   sum(c.output_tokens) AS output_tokens,
	   sum(c.reasoning_tokens) AS reasoning_tokens,
	   sum(c.cost_usd) AS cost_usd,
	   sum(c.cost_saved_usd) AS cost_saved_usd,
	   percentile_cont(0.5) WITHIN GROUP (ORDER BY c.latency_ms)
		   FILTER (WHERE NOT c.cache_hit) AS latency_p50_ms,
	   percentile_cont(0.95) WITHIN GROUP (ORDER BY c.latency_ms)
		   FILTER (WHERE NOT c.cache_hit) AS latency_p95_ms
  FROM llm.calls c
 GROUP BY 1, 2, 3, 4, 5;
COMMENT ON VIEW llm.usage_daily IS 'per UTC day, model, prompt version and role: calls, errors, cache hits, tokens, cost, latency';

CREATE VIEW llm.usage_by_model WITH (security_invoker = true) AS
SELECT c.model, m.kind, m.base_model, m.provider,
	   count(*) AS calls,
	   count(*) FILTER (WHERE c.outcome = 'error') AS errors,
	   count(*) FILTER (WHERE c.cache_hit) AS cache_hits,
	   sum(c.input_tokens) AS input_tokens,
	   sum(c.cached_input_tokens) AS cached_input_tokens,
	   sum(c.output_tokens) AS output_tokens,
	   sum(c.reasoning_tokens) AS reasoning_tokens,
	   sum(c.cost_usd) AS cost_usd,
	   sum(c.cost_saved_usd) AS cost_saved_usd,
	   min(c.created_at) AS first_call,
	   max(c.created_at) AS last_call
  FROM llm.calls c
  LEFT JOIN llm.models m ON m.name = c.model
 GROUP BY c.model, m.kind, m.base_model, m.provider;
COMMENT ON VIEW llm.usage_by_model IS 'lifetime totals per model, with its base/fine-tuned lineage';

GRANT SELECT ON llm.usage_daily, llm.usage_by_model TO llm_user;
