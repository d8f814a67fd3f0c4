-- Stored prompts: immutable versions, labels, rendering, A/B splits and
-- structured output.

-- versions number 1, 2, 3 per name
SELECT llm_prompt_create('summary', 'Summarise: {{body}}', system => 'You are terse.',
						 model => 'echo', params => '{"temperature": 0}', note => 'first') AS v1;
SELECT llm_prompt_create('summary', 'Summarise in {{words}} words: {{body}}', system => 'You are terse.',
						 model => 'echo') AS v2;
SELECT llm_prompt_create('other', 'Hello {{name}}') AS other_v1;
SELECT name, version, system, template, model, params, note, author = current_user AS author_is_me
  FROM llm.prompts ORDER BY name, version;

-- versions are immutable
SELECT error_of($$UPDATE llm.prompts SET template = 'changed' WHERE name = 'summary'$$);
SELECT error_of($$DELETE FROM llm.prompts WHERE name = 'summary'$$);
SELECT error_of($$TRUNCATE llm.prompts$$);

-- bad templates are refused at creation, with the position
SELECT error_of($$SELECT llm_prompt_create('bad', 'Hello {{name')$$);
SELECT error_of($$SELECT llm_prompt_create('bad', E'line one\n{{#items}} open')$$);
SELECT error_of($$SELECT llm_prompt_create('bad', '{{/items}}')$$);
SELECT error_of($$SELECT llm_prompt_create('bad', '{{>partial}}')$$);
SELECT error_of($$SELECT llm_prompt_create('bad', '')$$);
SELECT error_of($$SELECT llm_prompt_create('bad name', 'x')$$);
SELECT error_of($$SELECT llm_prompt_create('bad', 'x', model => 'nosuch')$$);
SELECT error_of($$SELECT llm_prompt_create('bad', 'x', examples => '{"input": "a"}')$$);
SELECT error_of($$SELECT llm_prompt_create('bad', 'x', examples => '[{"input": "a"}]')$$);
SELECT error_of($$SELECT llm_prompt_create('bad', 'x', response_schema => '{"type": "text"}')$$);
SELECT error_of($$SELECT llm_prompt_create('bad', 'x', response_schema => '{"type": "string", "pattern": "a+"}')$$);
SELECT error_of($$SELECT llm_prompt_create('bad', 'x', params => '{"stream": true}')$$);
SELECT count(*) AS bad_prompts FROM llm.prompts WHERE name = 'bad';

-- rendering: no label yet, so the latest version
SELECT llm_render('summary', '{"body": "PostgreSQL is a database.", "words": 5}');
-- an explicit version; nested variables; JSON values; sections; literal braces
SELECT llm_render('summary', '{"body": "x"}', version => 1) -> 'messages' AS v1_messages;
SELECT llm_prompt_create('rich', E'{{user.name}} ({{user.age}}) likes {{#tags}}[{{.}}]{{/tags}}{{^tags}}nothing{{/tags}}; raw \\{{not a var}}; data {{data}}') AS rich_v1;
SELECT llm_render('rich', '{"user": {"name": "Ann", "age": 41}, "tags": ["sql", "c"], "data": {"a": [1, 2]}}')
	   -> 'messages' -> 0 ->> 'content' AS rendered;
SELECT llm_render('rich', '{"user": {"name": "Bo", "age": 7}, "tags": [], "data": null}')
	   -> 'messages' -> 0 ->> 'content' AS rendered;

-- missing variables, unknown prompts, versions and labels
SELECT error_of($$SELECT llm_render('summary', '{"body": "x"}')$$);
SELECT error_of($$SELECT llm_render('rich', '{"user": {"name": "Ann"}, "tags": [], "data": 1}')$$);
SELECT error_of($$SELECT llm_render('nosuch')$$);
SELECT error_of($$SELECT llm_render('summary', '{}', version => 9)$$);
SELECT error_of($$SELECT llm_render('summary', '{}', label => 'staging')$$);
SELECT error_of($$SELECT llm_render('summary', '{}', version => 1, label => 'production')$$);
SELECT error_of($$SELECT llm_render('summary', '[1]')$$);
SELECT error_of($$SELECT llm_render(NULL)$$);

-- few-shot examples become user/assistant turns
SELECT llm_prompt_create('classify', 'Classify: {{text}}', system => 'Answer bug or question.',
						 examples => '[{"input": {"text": "It crashes"}, "output": "bug"},
									   {"input": "How do I log in?", "output": {"label": "question"}}]') AS classify_v1;
SELECT jsonb_pretty(llm_render('classify', '{"text": "Where is the manual?"}') -> 'messages');

-- deploy, rollback, and the label history
SELECT llm_prompt_deploy('summary', 1);
SELECT llm_render('summary', '{"body": "x", "words": 3}') ->> 'version' AS production_version;
SELECT llm_prompt_deploy('summary', 2);
SELECT llm_render('summary', '{"body": "x", "words": 3}') ->> 'version' AS production_version;
SELECT llm_prompt_rollback('summary');
SELECT llm_render('summary', '{"body": "x", "words": 3}') ->> 'version' AS after_rollback;
SELECT error_of($$SELECT llm_prompt_rollback('summary')$$);
SELECT error_of($$SELECT llm_prompt_rollback('summary', 'staging')$$);
SELECT error_of($$SELECT llm_prompt_deploy('summary', 7)$$);
SELECT error_of($$SELECT llm_prompt_deploy('nosuch', 1)$$);
SELECT error_of($$SELECT llm_prompt_deploy('summary', 1, 'bad label')$$);
SELECT error_of($$SELECT llm_prompt_deploy('summary', 1, model => 'nosuch')$$);
SELECT label, action, from_variants, to_variants, rolled_back, changed_by = current_user AS by_me
  FROM llm.prompt_label_history WHERE name = 'summary' ORDER BY id;
-- a label can carry its own model
SELECT llm_prompt_deploy('summary', 2, 'staging', model => 'usage-details');
SELECT r ->> 'version' AS version, r ->> 'label' AS label, r ->> 'model' AS model
  FROM llm_render('summary', '{"body": "x", "words": 3}', label => 'staging') r;

-- A/B: sticky per key, close to the weights over many keys
SELECT llm_prompt_split('summary', 'ab', ARRAY[1, 2], ARRAY[30, 70], ARRAY[NULL, 'usage-details']);
SELECT count(DISTINCT llm_render('summary', '{"body": "x", "words": 3}', label => 'ab', ab_key => 'user-42') ->> 'version')
	   AS versions_for_one_key
  FROM generate_series(1, 20);
SELECT r ->> 'version' AS version, r ->> 'model' AS model, count(*) AS keys,
	   count(*) BETWEEN 2600 AND 3400 OR count(*) BETWEEN 6600 AND 7400 AS near_the_weight
  FROM generate_series(1, 10000) k,
	   LATERAL llm_render('summary', '{"body": "x", "words": 3}', label => 'ab', ab_key => 'user-' || k) r
 GROUP BY 1, 2 ORDER BY 1;
SELECT error_of($$SELECT llm_prompt_split('summary', 'ab', ARRAY[1, 2], ARRAY[1])$$);
SELECT error_of($$SELECT llm_prompt_split('summary', 'ab', ARRAY[1, 2], ARRAY[1, -1])$$);
SELECT error_of($$SELECT llm_prompt_split('summary', 'ab', ARRAY[1, 2], ARRAY[0, 0])$$);
SELECT error_of($$SELECT llm_prompt_split('summary', 'ab', ARRAY[1, 2], ARRAY[1, 1], ARRAY['echo'])$$);
SELECT error_of($$SELECT llm_prompt_split('summary', 'ab', ARRAY[]::int[], ARRAY[]::numeric[])$$);

-- calling a stored prompt: the version's model and parameters, recorded in the ledger
SELECT llm_complete_prompt('summary', '{"body": "PostgreSQL stores data."}');
SELECT llm_complete_prompt('other', '{"name": "Ann"}', model => 'echo');
SELECT error_of($$SELECT llm_complete_prompt('other', '{"name": "Ann"}')$$);
SELECT llm_complete_prompt('summary', '{"body": "b", "words": 2}', label => 'ab', ab_key => 'user-42') IS NOT NULL AS called;
SELECT llm_flush() AS flushed;
SELECT prompt_name, prompt_version, model FROM llm.calls
 WHERE prompt_name IS NOT NULL ORDER BY id;

-- structured output: the schema is sent as response_format and the answer checked
SELECT llm_prompt_create('extract', 'Extract the ticket: {{body}}', model => 'echo',
						 response_schema => '{"type": "object", "properties": {"label": {"type": "string", "enum": ["bug", "question"]}, "urgent": {"type": "boolean"}}, "required": ["label", "urgent"], "additionalProperties": false}') AS extract_v1;
SELECT llm_render('extract', '{"body": "x"}') -> 'response_format' AS response_format;
SELECT llm_complete_json('extract', '{"body": "it crashes"}');
SELECT llm_model_create('badjson', 'fake', 'badjson');
SELECT llm_prompt_create('extract-bad', 'Extract: {{body}}', model => 'badjson',
						 response_schema => '{"type": "object"}') AS bad_v1;
SELECT error_of($$SELECT llm_complete_json('extract-bad', '{"body": "x"}')$$);
SELECT llm_complete_json('extract-bad', '{"body": "x"}', options => '{"on_invalid": "null"}') IS NULL AS null_when_invalid;
-- an answer that is JSON but breaks the schema
SELECT llm_prompt_create('extract-strict', 'Extract: {{body}}', model => 'echo',
						 response_schema => '{"type": "object", "required": ["label"], "properties": {"label": {"type": "integer"}}}') AS strict_v1;
SELECT error_of($$SELECT llm_complete_json('extract-strict', '{"body": "x"}', options => '{"response_format": {"type": "json_object"}}')$$);
SELECT error_of($$SELECT llm_complete_json('extract', '{"body": "x"}', options => '{"on_invalid": "maybe"}')$$);
SELECT llm_flush() AS flushed;
SELECT prompt_name, outcome, split_part(error, ':', 1) AS error FROM llm.calls
 WHERE prompt_name LIKE 'extract%' ORDER BY id;

-- who may do what
SET client_min_messages = warning;
CREATE ROLE regress_prompt_user;
GRANT llm_user TO regress_prompt_user;
RESET client_min_messages;
SET ROLE regress_prompt_user;
-- a prompt belongs to its first creator: another user adds a version only when granted
SELECT error_of($$SELECT llm_prompt_create('summary', 'User version: {{body}}')$$);
RESET ROLE;
SELECT llm_prompt_grant('summary', 'regress_prompt_user');
SET ROLE regress_prompt_user;
SELECT llm_prompt_create('summary', 'User version: {{body}}') AS user_version;
SELECT author FROM llm.prompts WHERE name = 'summary' ORDER BY version DESC LIMIT 1;
SELECT llm_render('summary', '{"body": "x"}', version => 3) ->> 'version' AS renders;
SELECT error_of($$SELECT llm_prompt_deploy('summary', 3)$$);
SELECT error_of($$SELECT llm_prompt_rollback('summary')$$);
SELECT error_of($$INSERT INTO llm.prompts (name, version, template) VALUES ('x', 1, 'y')$$);
RESET ROLE;
SELECT llm_prompt_revoke('summary', 'regress_prompt_user');
DROP ROLE regress_prompt_user;
