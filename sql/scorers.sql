-- Scorers and statistics from SQL (docs/evaluation.md, "Scorers"): each
-- scorer's pass and fail, no output, bad scorers, the regex scorer on the
-- server's regular expressions, and the statistics' values.
SET client_min_messages = warning;

SELECT s ->> 'type' AS type, o AS output, e AS expected, llm_eval_score(s, o, e) AS result
  FROM (VALUES
	('{"type": "exact"}'::jsonb, 'Paris', '"Paris"'::jsonb),
	('{"type": "exact"}', 'paris', '"Paris"'),
	('{"type": "exact"}', '{"a": 1, "b": [2]}', '{"b": [2.0], "a": 1}'),
	('{"type": "exact"}', NULL, '"Paris"'),
	('{"type": "exact"}', 'Paris', NULL),
	('{"type": "normalized"}', '  The answer: PARIS! ', '"the answer paris"'),
	('{"type": "contains"}', 'Red, green and blue', '["red", "blue"]'),
	('{"type": "contains", "case_sensitive": true}', 'Red, green', '["red", "green"]'),
	('{"type": "regex"}', 'Order #12345 shipped', '"#[0-9]{5}\\M"'),
	('{"type": "regex", "pattern": "^yes\\M", "flags": "i"}', 'YES, it is', NULL),
	('{"type": "regex", "pattern": "^no$"}', 'nope', NULL),
	('{"type": "regex"}', NULL, '"x"'),
	('{"type": "json_valid"}', '{"label": "spam"}', NULL),
	('{"type": "json_valid", "json_type": "array"}', '{"label": "spam"}', NULL),
	('{"type": "json_valid"}', 'label: spam', NULL),
	('{"type": "json_schema", "schema": {"type": "object", "required": ["label"]}}', '{"labels": 1}', NULL),
	('{"type": "json_match", "fields": ["label", "score"]}', '{"label": "spam", "score": 0.90}', '{"label": "spam", "score": 0.9, "id": 7}'),
	('{"type": "json_match"}', '{"label": "spam"}', '{"label": "spam", "id": 7}'),
	('{"type": "numeric", "tolerance": 0.05}', ' 3.14 ', '3.1416'),
	('{"type": "numeric", "extract": true}', 'About 42 apples', '"42"'),
	('{"type": "similarity"}', 'The cat sat on the mat', '"The cat sat on a mat"'),
	('{"type": "similarity", "threshold": 0.9}', 'kitten', '"sitting"')
  ) AS t(s, o, e);

-- bad scorers: 22023 with the list of types
SELECT error_of($$SELECT llm_eval_score('{"type": "bleu"}', 'x', '"x"')$$);
SELECT error_of($$SELECT llm_eval_score('{"type": "contains", "case_sensitive": "no"}', 'x', '"x"')$$);
SELECT error_of($$SELECT llm_eval_score('{"type": "judge", "model": "m"}', 'x', '"x"')$$);
SELECT error_of($$SELECT llm_eval_score('{"type": "json_schema", "schema": {"type": "string", "pattern": "^a"}}', '"a"', NULL)$$);
SELECT error_of($$SELECT llm_eval_score(NULL, 'x', '"x"')$$);
-- an invalid pattern is the server's error, as with ~
SELECT error_of($$SELECT llm_eval_score('{"type": "regex", "pattern": "("}', 'x', NULL)$$);

-- embedding_similarity: one embedding request with both texts (the fake's
-- vectors: texts sharing words are near), the cosine against the threshold
SELECT llm_model_create('emb-score', 'fake', 'emb-score', use => 'embedding');
SELECT fake_requests('emb-score') AS emb_before \gset
SELECT o AS output, e AS expected, r -> 'passed' AS passed, r ->> 'reason' AS reason,
	   (r ->> 'score')::float8 BETWEEN 0 AND 1 AS in_range,
	   (r ->> 'score')::float8 > 0.999 AS same
  FROM (VALUES
	('The cat sat on the mat', '"the CAT sat on the mat!"'::jsonb),
	('The cat sat on the mat', '"A dog barked loudly"'),
	('{"b": 1}', '{"b": 1}')
  ) AS t(o, e),
	   LATERAL (SELECT llm_eval_score('{"type": "embedding_similarity", "model": "emb-score"}', o, e) AS r) x;
-- one request a pair; one ledger row each, with both texts' tokens, as the caller
SELECT llm_flush() AS flushed;
SELECT fake_requests('emb-score') - :emb_before AS emb_requests,
	   count(*) AS emb_ledger_rows, sum(input_tokens) AS tokens,
	   bool_and(role = current_user AND NOT cache_hit AND outcome = 'ok') AS callers_and_sent
  FROM llm.calls WHERE model = 'emb-score';
-- words shared but not all: the score lies between, the threshold decides
SELECT (r ->> 'score')::float8 > 0.3 AND (r ->> 'score')::float8 < 0.99 AS between,
	   r -> 'passed' AS passed_at_08, r ->> 'reason' ~ '^embedding similarity 0\.[0-9]{3} is below 0\.8$' AS reason_says_similarity,
	   llm_eval_score('{"type": "embedding_similarity", "model": "emb-score", "threshold": 0.1}',
					  'the cat sat on the mat', '"the cat sat on a sofa today"') -> 'passed' AS passed_at_01
  FROM (SELECT llm_eval_score('{"type": "embedding_similarity", "model": "emb-score"}',
							  'the cat sat on the mat', '"the cat sat on a sofa today"') AS r) x;
-- the same pair again comes from the cache: no request
SELECT fake_requests('emb-score') AS emb_mid \gset
SELECT llm_eval_score('{"type": "embedding_similarity", "model": "emb-score"}', 'The cat sat on the mat', '"A dog barked loudly"') -> 'passed' AS passed,
	   fake_requests('emb-score') - :emb_mid AS emb_requests;
-- no output, no expected answer, empty texts: no request
SELECT llm_eval_score('{"type": "embedding_similarity", "model": "emb-score"}', NULL, '"x"') AS no_output,
	   llm_eval_score('{"type": "embedding_similarity", "model": "emb-score"}', 'x', NULL) AS no_expected,
	   llm_eval_score('{"type": "embedding_similarity", "model": "emb-score"}', '', '"x"') AS empty_output,
	   llm_eval_score('{"type": "embedding_similarity", "model": "emb-score"}', '', '""') AS both_empty,
	   fake_requests('emb-score') - :emb_mid AS emb_requests;
-- bad options: 22023; an unknown model 42704, a chat model 22023, even with no output
SELECT error_of($$SELECT llm_eval_score('{"type": "embedding_similarity"}', 'x', '"x"')$$);
SELECT error_of($$SELECT llm_eval_score('{"type": "embedding_similarity", "model": 7}', 'x', '"x"')$$);
SELECT error_of($$SELECT llm_eval_score('{"type": "embedding_similarity", "model": "emb-score", "threshold": "high"}', 'x', '"x"')$$);
SELECT error_of($$SELECT llm_eval_score('{"type": "embedding_similarity", "model": "no-such-model"}', NULL, '"x"')$$);
SELECT error_of($$SELECT llm_eval_score('{"type": "embedding_similarity", "model": "echo"}', NULL, '"x"')$$);
-- a failing embedding call is the call's error
SELECT llm_model_create('emb-score-500', 'fake', 'fail-500', use => 'embedding');
SELECT error_of($$SELECT llm_eval_score('{"type": "embedding_similarity", "model": "emb-score-500"}', 'x', '"y"')$$) LIKE 'LL500%' AS provider_error;

-- statistics: p-values (exact binomial), intervals
SELECT llm.eval_sign_test(10, 2) AS sign_10_2, llm.eval_sign_test(0, 0) AS sign_none,
	   llm.eval_sign_test(50, 50) AS sign_even, llm.eval_mcnemar(3, 10) AS mcnemar_3_10;
SELECT round(llm.eval_sign_test(60, 40)::numeric, 12) AS sign_60_40;
SELECT error_of($$SELECT llm.eval_sign_test(-1, 2)$$);
SELECT llm.eval_bootstrap(ARRAY[1, 0, -1, 1, 1, 0, 1, -1, 0, 1]) AS bootstrap,
	   llm.eval_bootstrap(ARRAY[1, 0, -1, 1, 1, 0, 1, -1, 0, 1]) = llm.eval_bootstrap(ARRAY[1, 0, -1, 1, 1, 0, 1, -1, 0, 1]) AS repeatable,
	   llm.eval_bootstrap('{}') AS bootstrap_empty,
	   llm.eval_bootstrap(ARRAY[0.5, NULL], 10) AS bootstrap_one;
SELECT error_of($$SELECT llm.eval_bootstrap(ARRAY['NaN'::float8])$$);
SELECT error_of($$SELECT llm.eval_bootstrap(ARRAY[1.0], 0)$$);
SELECT (SELECT array_agg(round(x::numeric, 10)) FROM unnest(llm.eval_mean_interval(ARRAY[0.2, 0.5, 0.9, 1.0, 0.4])) x) AS mean_interval,
	   llm.eval_mean_interval(ARRAY[0.7]) AS mean_one,
	   llm.eval_mean_interval('{}') AS mean_none;
