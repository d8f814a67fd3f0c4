#!/usr/bin/env bash
# Postmaster death during a steady backlog: the worker, busy with requests
# in flight against a slow model (it waits in curl, not on its latch), must
# exit within about a second of a SIGKILL of the postmaster and send the
# provider nothing more (the fake provider's chat_requests stops growing).
# Starts its own cluster and its own fake provider.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
fail() { echo "postmaster_death: $*" >&2; exit 1; }

LLM_PGPORT=$(llm_free_port $((LLM_PGPORT + 500)))
LLM_FAKE_PORT=$(llm_free_port $((LLM_FAKE_PORT + 500)))
children=
cleanup() {
	# the postmaster is gone: pg_ctl cannot stop what is left of the cluster
	for pid in $children; do kill -9 "$pid" 2>/dev/null; done
	llm_stop_all
}
trap cleanup EXIT
llm_start_cluster "llmext.worker_concurrency = 8" >/dev/null || fail "could not start a cluster"
llm_start_fake >/dev/null || fail "could not start the fake provider"

stat() {	# stat FIELD: a counter of the fake provider
	curl -s "http://127.0.0.1:$LLM_FAKE_PORT/_stats" |
		python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"
}
alive() {	# a zombie no one reaps (the postmaster was its parent) counts as gone
	[ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}
worker_pid() {
	psql -XAtqc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmext worker'"
}
for _ in $(seq 1 150); do
	[ -n "$(worker_pid 2>/dev/null)" ] && break
	sleep 0.1
done
worker=$(worker_pid)
[ -n "$worker" ] || fail "the worker did not start"
psql -XAtq -v ON_ERROR_STOP=1 <<'SQL' >/dev/null || fail "set-up failed"
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
SELECT llm_model_create('slow', 'fake', 'slow-300');
SELECT count(llm_submit('backlog ' || g, 'slow', tag => 'backlog')) FROM generate_series(1, 2000) g;
SQL

# a steady backlog: 8 requests in flight, about 25 a second
for _ in $(seq 1 100); do
	[ "$(stat chat_requests)" -ge 40 ] && break
	sleep 0.1
done
[ "$(stat chat_requests)" -ge 40 ] || fail "the worker did not get going"

postmaster=$(head -1 "$LLM_PGDATA/postmaster.pid")
children=$(pgrep -P "$postmaster" | tr '\n' ' ')
before=$(stat chat_requests)
start=$(date +%s.%N)
kill -9 "$postmaster"
gone=
for _ in $(seq 1 100); do
	if ! alive "$worker"; then
		gone=$(date +%s.%N)
		break
	fi
	sleep 0.02
done
at_exit=$(stat chat_requests)
sleep 2
later=$(stat chat_requests)
[ -n "$gone" ] || fail "the worker still runs 2 s after the postmaster died; the provider got $((later - before)) more requests meanwhile"
exit_s=$(awk -v s="$start" -v e="$gone" 'BEGIN { printf "%.2f", e - s }')
awk -v t="$exit_s" 'BEGIN { exit !(t <= 1.2) }' ||
	fail "the worker took $exit_s s to exit after the postmaster died"
[ "$later" = "$at_exit" ] || fail "the provider got $((later - at_exit)) requests after the worker was gone"
# requests sent between the last count and the kill, at most one per place
[ $((at_exit - before)) -le 8 ] ||
	fail "the provider got $((at_exit - before)) requests after the postmaster died"
echo "postmaster_death: worker exited $exit_s s after SIGKILL of the postmaster;" \
	"$((at_exit - before)) requests reached the provider after the kill, none after the exit"
