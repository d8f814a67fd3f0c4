#!/usr/bin/env bash
# Query cancel during a call: pg_cancel_backend stops a 30 s call at once
# (the fake provider sees the client leave), and 50 cancelled calls in one
# backend leave no file descriptor (curl handle, socket) behind.
# Expects PGHOST/PGPORT/PGUSER and the fixtures of sql/setup.sql in
# llmext_regression (run after pg_regress).
set -uo pipefail
export PGDATABASE=llmext_regression
fail() { echo "cancel: $*" >&2; exit 1; }

aborted() { psql -XAtqc "SELECT llm_complete('stats', 'stats')::jsonb ->> 'aborted'"; }

before=$(aborted) || fail "cannot read the fake provider's counters"
out=$(mktemp)
start=$(date +%s.%N)
psql -XAtq -v ON_ERROR_STOP=1 -c "SET application_name = 'llmext_cancel_test'" \
	-c "SELECT llm_complete('hi', 'slow-30000')" >"$out" 2>&1 &
client=$!

pid=
for _ in $(seq 1 100); do
	pid=$(psql -XAtqc "SELECT pid FROM pg_stat_activity
		WHERE application_name = 'llmext_cancel_test' AND state = 'active'
		  AND wait_event_type = 'Extension'")
	[ -n "$pid" ] && break
	sleep 0.05
done
[ -n "$pid" ] || fail "the call never showed up waiting in pg_stat_activity"
psql -XAtqc "SELECT pg_cancel_backend($pid)" >/dev/null
wait $client
end=$(date +%s.%N)
grep -q "canceling statement due to user request" "$out" || { cat "$out"; fail "no cancel error"; }
sleep 0.3
after=$(aborted)
[ $((after - before)) -eq 1 ] || fail "the provider saw $((after - before)) aborted requests, expected 1"
awk -v s="$start" -v e="$end" 'BEGIN { printf "cancel: pg_cancel_backend ended a 30 s call after %.2f s in all\n", e - s }'

# 50 cancelled calls in one backend: the descriptor count stays put
script=$(mktemp)
{
	echo "SET statement_timeout = '50ms';"
	echo "SELECT llm_complete('warm up', 'slow-30000');"
	echo "SELECT llm_complete('warm up', 'echo');"
	echo "SELECT count(*) FROM pg_ls_dir('/proc/self/fd');"
	for i in $(seq 1 50); do echo "SELECT llm_complete('call $i', 'slow-30000');"; done
	echo "SELECT llm_complete('still healthy', 'echo');"
	echo "SELECT count(*) FROM pg_ls_dir('/proc/self/fd');"
} >"$script"
counts=$(psql -XAtq -f "$script" 2>"$out")
rm -f "$script"
[ "$(grep -c 'canceling statement due to statement timeout' "$out")" -eq 51 ] ||
	{ cat "$out"; fail "expected 51 statement timeouts"; }
grep -qx 'echo: still healthy' <<<"$counts" || fail "the backend did not answer after the cancels"
fd_before=$(grep -x '[0-9][0-9]*' <<<"$counts" | sed -n 1p)
fd_after=$(grep -x '[0-9][0-9]*' <<<"$counts" | sed -n 2p)
[ -n "$fd_before" ] && [ "$fd_before" = "$fd_after" ] ||
	fail "open descriptors went from $fd_before to $fd_after over 50 cancelled calls"
echo "cancel: 50 cancelled calls, open descriptors $fd_before before and $fd_after after"
rm -f "$out"
exit 0
