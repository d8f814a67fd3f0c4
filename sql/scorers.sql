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
