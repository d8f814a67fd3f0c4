-- Shared fixtures for the suites that follow: the fake provider, models
-- for each of its behaviours, and two helpers.
--   error_of(sql): the SQLSTATE, message, detail and hint the statement raises
--   fake_requests(remote_model): how many chat requests the fake provider has
--     received for that model (its "stats" model reports its counters)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS llmext CASCADE;
CREATE EXTENSION llmext;

SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'),
						   api_key => 'sk-test-fake-0123456789');
SELECT llm_model_create('echo', 'fake', 'echo',
						input_price => 0.15, output_price => 0.60, cached_input_price => 0.075);
SELECT llm_model_create(m, 'fake', m)
  FROM unnest(ARRAY['stats', 'stats-reset', 'auth', 'usage-details', 'nullcontent', 'slow-30000',
					'fail-400', 'fail-401', 'fail-403', 'fail-404', 'fail-429',
					'fail-500', 'fail-503', 'truncated', 'nonjson', 'nochoices',
					'huge-200000']) AS m;

CREATE OR REPLACE FUNCTION error_of(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	state text; message text; detail text; hint text;
BEGIN
	EXECUTE sql;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
		detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
	RETURN state || ': ' || message
		|| coalesce(E'\nDETAIL: ' || nullif(detail, ''), '')
		|| coalesce(E'\nHINT: ' || nullif(hint, ''), '');
END
$$;

CREATE OR REPLACE FUNCTION fake_requests(remote_model text) RETURNS int
LANGUAGE sql AS $$
	SELECT coalesce((llm_complete('stats', 'stats')::jsonb -> 'by_model' ->> remote_model)::int, 0)
$$;

SELECT name, provider, remote_model, kind FROM llm.models WHERE name = 'echo';
-- the fake provider's counters start from zero for this run
SELECT llm_complete('reset', 'stats-reset') IS NOT NULL AS counters_reset;
SELECT fake_requests('echo') AS echo_requests_before_any_call;
