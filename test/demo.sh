#!/usr/bin/env bash
# The demo: builds and installs llmext, starts a throwaway cluster, points a
# provider at the bundled fake server (or at OpenAI when OPENAI_API_KEY is
# set), runs test/demo.sql (a tour) and test/demo_story.sql (prompt
# engineering or fine-tuning, measured on a small ticket-triage set; its
# evaluation's page is written to demo-run.html), and stops everything it
# started.
set -uo pipefail
cd "$(dirname "$0")/.."
. test/lib/cluster.sh

bash test/install_deps.sh || exit 1
make -s >/dev/null || { echo "build failed"; exit 1; }
if [ "$(id -u)" = 0 ]; then make -s install >/dev/null; else sudo make -s install >/dev/null; fi || exit 1

trap llm_stop_all EXIT
if [ -n "${OPENAI_API_KEY:-}" ]; then
	# the server reads the key from its own environment: never from SQL text
	export OPENAI_API_KEY
	llm_start_cluster "llmext.finetune_poll_interval = '10s'" || exit 1
	provider="SELECT llm_provider_create('openai', 'https://api.openai.com/v1', key_env => 'OPENAI_API_KEY');
			  SELECT llm_model_create('demo', 'openai', 'gpt-4o-mini', input_price => 0.15,
									  output_price => 0.60, cached_input_price => 0.075);
			  SELECT llm_model_create('base', 'openai', 'gpt-4o-mini-2024-07-18', input_price => 0.15,
									  output_price => 0.60, training_price => 3, tuned_input_price => 0.30,
									  tuned_output_price => 1.20);"
	# fine-tuning costs real money: only when asked
	finetune=$([ "${LLMEXT_DEMO_FINETUNE:-}" = 1 ] && echo true || echo false)
	echo "== using OpenAI (gpt-4o-mini)"
else
	llm_start_cluster "llmext.finetune_poll_interval = '100ms'" "llmext.finetune_poll_max_interval = '400ms'" || exit 1
	llm_start_fake --latency-ms 20 || exit 1
	provider="SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
			  SELECT llm_model_create('demo', 'fake', 'echo', input_price => 0.15,
									  output_price => 0.60, cached_input_price => 0.075);
			  SELECT llm_model_create('base', 'fake', 'learner', input_price => 0.15,
									  output_price => 0.60, training_price => 3, tuned_input_price => 0.30,
									  tuned_output_price => 1.20);"
	finetune=true
	echo "== no OPENAI_API_KEY: using the bundled fake provider (it echoes the question)"
fi
psql -XqAt -v ON_ERROR_STOP=1 -c "CREATE EXTENSION llmext" -c "$provider" >/dev/null || exit 1
psql -X -v ON_ERROR_STOP=1 -f test/demo.sql || exit 1
# the story: prompt engineering or fine-tuning, measured (its page goes to demo-run.html)
psql -X -v ON_ERROR_STOP=1 -v finetune="$finetune" -v html=demo-run.html -f test/demo_story.sql
