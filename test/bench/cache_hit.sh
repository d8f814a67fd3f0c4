#!/usr/bin/env bash
# Benchmark: a cache-hit llm_complete against a plain primary-key SELECT of
# the same row, in the same run, through pgbench (one client, prepared
# statements).  Prints both rates and the ratio of their latencies.
# The server and pgbench share one CPU: on a virtual machine with idle CPUs,
# waking the other CPU for every round trip otherwise costs more than
# either statement, and hides the difference being measured.
# Target: the cache hit costs under 1.5 times the SELECT.
#   bash test/bench/cache_hit.sh            (SECONDS_PER_RUN=10 by default)
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}

trap llm_stop_all EXIT
llm_start_cluster >/dev/null || exit 1
llm_start_fake >/dev/null || exit 1
cpu=$(($(nproc) - 1))
taskset -p -c "$cpu" "$(head -n 1 "$LLM_PGDATA/postmaster.pid")" >/dev/null	# new backends inherit it
psql -XqAt -v ON_ERROR_STOP=1 <<'SQL' >/dev/null || exit 1
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
SELECT llm_model_create('echo', 'fake', 'echo', input_price => 0.15, output_price => 0.60);
SELECT llm_complete('What is the capital of France?', 'echo', NULL, '{"temperature": 0}');
SELECT llm_flush();
-- the row the cache hit reads, as a plain table with the same payload
CREATE TABLE answers (key text PRIMARY KEY, result jsonb);
INSERT INTO answers SELECT key, result FROM llm.cache;
SQL
key=$(psql -XqAt -c "SELECT key FROM answers")
bench="$LLM_WORKDIR/bench"
mkdir -p "$bench"
echo "SELECT llm_complete('What is the capital of France?', 'echo', NULL, '{\"temperature\": 0}');" >"$bench/hit.sql"
echo "SELECT result ->> 'content' FROM answers WHERE key = '$key';" >"$bench/select.sql"

run() {	# prints transactions per second
	taskset -c "$cpu" pgbench -n -M prepared -c 1 -T "$SECONDS_PER_RUN" -f "$1" 2>/dev/null |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
run "$bench/select.sql" >/dev/null	# warm up
select_tps=$(run "$bench/select.sql")
hit_tps=$(run "$bench/hit.sql")
requests=$(psql -XqAt -c "SELECT llm_complete('stats', 'echo', NULL, '{\"temperature\": 0}')" >/dev/null;
	curl -s "http://127.0.0.1:$LLM_FAKE_PORT/_stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["chat_requests"])')
awk -v s="$select_tps" -v h="$hit_tps" -v r="$requests" 'BEGIN {
	printf "primary-key SELECT:      %9.0f statements/s (%.1f us each)\n", s, 1e6 / s
	printf "cache-hit llm_complete:  %9.0f statements/s (%.1f us each)\n", h, 1e6 / h
	printf "cost ratio (hit / SELECT): %.2f   (target < 1.5)\n", s / h
	printf "requests the fake provider received in all: %d\n", r
}'
