-- Providers and models: registration, validation, lineage, drop rules, keys.
\set VERBOSITY terse

-- a provider with its key in the environment, one with none
SELECT llm_provider_create('local', 'http://127.0.0.1:1/v1', key_env => 'LLMEXT_TEST_UNSET_API_KEY');
SELECT llm_provider_create('keyless', 'http://127.0.0.1:1/v1/', options => '{"headers": {"X-Team": "data"}}');
SELECT name, kind, regexp_replace(base_url, ':\d+/', ':<port>/') AS base_url, key_source, key_env, options
  FROM llm.providers ORDER BY name;

-- the key is in no readable column of llm.providers
SELECT count(*) AS columns_named_like_key
  FROM information_schema.columns
 WHERE table_schema = 'llm' AND table_name = 'providers' AND column_name LIKE '%api_key%';
SELECT position('sk-test' IN row_to_json(p)::text) AS key_in_providers_row
  FROM llm.providers p WHERE name = 'fake';

-- bad providers
SELECT error_of($$SELECT llm_provider_create('fake', 'http://127.0.0.1:1/v1')$$);
SELECT error_of($$SELECT llm_provider_create('bad name', 'http://x/v1')$$);
SELECT error_of($$SELECT llm_provider_create(NULL, 'http://x/v1')$$);
SELECT error_of($$SELECT llm_provider_create('p', 'ftp://x/v1')$$);
SELECT error_of($$SELECT llm_provider_create('p', 'http://user:secret@x/v1')$$);
SELECT error_of($$SELECT llm_provider_create('p', '')$$);
SELECT error_of($$SELECT llm_provider_create('p', NULL)$$);
SELECT error_of($$SELECT llm_provider_create('p', 'http://x/v1', kind => 'gemini')$$);
SELECT error_of($$SELECT llm_provider_create('p', 'http://x/v1', api_key => 'k', key_env => 'K')$$);
SELECT error_of($$SELECT llm_provider_create('p', 'http://x/v1', api_key => '')$$);
SELECT error_of($$SELECT llm_provider_create('p', 'http://x/v1', key_env => 'NOT-A-VAR')$$);
SELECT error_of($$SELECT llm_provider_create('p', 'http://x/v1', options => '[]')$$);
SELECT error_of($$SELECT llm_provider_create('p', 'http://x/v1', options => '{"max_concurency": 3}')$$);
SELECT error_of($$SELECT llm_provider_create('p', 'http://x/v1', options => '{"headers": {"X-A": 1}}')$$);
SELECT error_of($$SELECT llm_provider_create('p', 'http://x/v1', options => '{"auth_header": "bad header"}')$$);
SELECT error_of($$SELECT llm_provider_create('p', 'http://x/v1', options => '{"chat_path": "chat"}')$$);
SELECT error_of($$SELECT llm_provider_create('p', 'http://x/v1', options => '{"max_attempts": 0}')$$);
SELECT error_of($$SELECT llm_provider_create('p', 'http://x/v1', options => '{"max_concurrency": 2.5}')$$);
SELECT count(*) AS provider_p_exists FROM llm.providers WHERE name = 'p';

-- models: base and fine-tuned lineage
SELECT llm_model_create('mini', 'keyless', 'gpt-4o-mini', input_price => 0.15, output_price => 0.60);
SELECT llm_model_create('mini-support', 'keyless', 'ft:gpt-4o-mini:acme:support:abc123',
						kind => 'fine_tuned', base_model => 'mini',
						input_price => 0.30, output_price => 1.20, params => '{"temperature": 0}');
SELECT name, provider, remote_model, kind, base_model, input_price, output_price,
	   cached_input_price, params
  FROM llm.models WHERE provider = 'keyless' ORDER BY name;

-- bad models
SELECT error_of($$SELECT llm_model_create('mini', 'keyless', 'x')$$);
SELECT error_of($$SELECT llm_model_create('m', 'nosuch', 'x')$$);
SELECT error_of($$SELECT llm_model_create('m', NULL, 'x')$$);
SELECT error_of($$SELECT llm_model_create('m', 'keyless', '')$$);
SELECT error_of($$SELECT llm_model_create('', 'keyless', 'x')$$);
SELECT error_of($$SELECT llm_model_create('m', 'keyless', 'x', kind => 'large')$$);
SELECT error_of($$SELECT llm_model_create('m', 'keyless', 'x', kind => 'fine_tuned')$$);
SELECT error_of($$SELECT llm_model_create('m', 'keyless', 'x', base_model => 'mini')$$);
SELECT error_of($$SELECT llm_model_create('m', 'keyless', 'x', kind => 'fine_tuned', base_model => 'nosuch')$$);
SELECT error_of($$SELECT llm_model_create('m', 'keyless', 'x', input_price => -1)$$);
SELECT error_of($$SELECT llm_model_create('m', 'keyless', 'x', params => '"hot"')$$);
SELECT error_of($$SELECT llm_model_create('m', 'keyless', 'x', params => '{"stream": true}')$$);
SELECT error_of($$SELECT llm_model_create('m', 'keyless', 'x', params => '{"model": "y"}')$$);
SELECT error_of($$SELECT llm_model_create('m', 'keyless', 'x', params => '{"cache": "off"}')$$);
SELECT count(*) AS model_m_exists FROM llm.models WHERE name = 'm';

-- drop rules: lineage and providers in use
SELECT error_of($$SELECT llm_model_drop('mini')$$);
SELECT error_of($$SELECT llm_model_drop('nosuch')$$);
SELECT error_of($$SELECT llm_provider_drop('keyless')$$);
SELECT error_of($$SELECT llm_provider_drop('nosuch')$$);
-- a fine-tuned model on another provider keeps its base model's provider
SELECT llm_provider_create('other', 'http://127.0.0.1:1/v1');
SELECT llm_model_create('mini-elsewhere', 'other', 'ft:mini', kind => 'fine_tuned', base_model => 'mini');
SELECT error_of($$SELECT llm_provider_drop('keyless', cascade => true)$$);
SELECT llm_provider_drop('other', cascade => true);
SELECT llm_model_drop('mini-support');
SELECT llm_provider_drop('keyless', cascade => true);
SELECT count(*) AS keyless_models_left FROM llm.models WHERE provider = 'keyless';

-- a key named by an environment variable that the server does not have
SELECT llm_model_create('local-model', 'local', 'echo');
SELECT error_of($$SELECT llm_complete('hi', 'local-model')$$);

-- rotation: set_key switches the provider to a stored key, NULL removes it
SELECT llm_provider_set_key('local', 'sk-rotated');
SELECT key_source, key_env FROM llm.providers WHERE name = 'local';
SELECT llm_provider_set_key('local', NULL);
SELECT key_source FROM llm.providers WHERE name = 'local';
SELECT error_of($$SELECT llm_provider_set_key('nosuch', 'k')$$);
SELECT error_of($$SELECT llm_provider_set_key('local', '')$$);
SELECT llm_provider_drop('local', cascade => true);

-- the key table stays where only the extension's owner reads it
SELECT has_table_privilege('llm_admin', 'llm.provider_keys', 'SELECT') AS admin_reads_keys,
	   has_table_privilege('llm_user', 'llm.provider_keys', 'SELECT') AS user_reads_keys,
	   has_table_privilege('llm_user', 'llm.providers', 'SELECT') AS user_lists_providers,
	   has_table_privilege('llm_user', 'llm.models', 'SELECT') AS user_lists_models,
	   has_table_privilege('llm_user', 'llm.models', 'INSERT') AS user_inserts_models;
