-- Ceilings on a backend's memory (docs/security.md, "Bounded memory"): only
-- a superuser may change them, and reaching one is SQLSTATE 54000
-- (program_limit_exceeded) naming the setting, never an internal error.
CREATE ROLE regress_lim_user LOGIN;
GRANT llm_user TO regress_lim_user;

SELECT name, setting, unit, context FROM pg_settings
 WHERE name IN ('llmext.max_response_bytes_limit', 'llmext.max_template_bytes',
				'llmext.max_template_nodes', 'llmext.max_rendered_bytes',
				'llmext.max_request_bytes', 'llmext.max_batch_concurrency')
 ORDER BY name;

-- an llm_user can neither raise nor lower them
SET SESSION AUTHORIZATION regress_lim_user;
SELECT error_of($$SET llmext.max_response_bytes_limit = '1GB'$$);
SELECT error_of($$SET llmext.max_template_bytes = '64MB'$$);
SELECT error_of($$SET llmext.max_template_nodes = 10000000$$);
SELECT error_of($$SET llmext.max_rendered_bytes = '64MB'$$);
SELECT error_of($$SET llmext.max_request_bytes = '64MB'$$);
SELECT error_of($$SET llmext.max_batch_concurrency = 1024$$);
SELECT error_of($$SELECT set_config('llmext.max_template_nodes', '20', false)$$);
SELECT error_of($$ALTER ROLE regress_lim_user SET llmext.max_template_bytes = '64MB'$$);
RESET SESSION AUTHORIZATION;

-- the upper bounds keep every buffer under PostgreSQL's 1 GB allocations
SELECT error_of($$SET llmext.max_response_bytes_limit = '128MB'$$);

-- template size: refused before it is parsed
SET llmext.max_template_bytes = '2kB';
SET SESSION AUTHORIZATION regress_lim_user;
SELECT error_of($$SELECT llm_prompt_create('lim-big', repeat('x', 2049))$$);
SELECT llm_prompt_create('lim-fits', repeat('x', 2048)) AS fits;
RESET SESSION AUTHORIZATION;

-- variables, sections and the text between them
SET llmext.max_template_nodes = 100;
SET SESSION AUTHORIZATION regress_lim_user;
SELECT error_of($$SELECT llm_prompt_create('lim-many', repeat('{{a}} ', 51))$$);
SELECT llm_prompt_create('lim-parts', repeat('{{a}} ', 50), model => 'echo') AS fits;
RESET SESSION AUTHORIZATION;
-- a stored prompt meets today's ceilings when it is used
SET llmext.max_template_nodes = 99;
SELECT error_of($$SELECT llm_render('lim-parts', '{"a": 1}')$$);
RESET llmext.max_template_nodes;
RESET llmext.max_template_bytes;

-- rendered size, for one call and in a batch (the batch's error, not a row's)
SET llmext.max_rendered_bytes = '1kB';
SELECT llm_prompt_create('lim-render', '{{#items}}{{.}}{{/items}}', model => 'echo') AS v;
SET SESSION AUTHORIZATION regress_lim_user;
SELECT length(llm_render('lim-render', '{"items": ["a", "b"]}') #>> '{messages,0,content}') AS small_renders;
SELECT error_of($$SELECT llm_render('lim-render',
	jsonb_build_object('items', (SELECT jsonb_agg(repeat('y', 100)) FROM generate_series(1, 11))))$$);
SELECT error_of($$SELECT * FROM llm_complete_prompt_batch('lim-render',
	ARRAY['{"items": ["a"]}', jsonb_build_object('items', (SELECT jsonb_agg(repeat('y', 100)) FROM generate_series(1, 11)))])$$);
RESET SESSION AUTHORIZATION;
RESET llmext.max_rendered_bytes;

-- request size: checked before the request is built (JSON escapes count)
SET llmext.max_request_bytes = '1kB';
SET SESSION AUTHORIZATION regress_lim_user;
SELECT error_of($$SELECT llm_complete(repeat('z', 1025), 'echo')$$);
SELECT error_of($$SELECT llm_complete(repeat(E'\n', 600), 'echo')$$);
SELECT error_of($$SELECT llm_chat(jsonb_build_array(jsonb_build_object('role', 'user', 'content', repeat('z', 2000))), 'echo')$$);
SELECT error_of($$SELECT * FROM llm_complete_batch(ARRAY['a', repeat('z', 1025)], 'echo')$$);
SELECT llm_complete('short', 'echo') AS short_passes;
RESET SESSION AUTHORIZATION;
RESET llmext.max_request_bytes;

-- response size: the user's llmext.max_response_bytes counts up to the ceiling
SET llmext.max_response_bytes_limit = '100kB';
SET SESSION AUTHORIZATION regress_lim_user;
SET llmext.max_response_bytes = '1MB';
SELECT error_of($$SELECT llm_complete('hi', 'huge-200000')$$);
SET llmext.max_response_bytes = '50kB';
SELECT error_of($$SELECT llm_complete('hi', 'huge-200000')$$);
RESET llmext.max_response_bytes;
RESET SESSION AUTHORIZATION;
RESET llmext.max_response_bytes_limit;

-- batch concurrency
SET llmext.max_batch_concurrency = 2;
SET SESSION AUTHORIZATION regress_lim_user;
SELECT error_of($$SELECT * FROM llm_complete_batch(ARRAY['a'], 'echo', concurrency => 3)$$);
SELECT error_of($$SELECT * FROM llm_complete_prompt_batch('lim-parts', ARRAY['{"a": 1}'::jsonb], concurrency => 3)$$);
SELECT error_of($$SELECT * FROM llm_complete_batch(ARRAY['a'], 'echo', concurrency => 0)$$);
-- two slots, rows still in input order with NULLs and errors in place
SELECT ord, completion, error
  FROM llm_complete_batch(ARRAY['a', NULL, 'c', '', 'e', 'f', 'g'], 'echo', concurrency => 2);
SELECT ord, length(completion) AS len, error
  FROM llm_complete_batch(ARRAY['a', 'b', 'c'], 'huge-200000', concurrency => 2);
RESET SESSION AUTHORIZATION;
RESET llmext.max_batch_concurrency;

SET client_min_messages = warning;
DROP OWNED BY regress_lim_user;
DROP ROLE regress_lim_user;
RESET client_min_messages;
