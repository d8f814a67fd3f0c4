-- Embeddings: llm_embed and llm_embed_batch against the fake provider's
-- POST /v1/embeddings (hashed word vectors, 32 numbers unless "dimensions").
SET client_min_messages = warning;
SELECT llm_model_create('emb', 'fake', 'emb-main', input_price => 0.02, use => 'embedding');
SELECT llm_model_create('emb-small', 'fake', 'emb-main', params => '{"dimensions": 8}',
						use => 'embedding');
SELECT llm_model_create(m, 'fake', m, use => 'embedding')
  FROM unnest(ARRAY['emb-short', 'emb-shuffled']) AS m;
SELECT llm_model_create('emb-fail-500', 'fake', 'fail-500', use => 'embedding');
SELECT llm_model_create('emb-fail-400', 'fake', 'fail-400', use => 'embedding');
SELECT llm_model_create('emb-truncated', 'fake', 'truncated', use => 'embedding');
RESET client_min_messages;
SELECT name, use FROM llm.models WHERE name IN ('echo', 'emb') ORDER BY name;
SELECT error_of($$SELECT llm_model_create('x', 'fake', 'x', use => 'rerank')$$);
SELECT error_of($$SELECT llm_model_create('x', 'fake', 'x', params => '{"input": "a"}', use => 'embedding')$$);

-- a unit vector of the default length; dimensions passed through
SELECT array_length(e, 1) AS dims, round(sqrt((SELECT sum(x * x) FROM unnest(e) x))::numeric, 4) AS norm
  FROM llm_embed('The cat sat on the mat', 'emb') e;
SELECT array_length(llm_embed('The cat sat on the mat', 'emb', '{"dimensions": 5}'), 1) AS dims;
SELECT array_length(llm_embed('The cat sat on the mat', 'emb-small'), 1) AS dims_from_params;
-- texts sharing words are nearer than texts that do not; case and punctuation do not count
CREATE FUNCTION cosine(a real[], b real[]) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
	SELECT sum(x * y) / sqrt(sum(x * x) * sum(y * y)) FROM unnest(a, b) AS t(x, y)
$$;
SELECT cosine(llm_embed('the cat sat', 'emb'), llm_embed('a cat sat down', 'emb'))
	 > cosine(llm_embed('the cat sat', 'emb'), llm_embed('stock prices fell sharply', 'emb'))
	   AS near_is_nearer,
	   cosine(llm_embed('The CAT sat!', 'emb'), llm_embed('the cat sat', 'emb')) > 0.9999 AS same_words_same_vector;

-- NULL in, NULL out without a request; an empty input is an error
SELECT fake_requests('emb-main') AS before \gset
SELECT llm_embed(NULL, 'emb') IS NULL AS null_in_null_out;
SELECT fake_requests('emb-main') - :before AS requests_for_null;
SELECT error_of($$SELECT llm_embed('', 'emb')$$);

-- a model is called only for its use, refused before anything is sent
SELECT fake_requests('echo') AS echo_before \gset
SELECT error_of($$SELECT llm_embed('hello', 'echo')$$);
SELECT error_of($$SELECT llm_complete('hello', 'emb')$$);
SELECT error_of($$SELECT llm_chat('[{"role": "user", "content": "hi"}]', 'emb')$$);
SELECT fake_requests('echo') - :echo_before AS requests_for_wrong_use,
	   fake_requests('emb-main') - :before AS embedding_requests_for_wrong_use;
SELECT error_of($$SELECT llm_embed('hello', 'no-such-model')$$);
SELECT error_of($$SELECT llm_embed('hello', 'emb', '{"input": ["x"]}')$$);
SELECT error_of($$SELECT llm_embed('hello', 'emb', '[1]')$$);

-- cached by default (an embedding is deterministic): the second call is a hit
SELECT llm_flush() AS flushed;
SELECT fake_requests('emb-main') AS before \gset
SELECT llm_embed('cache this text please', 'emb') = llm_embed('cache this text please', 'emb') AS same;
SELECT fake_requests('emb-main') - :before AS requests_for_two_calls;
SELECT llm_flush() AS flushed;
-- one ledger row per request, at the model's input price: 4 words, 4 tokens
SELECT source, cache_hit, outcome, input_tokens, output_tokens, cost_usd, cost_saved_usd,
	   remote_model, http_status, fingerprint IS NOT NULL AS has_fingerprint
  FROM llm.calls WHERE model = 'emb' ORDER BY id DESC LIMIT 2;
-- the cache option still rules: off asks the provider again
SELECT fake_requests('emb-main') AS before \gset
SELECT array_length(llm_embed('cache this text please', 'emb', '{"cache": "off"}'), 1) AS dims;
SELECT fake_requests('emb-main') - :before AS requests_with_cache_off;

-- failures: an ERROR, or NULL and a WARNING with on_error null
SELECT error_of($$SELECT llm_embed('x', 'emb-fail-500')$$) LIKE 'LL500%' AS provider_error;
SELECT llm_embed('x', 'emb-fail-400', '{"on_error": "null"}') IS NULL AS null_on_error;
SELECT split_part(error_of($$SELECT llm_embed('x', 'emb-truncated')$$), E'\n', 1) AS truncated;
SELECT split_part(error_of($$SELECT llm_embed_batch(ARRAY['a', 'b'], 'emb-short', '{"on_error": "error"}')$$), E'\n', 1) AS short_answer;
-- an answer listed out of order is put back in input order
SELECT (SELECT array_agg(cosine(s.embedding, llm_embed(t, 'emb')) > 0.9999 ORDER BY s.ord)
		  FROM llm_embed_batch(ARRAY['alpha words', 'beta words', 'gamma'], 'emb-shuffled') s
		  JOIN unnest(ARRAY['alpha words', 'beta words', 'gamma']) WITH ORDINALITY u(t, o) ON u.o = s.ord)
	   AS each_in_its_place;

-- budgets: refused before sending, like a chat call
SELECT llm_embed('spend something here', 'emb', '{"cache": "off"}') IS NOT NULL AS spent;
SELECT llm_flush() AS flushed;
-- (counted before and after: the fake's "stats" model is refused meanwhile too)
SELECT fake_requests('emb-main') AS before \gset
SELECT llm_budget_set(NULL, 'month', 0.000000001);
SELECT split_part(error_of($$SELECT llm_embed('refused text', 'emb')$$), E'\n', 1) AS refused;
SELECT split_part(error_of($$SELECT * FROM llm_embed_batch(ARRAY['refused text'], 'emb')$$), E'\n', 1) AS refused_batch;
SELECT llm_budget_set(NULL, 'month', NULL);
SELECT fake_requests('emb-main') - :before AS requests_while_over_budget;

-- llm_embed_batch: rows in input order; NULL gives NULL, '' its own error
SELECT ord, array_length(embedding, 1) AS dims, error
  FROM llm_embed_batch(ARRAY['one', NULL, '', 'four four'], 'emb', '{"cache": "off"}');
SELECT bool_and(cosine(b.embedding, llm_embed(t, 'emb')) > 0.9999) AS same_as_single
  FROM llm_embed_batch(ARRAY['one', 'two words', 'three more words'], 'emb') b
  JOIN unnest(ARRAY['one', 'two words', 'three more words']) WITH ORDINALITY u(t, o) ON u.o = b.ord;
-- on_error error: the empty input aborts the statement before any request
SELECT error_of($$SELECT * FROM llm_embed_batch(ARRAY['one', ''], 'emb', '{"on_error": "error"}')$$);
-- a failed request fails each of its inputs' rows
SELECT ord, embedding, error FROM llm_embed_batch(ARRAY['a', NULL, 'c'], 'emb-fail-400');
SELECT count(*) FROM llm_embed_batch(NULL, 'emb');
SELECT count(*) FROM llm_embed_batch('{}', 'emb');
SELECT error_of($$SELECT * FROM llm_embed_batch(ARRAY['a'], 'echo')$$);

-- many inputs per request: 250 inputs, 100 a request, is 3 requests
SELECT fake_requests('emb-main') AS before \gset
SELECT count(*) AS rows, count(embedding) AS embeddings, min(ord), max(ord),
	   bool_and(array_length(embedding, 1) = 32) AS all_32
  FROM llm_embed_batch(ARRAY(SELECT 'text number ' || i FROM generate_series(1, 250) i),
					   'emb', '{"cache": "off"}');
SELECT fake_requests('emb-main') - :before AS requests_for_250;
SELECT llm_flush() AS flushed;
SELECT count(*) AS ledger_rows, sum(input_tokens) AS tokens, bool_and(source = 'batch') AS batch
  FROM (SELECT * FROM llm.calls WHERE model = 'emb' ORDER BY id DESC LIMIT 3) c;
-- a model's max_batch_inputs sets the size
SELECT llm_model_set_limits('emb', '{"max_batch_inputs": 40}');
SELECT fake_requests('emb-main') AS before \gset
SELECT count(embedding) FROM llm_embed_batch(ARRAY(SELECT 'text number ' || i FROM generate_series(1, 100) i),
											 'emb', '{"cache": "off"}', concurrency => 2);
SELECT fake_requests('emb-main') - :before AS requests_for_100_at_40;
SELECT error_of($$SELECT llm_model_set_limits('emb', '{"max_batch_inputs": 0}')$$);
SELECT llm_model_set_limits('emb', '{}');
-- the same chunk again is a cache hit
SELECT fake_requests('emb-main') AS before \gset
SELECT count(embedding) FROM llm_embed_batch(ARRAY['repeat me', 'and me'], 'emb');
SELECT count(embedding) FROM llm_embed_batch(ARRAY['repeat me', 'and me'], 'emb');
SELECT fake_requests('emb-main') - :before AS requests_for_two_batches;

-- llmext.max_request_bytes bounds an input, and the bytes of a request
SET llmext.max_request_bytes = 2048;
SELECT error_of($$SELECT llm_embed(repeat('word ', 500), 'emb')$$);
SELECT error_of($$SELECT * FROM llm_embed_batch(ARRAY['a', repeat('word ', 500)], 'emb')$$);
-- inputs of 300 bytes: at most 1024 bytes (as JSON, 6 a byte) a request, so one each
SELECT fake_requests('emb-main') AS before \gset
SELECT count(embedding) FROM llm_embed_batch(ARRAY(SELECT repeat('w' || i || ' ', 100) FROM generate_series(1, 3) i),
											 'emb', '{"cache": "off"}');
SELECT fake_requests('emb-main') - :before AS requests_for_3_large;
RESET llmext.max_request_bytes;

-- with pgvector, a real[] casts to vector (the expected output is that of a
-- server without it: Debian 12 has no package)
SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'vector') AS has_pgvector \gset
\if :has_pgvector
CREATE EXTENSION IF NOT EXISTS vector;
SELECT vector_dims(llm_embed('cast me', 'emb')::vector) AS vector_dims;
\else
\echo 'pgvector is not installed: the ::vector cast is not tested'
\endif
DROP FUNCTION cosine(real[], real[]);
-- vectors are digits: left in the cache, they would look like key fragments
-- to the secrets suite's search of every cached result
DELETE FROM llm.cache WHERE model LIKE 'emb%';
