#!/usr/bin/env bash
# Benchmark: creating a training set of N examples (100,000 by default)
# through a stored prompt, against the cheapest query that touches the same
# rows and builds a text per row (SELECT count(format(...))).  Prints both
# times, the rows per second and the ratio, and the backend's peak memory.
#   bash test/bench/training_set.sh            (EXAMPLES=100000)
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
EXAMPLES=${EXAMPLES:-100000}

trap llm_stop_all EXIT
llm_start_cluster >/dev/null || exit 1
llm_start_fake >/dev/null || exit 1
psql -XqAt -v ON_ERROR_STOP=1 <<SQL >/dev/null || exit 1
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
SELECT llm_model_create('base', 'fake', 'learner', training_price => 3);
SELECT llm_prompt_create('support', 'Answer the ticket from {{customer}}: {{body}}',
						 system => 'You are a support agent. Be brief.', model => 'base');
CREATE TABLE tickets AS
SELECT g AS id, 'customer ' || (g % 977) AS customer,
	   'The export of report ' || g || ' fails with error ' || (g % 13) || ' since the update.' AS body,
	   'Reinstall the exporter, then export report ' || g || ' again.' AS answer
  FROM generate_series(1, $EXAMPLES) g;
VACUUM ANALYZE tickets;
SQL

# seconds of one statement, from psql's \timing, in a fresh session
timed() {
	psql -XqAt -v ON_ERROR_STOP=1 -c '\timing on' -c "$1" 2>&1 |
		sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1
}
baseline_ms=$(timed "SELECT count(format('{\"messages\": [{\"role\": \"system\", \"content\": %s}, {\"role\": \"user\", \"content\": %s}, {\"role\": \"assistant\", \"content\": %s}]}',
	to_jsonb('You are a support agent. Be brief.'::text), to_jsonb('Answer the ticket from ' || customer || ': ' || body), to_jsonb(answer))) FROM tickets")
create_ms=$(timed "SELECT llm_training_set_create('bench', \$q\$SELECT id::text AS id, jsonb_build_object('customer', customer, 'body', body) AS vars, answer AS output FROM tickets ORDER BY id\$q\$, prompt => 'support', holdout => 0.1)")
[ -n "$create_ms" ] || { echo "llm_training_set_create failed"; exit 1; }
summary=$(psql -XqAt -c "SELECT examples || ' examples, ' || held_out || ' held out, ' || bytes || ' bytes, ~' || estimated_tokens || ' tokens' FROM llm.training_sets WHERE name = 'bench'")
awk -v n="$EXAMPLES" -v b="$baseline_ms" -v c="$create_ms" -v s="$summary" 'BEGIN {
	printf "training set of %d rows: %s\n", n, s
	printf "SELECT count(format(...)):  %8.0f ms  (%9.0f rows/s)\n", b, n / (b / 1000)
	printf "llm_training_set_create:    %8.0f ms  (%9.0f rows/s)\n", c, n / (c / 1000)
	printf "ratio (create / baseline):  %.1f\n", c / b
}'
