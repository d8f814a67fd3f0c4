-- Synchronous calls.

CREATE FUNCTION llm_complete(
	prompt text,
	model text DEFAULT NULL,
	system text DEFAULT NULL,
	options jsonb DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'llm_complete'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_complete(text, text, text, jsonb) IS
	'ask a model: the text of its answer (NULL prompt gives NULL)';

CREATE FUNCTION llm_chat(
	messages jsonb,
	model text DEFAULT NULL,
	options jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_chat'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_chat(jsonb, text, jsonb) IS
	'send a conversation: the normalised result (content, finish_reason, usage, cost_usd, latency_ms, request_id)';

REVOKE ALL ON FUNCTION llm_complete(text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_chat(jsonb, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_complete(text, text, text, jsonb) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_chat(jsonb, text, jsonb) TO llm_user;

CREATE FUNCTION llm_complete_batch(
	prompts text[],
	model text DEFAULT NULL,
	system text DEFAULT NULL,
	options jsonb DEFAULT NULL,
	concurrency integer DEFAULT NULL)
RETURNS TABLE (ord integer, completion text, response jsonb, error text)
AS 'MODULE_PATHNAME', 'llm_complete_batch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_complete_batch(text[], text, text, jsonb, integer) IS
	'many prompts at once (up to concurrency in flight, default 8): one row per prompt, in order, failures as error text';
REVOKE ALL ON FUNCTION llm_complete_batch(text[], text, text, jsonb, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_complete_batch(text[], text, text, jsonb, integer) TO llm_user;
