-- The response cache: a repeated deterministic request is answered from the
-- cache with no HTTP request, at no cost, and recorded as a hit.
SELECT fake_requests('echo') AS before \gset

SELECT llm_complete('cache me', 'echo', NULL, '{"temperature": 0}');
SELECT llm_complete('cache me', 'echo', NULL, '{"temperature": 0}');
SELECT fake_requests('echo') - :before AS requests_for_two_identical_calls;
SELECT r ->> 'content' AS content, r ->> 'cache_hit' AS cache_hit, r ->> 'cost_usd' AS cost_usd,
	   (r ->> 'cost_saved_usd')::numeric > 0 AS saved_something
  FROM llm_chat('[{"role": "user", "content": "cache me"}]', 'echo', '{"temperature": 0}') r;
SELECT llm_flush() AS flushed;
SELECT cache_hit, cost_usd, cost_saved_usd, cost_saved_usd = (6 * 0.15 + 3 * 0.60) / 1e6 AS saved_as_priced
  FROM llm.calls WHERE model = 'echo' ORDER BY id DESC LIMIT 3;
SELECT hit_count, last_hit_at IS NOT NULL AS has_last_hit, expires_at > now() AS expires_later
  FROM llm.cache c JOIN llm.calls l ON l.fingerprint = c.key
 WHERE l.id = (SELECT max(id) FROM llm.calls WHERE model = 'echo');

-- only deterministic requests are cached: no temperature 0 and no seed, no cache
SELECT fake_requests('echo') AS before \gset
SELECT llm_complete('not deterministic', 'echo');
SELECT llm_complete('not deterministic', 'echo');
SELECT llm_complete('seeded', 'echo', NULL, '{"seed": 7, "temperature": 0.8}');
SELECT llm_complete('seeded', 'echo', NULL, '{"seed": 7, "temperature": 0.8}');
SELECT fake_requests('echo') - :before AS requests_made;

-- the key is canonical: parameters merged in another order hit the same entry
SELECT llm_model_create('echo-cold', 'fake', 'echo', params => '{"temperature": 0}');
SELECT fake_requests('echo') AS before \gset
SELECT llm_complete('canonical', 'echo-cold', NULL, '{"seed": 1}');
SELECT llm_complete('canonical', 'echo', NULL, '{"seed": 1, "temperature": 0}');
SELECT llm_complete('canonical', 'echo', NULL, '{"temperature": 0, "seed": 1, "user": "someone"}');
SELECT fake_requests('echo') - :before AS requests_made;
-- ... but a different temperature, model, system prompt or parameter does not
SELECT llm_complete('canonical', 'echo', NULL, '{"seed": 1, "temperature": 0.5}');
SELECT llm_complete('canonical', 'usage-details', NULL, '{"seed": 1, "temperature": 0}') IS NOT NULL AS other_model;
SELECT llm_complete('canonical', 'echo', 'be brief', '{"seed": 1, "temperature": 0}');
SELECT llm_complete('canonical', 'echo', NULL, '{"seed": 1, "temperature": 0, "max_completion_tokens": 9}');
SELECT fake_requests('echo') - :before AS requests_made;
-- (the ledger rows are written by the worker: wait for them)
SELECT llm_flush() AS flushed;
SELECT count(DISTINCT fingerprint) AS distinct_keys
  FROM (SELECT fingerprint FROM llm.calls WHERE model IN ('echo', 'echo-cold')
		 ORDER BY id DESC LIMIT 6) last_six;

-- the policy: per call, and by llmext.cache
SELECT fake_requests('echo') AS before \gset
SELECT llm_complete('read only', 'echo', NULL, '{"temperature": 0, "cache": "read_only"}');
SELECT llm_complete('read only', 'echo', NULL, '{"temperature": 0, "cache": "read_only"}');
SELECT llm_complete('cache me', 'echo', NULL, '{"temperature": 0, "cache": "off"}');
SET llmext.cache = off;
SELECT llm_complete('cache me', 'echo', NULL, '{"temperature": 0}');
RESET llmext.cache;
SELECT fake_requests('echo') - :before AS requests_made;
SELECT error_of($$SELECT llm_complete('x', 'echo', NULL, '{"cache": "sometimes"}')$$);
SELECT error_of($$SELECT llm_complete('x', 'echo', NULL, '{"cache_ttl": -5}')$$);
SELECT error_of($$SELECT llm_complete('x', 'echo', NULL, '{"cache_ttl": "forever"}')$$);
SELECT error_of($$SET llmext.cache = sometimes$$);

-- a cache entry written in a transaction that rolls back survives it
BEGIN;
SELECT llm_complete('rolled back but cached', 'echo', NULL, '{"temperature": 0}');
ROLLBACK;
SELECT llm_flush() AS flushed;
SELECT fake_requests('echo') AS before \gset
SELECT llm_complete('rolled back but cached', 'echo', NULL, '{"temperature": 0}');
SELECT fake_requests('echo') - :before AS requests_made;

-- expiry: an entry past its time to live is not served
SELECT llm_complete('short lived', 'echo', NULL, '{"temperature": 0, "cache_ttl": 1}');
SELECT llm_flush() AS flushed;
SELECT pg_sleep(1.2);
SELECT fake_requests('echo') AS before \gset
SELECT llm_complete('short lived', 'echo', NULL, '{"temperature": 0}');
SELECT fake_requests('echo') - :before AS requests_after_expiry;
SELECT llm_flush() AS flushed;
SELECT count(*) AS expired_entries_left FROM llm.cache WHERE expires_at < now();

-- purge: by model, by age
SELECT llm_cache_purge('no-such-model') AS purged_nothing;
SELECT llm_cache_purge('echo', '1 hour') AS purged_none_old_enough;
SELECT llm_cache_purge('echo') > 0 AS purged_echo;
SELECT count(*) AS echo_entries_left FROM llm.cache WHERE model = 'echo';
SELECT fake_requests('echo') AS before \gset
SELECT llm_complete('cache me', 'echo', NULL, '{"temperature": 0}');
SELECT fake_requests('echo') - :before AS requests_after_purge;
SELECT error_of($$SELECT llm_cache_purge(NULL, '-1 day')$$);

-- users get cached answers only through calls
SELECT has_table_privilege('llm_user', 'llm.cache', 'SELECT') AS user_reads_cache,
	   has_table_privilege('llm_admin', 'llm.cache', 'SELECT') AS admin_reads_cache,
	   has_function_privilege('llm_user', 'llm_cache_purge(text, interval)', 'EXECUTE') AS user_purges;
