-- llm_complete: the answer's text.

SELECT llm_complete('hello world', 'echo');
-- positional arguments: prompt, model, system, options
SELECT llm_complete('hi', 'echo');
SELECT llm_complete('hi', 'echo', 'You are terse.');
SELECT llm_complete(prompt => 'named', model => 'echo');

-- options reach the provider: max_completion_tokens cuts the answer to 3 words
SELECT llm_complete('one two three four five', 'echo', NULL,
					'{"max_completion_tokens": 3, "temperature": 0}');
-- the fake provider reports what it received last
SELECT (llm_complete('stats', 'stats')::jsonb -> 'last_request') - 'messages' AS sent,
	   llm_complete('stats', 'stats')::jsonb -> 'last_request' -> 'messages' AS sent_messages;

-- a model's params are defaults; a call's options override them
SELECT llm_model_create('echo-short', 'fake', 'echo', params => '{"max_completion_tokens": 2}');
SELECT llm_complete('alpha beta gamma', 'echo-short');
SELECT llm_complete('alpha beta gamma', 'echo-short', NULL, '{"max_completion_tokens": 4}');

-- llmext.default_model is used when no model is given
SELECT error_of($$SELECT llm_complete('hi')$$);
SET llmext.default_model = 'echo';
SELECT llm_complete('from the default model');
SELECT llm_complete('explicit NULL model', NULL);
RESET llmext.default_model;

-- NULL prompt: NULL without calling the provider; other NULLs mean defaults
SELECT llm_complete('defaults', 'echo', NULL, NULL);
SELECT fake_requests('echo') AS before \gset
SELECT llm_complete(NULL, 'echo') IS NULL AS null_prompt_gives_null;
SELECT llm_complete(NULL) IS NULL AS null_prompt_without_model;
SELECT fake_requests('echo') - :before AS requests_made_for_null_prompts;

-- bad input: each a clear error, and no request is sent
SELECT error_of($$SELECT llm_complete('', 'echo')$$);
SELECT error_of($$SELECT llm_complete('hi', '')$$);
SELECT error_of($$SELECT llm_complete('hi', 'no-such-model')$$);
SELECT error_of($$SELECT llm_complete('hi', 'echo', NULL, '[1, 2]')$$);
SELECT error_of($$SELECT llm_complete('hi', 'echo', NULL, '"temperature"')$$);
SELECT error_of($$SELECT llm_complete('hi', 'echo', NULL, '{"model": "gpt-5"}')$$);
SELECT error_of($$SELECT llm_complete('hi', 'echo', NULL, '{"messages": []}')$$);
SELECT error_of($$SELECT llm_complete('hi', 'echo', NULL, '{"stream": true}')$$);
SELECT error_of($$SELECT llm_complete('hi', 'echo', NULL, '{"on_error": "ignore"}')$$);
SELECT error_of($$SELECT llm_complete('hi', 'echo', NULL, 'not json')$$);
SELECT error_of($$SELECT llm_complete(42, 'echo')$$);
SELECT fake_requests('echo') - :before AS requests_made_for_bad_input;

-- an empty system prompt is left out rather than sent
SELECT llm_complete('no system', 'echo', '');
SELECT jsonb_array_length(llm_complete('stats', 'stats')::jsonb
						  -> 'last_request' -> 'messages') AS messages_sent;

-- text that needs escaping, and non-ASCII text, round-trip exactly
SELECT llm_complete(E'quote " backslash \\ tab \t newline \n end', 'echo');
SELECT llm_complete('Grüße, 世界 🚀', 'echo');

-- a large prompt (1 MB) is sent whole
SELECT length(llm_complete(repeat('word ', 200000), 'echo')) AS answer_length;

-- over many rows, on one kept-alive connection
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'connections')::int AS connections_before \gset
SELECT n, llm_complete('row ' || n, 'echo') FROM generate_series(1, 3) n;
SELECT llm_complete('another statement', 'echo');
SELECT (llm_complete('stats', 'stats')::jsonb ->> 'connections')::int - :connections_before
	AS new_connections;

-- the key is sent as a bearer token (the "auth" model checks it)
SELECT llm_complete('with key', 'auth');
