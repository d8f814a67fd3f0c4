#!/usr/bin/env bash
# A full queue of entries (llmext.queue_entries = 64, its least):
#  1. the worker, finishing 1,000 queued requests 256 at a time, makes more
#     ledger rows and cache entries per turn than the queue holds; it must
#     keep them itself and write them, not wait on itself (which cost 2 s an
#     entry), and every ledger row must be written;
#  2. a backend waiting for a place (the worker held up by a lock on
#     llm.calls, llmext.queue_full_wait = 30 s) must stay cancellable: a
#     pg_cancel_backend ends it at once, and the entry it could not queue
#     goes to the log with a WARNING rather than vanish.
# Starts its own cluster and its own fake provider (20 ms per answer).
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
fail() { echo "entry_queue_full: $*" >&2; exit 1; }

LLM_PGPORT=$(llm_free_port $((LLM_PGPORT + 600)))
LLM_FAKE_PORT=$(llm_free_port $((LLM_FAKE_PORT + 600)))
trap llm_stop_all EXIT
llm_start_cluster "llmext.queue_entries = 64" "llmext.worker_concurrency = 256" \
	"llmext.queue_full_wait = '30s'" >/dev/null || fail "could not start a cluster"
llm_start_fake --latency-ms 20 >/dev/null || fail "could not start the fake provider"

stat() {	# stat FIELD: a counter of the fake provider
	curl -s "http://127.0.0.1:$LLM_FAKE_PORT/_stats" |
		python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"
}
for _ in $(seq 1 150); do
	psql -XAtqc "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'llmext worker'" 2>/dev/null |
		grep -q 1 && break
	sleep 0.1
done
psql -XAtq -v ON_ERROR_STOP=1 <<'SQL' >/dev/null || fail "set-up failed"
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
SELECT llm_model_create('echo', 'fake', 'echo');
SQL

# 1. the worker's own entries overflow the queue
start=$(date +%s.%N)
psql -XAtqc "SELECT count(llm_submit('queued ' || g, 'echo', tag => 'burst')) FROM generate_series(1, 1000) g" >/dev/null
summary=$(psql -XAtqc "SELECT llm_wait_batch('burst', '60 seconds')")
end=$(date +%s.%N)
left=$(psql -XAtqc "SELECT count(*) FROM llm.requests WHERE tag = 'burst' AND state IN ('queued', 'running')")
[ "$left" = 0 ] || fail "after 60 s, $left of 1000 requests are unfinished: $summary"
[ "$(psql -XAtqc "SELECT llm_flush('30 seconds')")" = t ] || fail "llm_flush timed out"
rows=$(psql -XAtqc "SELECT count(*) FROM llm.calls WHERE source = 'queue'")
[ "$rows" = 1000 ] || fail "$rows ledger rows for 1000 requests"
elapsed=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')
awk -v t="$elapsed" 'BEGIN { exit !(t <= 30) }' || fail "1000 requests took $elapsed s"
echo "entry_queue_full: 1000 queued requests in $elapsed s" \
	"($(awk -v t="$elapsed" 'BEGIN { printf "%.0f", 1000 / t }')/s) with 64 places; 1000 ledger rows"

# 2. a backend waiting for a place stays cancellable
psql -XAtq -c "SET application_name = 'entry_queue_locker'" \
	-c "BEGIN" -c "LOCK TABLE llm.calls IN SHARE MODE" -c "SELECT pg_sleep(120)" >/dev/null 2>&1 &
locker=$!
for _ in $(seq 1 100); do
	psql -XAtqc "SELECT 1 FROM pg_stat_activity WHERE application_name = 'entry_queue_locker'
		AND query LIKE '%pg_sleep%'" | grep -q 1 && break
	sleep 0.05
done
out=$(mktemp)
psql -XAtq -c "SET application_name = 'entry_queue_filler'" \
	-c "SELECT count(llm_complete('fill ' || g, 'echo')) FROM generate_series(1, 500) g" >"$out" 2>&1 &
client=$!
# the queue is full, and the backend waits, once the provider hears no more
last=-1
for _ in $(seq 1 200); do
	now=$(stat chat_requests)
	[ "$now" = "$last" ] && break
	last=$now
	sleep 0.3
done
pid=$(psql -XAtqc "SELECT pid FROM pg_stat_activity WHERE application_name = 'entry_queue_filler'")
[ -n "$pid" ] || { cat "$out"; fail "the filling backend is gone"; }
start=$(date +%s.%N)
psql -XAtqc "SELECT pg_cancel_backend($pid)" >/dev/null
wait $client
end=$(date +%s.%N)
psql -XAtqc "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'entry_queue_locker'" >/dev/null
wait $locker
grep -q "canceling statement due to user request" "$out" || { cat "$out"; fail "no cancel error"; }
grep -q "WARNING:  llmext could not queue a" "$out" || { cat "$out"; fail "no WARNING for the entry left out"; }
grep -q 'DETAIL:  Entry: {"kind":"' "$out" || { cat "$out"; fail "the WARNING does not show the entry"; }
took=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')
awk -v t="$took" 'BEGIN { exit !(t <= 0.5) }' ||
	fail "the waiting backend took $took s to end after pg_cancel_backend"
[ "$(psql -XAtqc "SELECT llm_flush('30 seconds')")" = t ] || fail "llm_flush timed out after the lock"
echo "entry_queue_full: a backend waiting for a place ended $took s after pg_cancel_backend;" \
	"the entry it could not queue is in a WARNING"
rm -f "$out"
