-- Embeddings: the vectors of texts, from models registered with use 'embedding'.

CREATE FUNCTION llm_embed(
	input text,
	model text DEFAULT NULL,
	options jsonb DEFAULT NULL)
RETURNS real[]
AS 'MODULE_PATHNAME', 'llm_embed'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_embed(text, text, jsonb) IS
	'the embedding of a text, from an embedding model (NULL input gives NULL); cast to vector with pgvector';

CREATE FUNCTION llm_embed_batch(
	inputs text[],
	model text DEFAULT NULL,
	options jsonb DEFAULT NULL,
	concurrency integer DEFAULT 8)
RETURNS TABLE (ord integer, embedding real[], error text)
AS 'MODULE_PATHNAME', 'llm_embed_batch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_embed_batch(text[], text, jsonb, integer) IS
	'many embeddings, many inputs per request (the model''s max_batch_inputs, default 100) and up to concurrency requests at once: one row per input, in order, failures as error text';

REVOKE ALL ON FUNCTION llm_embed(text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_embed_batch(text[], text, jsonb, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_embed(text, text, jsonb) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_embed_batch(text[], text, jsonb, integer) TO llm_user;
