-- Budgets: a call that would start while its period's spend is at or over
-- a limit is refused before any HTTP request.
SET client_min_messages = warning;
CREATE ROLE regress_budget_carol;
CREATE ROLE regress_budget_dave;
GRANT llm_user TO regress_budget_carol, regress_budget_dave;
RESET client_min_messages;

-- each call to this model costs (5 * 1000 + 2 * 1000) / 1e6 = 0.007 USD
SELECT llm_model_create('pricey', 'fake', 'echo', input_price => 1000, output_price => 1000);
SELECT llm_budget_set('regress_budget_carol', 'day', 0.01);
SELECT role, period, limit_usd FROM llm.budgets ORDER BY role;

SET ROLE regress_budget_carol;
SELECT llm_complete('first', 'pricey');
SELECT llm_complete('second', 'pricey');
RESET ROLE;
SELECT fake_requests('echo') AS before \gset
SET ROLE regress_budget_carol;
SELECT regexp_replace(error_of($$SELECT llm_complete('third', 'pricey')$$),
					  'renews at [^;]*', 'renews at <period end>');
RESET ROLE;
SELECT fake_requests('echo') - :before AS requests_made_when_refused;
SET ROLE regress_budget_carol;
-- on_error does not turn a refusal into NULL: the budget is not a provider failure
SELECT error_of($$SELECT llm_complete('third', 'pricey', NULL, '{"on_error": "null"}')$$) LIKE 'LL402%' AS refused;
SELECT role, period, limit_usd, spent_usd, remaining_usd,
	   period_end - period_start AS period_length
  FROM llm_budget_status();
RESET ROLE;

-- another role is not held back by carol's budget
SET ROLE regress_budget_dave;
SELECT llm_complete('dave', 'pricey');
SELECT count(*) AS budgets_dave_sees FROM llm_budget_status();
RESET ROLE;

-- a budget for everyone counts everyone's spend
SELECT llm_budget_set(NULL, 'month', 0.000001);
SET ROLE regress_budget_dave;
SELECT split_part(error_of($$SELECT llm_complete('dave again', 'pricey')$$), E'\n', 1) AS error;
-- a cache hit costs nothing and makes no request: it is served anyway
RESET ROLE;
SELECT llm_budget_set(NULL, 'month', NULL);
SET ROLE regress_budget_dave;
SELECT llm_complete('warm the cache', 'pricey', NULL, '{"temperature": 0}');
RESET ROLE;
SELECT llm_budget_set(NULL, 'month', 0.000001);
SET ROLE regress_budget_dave;
SELECT llm_complete('warm the cache', 'pricey', NULL, '{"temperature": 0}');
RESET ROLE;
SELECT llm_budget_set(NULL, 'month', NULL);

-- raising the limit lets carol call again; NULL removes a budget
SELECT llm_budget_set('regress_budget_carol', 'day', 100);
SET ROLE regress_budget_carol;
SELECT llm_complete('after the raise', 'pricey');
RESET ROLE;
SELECT llm_budget_set('regress_budget_carol', 'day', NULL);
SELECT count(*) AS budgets_left FROM llm.budgets;

-- bad budgets, and who may set them
SELECT error_of($$SELECT llm_budget_set('regress_budget_carol', 'week', 1)$$);
SELECT error_of($$SELECT llm_budget_set('regress_budget_carol', NULL, 1)$$);
SELECT error_of($$SELECT llm_budget_set('regress_budget_carol', 'day', -1)$$);
SELECT error_of($$SELECT llm_budget_set('regress_no_such_role', 'day', 1)$$);
SET ROLE regress_budget_carol;
SELECT error_of($$SELECT llm_budget_set('regress_budget_carol', 'day', 1000)$$);
SELECT error_of($$DELETE FROM llm.budgets$$);
RESET ROLE;

SELECT llm_flush() AS flushed;
DROP ROLE regress_budget_carol, regress_budget_dave;
