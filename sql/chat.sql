-- llm_chat: the full normalised result.

SELECT r - 'latency_ms' - 'request_id' - 'call_id' AS result,
	   (r ->> 'latency_ms')::float8 >= 0 AS has_latency,
	   r ->> 'request_id' LIKE 'req_fake_%' AS has_request_id,
	   r ->> 'call_id' = llm_last_call_id() AS has_call_id
  FROM llm_chat('[{"role": "system", "content": "Be brief."},
				  {"role": "user", "content": "What is SQL?"}]', 'echo') r;

-- a multi-turn conversation: the last user turn is answered
SELECT llm_chat('[{"role": "user", "content": "first"},
				  {"role": "assistant", "content": "echo: first"},
				  {"role": "user", "content": "second"}]', 'echo') ->> 'content' AS content;

-- content given as parts
SELECT llm_chat('[{"role": "user", "content": [{"type": "text", "text": "in parts"}]}]',
				'echo') ->> 'content' AS content;

-- cached and reasoning tokens, and the cost they make:
-- the fake provider counts 8 input tokens (4 cached) and 5 + 7 reasoning = 12
-- output tokens; at 0.15 / 0.075 / 0.60 USD per million that is 8.1e-6 USD
SELECT llm_model_create('priced-details', 'fake', 'usage-details',
						input_price => 0.15, output_price => 0.60, cached_input_price => 0.075);
SELECT r -> 'usage' AS usage, (r ->> 'cost_usd')::numeric AS cost_usd,
	   (r ->> 'cost_usd')::numeric = (4 * 0.15 + 4 * 0.075 + 12 * 0.60) / 1e6 AS as_expected
  FROM llm_chat('[{"role": "user", "content": "four words right here"}]', 'priced-details') r;

-- without a cached price, cached tokens cost the input price
SELECT llm_model_create('priced-plain', 'fake', 'usage-details', input_price => 1, output_price => 2);
SELECT (llm_chat('[{"role": "user", "content": "four words right here"}]', 'priced-plain')
		->> 'cost_usd')::numeric = (8 * 1 + 12 * 2) / 1e6 AS as_expected;

-- a refusal: no content, the reason is kept
SELECT r ->> 'content' IS NULL AS no_content, r ->> 'finish_reason' AS finish_reason,
	   r ->> 'refusal' AS refusal
  FROM llm_chat('[{"role": "user", "content": "forbidden"}]', 'nullcontent') r;
SELECT llm_complete('forbidden', 'nullcontent') IS NULL AS complete_gives_null;

-- NULL messages give NULL; other NULLs mean defaults
SELECT llm_chat(NULL, 'echo') IS NULL AS null_messages;
SET llmext.default_model = 'echo';
SELECT llm_chat('[{"role": "user", "content": "default"}]', NULL, NULL) ->> 'model' AS model;
RESET llmext.default_model;

-- bad messages
SELECT error_of($$SELECT llm_chat('{"role": "user"}', 'echo')$$);
SELECT error_of($$SELECT llm_chat('[]', 'echo')$$);
SELECT error_of($$SELECT llm_chat('[1]', 'echo')$$);
SELECT error_of($$SELECT llm_chat('[{"content": "no role"}]', 'echo')$$);
SELECT error_of($$SELECT llm_chat('[{"role": "wizard", "content": "x"}]', 'echo')$$);
SELECT error_of($$SELECT llm_chat('[{"role": "user"}]', 'echo')$$);
SELECT error_of($$SELECT llm_chat('[{"role": "user", "content": 7}]', 'echo')$$);
SELECT error_of($$SELECT llm_chat('[{"role": "user", "content": "x"}]', 'nosuch')$$);
SELECT error_of($$SELECT llm_chat('[{"role": "user", "content": "x"}]', 'echo', '[]')$$);
