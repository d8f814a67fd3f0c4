#!/usr/bin/env bash
# Benchmark: llm_complete_batch of N prompts at a fixed provider latency with
# concurrency C, against the ideal N / C * latency, in one run.
#   bash test/bench/batch.sh            (PROMPTS=1000 LATENCY_MS=100 CONCURRENCY=64)
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
PROMPTS=${PROMPTS:-1000}
LATENCY_MS=${LATENCY_MS:-100}
CONCURRENCY=${CONCURRENCY:-64}

trap llm_stop_all EXIT
llm_start_cluster >/dev/null || exit 1
llm_start_fake --latency-ms "$LATENCY_MS" >/dev/null || exit 1
psql -XqAt -v ON_ERROR_STOP=1 <<'SQL' >/dev/null || exit 1
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
SELECT llm_model_create('echo', 'fake', 'echo');
SQL
ms=$(psql -XqAt -c '\timing on' \
	-c "SELECT count(completion) FROM llm_complete_batch(ARRAY(SELECT 'prompt ' || g FROM generate_series(1, $PROMPTS) g), 'echo', concurrency => $CONCURRENCY)" |
	sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
awk -v n="$PROMPTS" -v c="$CONCURRENCY" -v l="$LATENCY_MS" -v ms="$ms" 'BEGIN {
	ideal = (n / c) * l
	if (n % c) ideal = (int(n / c) + 1) * l
	printf "llm_complete_batch: %d prompts, C=%d, %d ms each: %.0f ms, ideal %.0f ms, ratio (ideal / measured) %.2f\n", n, c, l, ms, ideal, ideal / ms
}'
