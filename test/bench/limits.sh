#!/usr/bin/env bash
# Benchmark: queued requests behind a model's max_concurrency.  REQUESTS
# requests to a model limited to LIMIT requests at once, each answered in
# LATENCY_MS: the time from the first claim to the last result against the
# ideal ceil(REQUESTS / LIMIT) x LATENCY_MS, and the updates of
# llm.requests it took (one claim and one finish per request is the least).
#   bash test/bench/limits.sh            (REQUESTS=40 LIMIT=2 LATENCY_MS=100)
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
REQUESTS=${REQUESTS:-40}
LIMIT=${LIMIT:-2}
LATENCY_MS=${LATENCY_MS:-100}

trap llm_stop_all EXIT
llm_start_cluster >/dev/null || exit 1
llm_start_fake >/dev/null || exit 1
for _ in $(seq 1 100); do
	[ -n "$(psql -XAtqc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmext worker'")" ] && break
	sleep 0.1
done
psql -XqAt -v ON_ERROR_STOP=1 -v limit="$LIMIT" -v remote="slow-$LATENCY_MS" <<'SQL' >/dev/null || exit 1
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
SELECT llm_model_create('narrow', 'fake', :'remote', limits => jsonb_build_object('max_concurrency', :limit));
SQL

updates() {	# statistics reach the views within a second of a transaction's end
	sleep 1.5
	psql -XAtqc "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'llm.requests'::regclass"
}
before=$(updates)
psql -XAtqc "SELECT count(llm_submit('item ' || g, 'narrow', tag => 'limited')) FROM generate_series(1, $REQUESTS) g" >/dev/null
psql -XAtqc "SELECT llm_wait_batch('limited', '10 minutes')" >/dev/null
after=$(updates)
psql -XAt -F ' ' -c "SELECT done, extract(epoch FROM finished - started) FROM llm.batches WHERE tag = 'limited'" |
while read -r done seconds; do
	awk -v n="$done" -v s="$seconds" -v r="$REQUESTS" -v l="$LIMIT" -v ms="$LATENCY_MS" \
		-v u="$((after - before))" 'BEGIN {
		ideal = int((r + l - 1) / l) * ms / 1000
		printf "%d requests, max_concurrency %d, %d ms each: %.2f s, ideal %.2f s (ratio %.2f); %d updates of llm.requests, %.1f per request (2 is the least)\n", n, l, ms, s, ideal, ideal / s, u, u / n
	}'
done
