-- The analysts' views over the ledger.
SELECT llm_model_create('usage-base', 'fake', 'echo', input_price => 1, output_price => 2);
SELECT llm_model_create('usage-tuned', 'fake', 'usage-details', kind => 'fine_tuned',
						base_model => 'usage-base', input_price => 2, output_price => 4);
SELECT llm_complete('usage one', 'usage-base', NULL, '{"temperature": 0}');
SELECT llm_complete('usage one', 'usage-base', NULL, '{"temperature": 0}');
SELECT llm_complete('usage two', 'usage-tuned');
SELECT llm_model_create('usage-broken', 'fake', 'fail-500');
SELECT llm_complete('usage three', 'usage-broken', NULL, '{"on_error": "null"}') IS NULL AS failed;
SELECT llm_flush() AS flushed;

SELECT day = (now() AT TIME ZONE 'UTC')::date AS today, model, prompt_name, prompt_version,
	   role, calls, errors, cache_hits, hit_rate, input_tokens, cached_input_tokens,
	   output_tokens, reasoning_tokens, cost_usd, cost_saved_usd,
	   latency_p50_ms >= 0 AS has_p50, latency_p95_ms >= latency_p50_ms AS p95_above_p50
  FROM llm.usage_daily WHERE model IN ('usage-base', 'usage-tuned', 'usage-broken') ORDER BY model;

SELECT model, kind, base_model, provider, calls, errors, cache_hits, input_tokens,
	   output_tokens, cost_usd, cost_saved_usd, first_call <= last_call AS ordered
  FROM llm.usage_by_model WHERE model IN ('usage-base', 'usage-tuned', 'usage-broken') ORDER BY model;

-- budgets read spend per day and role, kept in step with the ledger
SELECT count(*) > 0 AS has_days,
	   (SELECT sum(cost_usd) FROM llm.spend_daily) = (SELECT sum(cost_usd) FROM llm.calls) AS totals_agree,
	   bool_and(d.cost_usd = (SELECT sum(c.cost_usd) FROM llm.calls c
							   WHERE c.role = d.role AND (c.created_at AT TIME ZONE 'UTC')::date = d.day))
		   AS each_day_agrees
  FROM llm.spend_daily d;
