#!/usr/bin/env bash
# The ledger survives a server stop: rows still queued in shared memory when
# "pg_ctl stop -m fast" arrives are written by the worker before it exits.
# A worker stopped with pg_terminate_backend writes its queue too, and comes
# back.  Starts its own cluster; uses the running fake provider.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
fail() { echo "ledger_shutdown: $*" >&2; exit 1; }

LLM_PGPORT=$(llm_free_port $((LLM_PGPORT + 200)))
trap llm_stop_all EXIT
llm_start_cluster >/dev/null || fail "could not start a cluster"
for _ in $(seq 1 50); do
	[ "$(psql -XAtqc "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'llmext worker'")" = 1 ] && break
	sleep 0.1
done
psql -XAtq -v ON_ERROR_STOP=1 \
	-c "CREATE EXTENSION llmext" \
	-c "SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'))" \
	-c "SELECT llm_model_create('echo', 'fake', 'echo')" >/dev/null || fail "set-up failed"

# 300 calls, and the server stopped at once: no time for the worker's tick
psql -XAtq -c "SELECT count(llm_complete('row ' || g, 'echo')) FROM generate_series(1, 300) g" >/dev/null
llm_as_owner "$LLM_PG_BIN/pg_ctl" -D "$LLM_PGDATA" -m fast -w stop >/dev/null || fail "stop failed"
llm_as_owner "$LLM_PG_BIN/pg_ctl" -D "$LLM_PGDATA" -l "$LLM_WORKDIR/postgres.log" -w start >/dev/null ||
	fail "start failed"
rows=$(psql -XAtqc "SELECT count(*) FROM llm.calls")
[ "$rows" = 300 ] || fail "after a fast stop the ledger has $rows rows, expected 300"

# the worker told to stop writes what it holds, and is started again
psql -XAtq -c "SELECT count(llm_complete('more ' || g, 'echo')) FROM generate_series(1, 100) g" \
	-c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'llmext worker'" >/dev/null
back=
for _ in $(seq 1 100); do
	back=$(psql -XAtqc "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'llmext worker'")
	[ "$back" = 1 ] && break
	sleep 0.1
done
[ "$back" = 1 ] || fail "the worker did not come back"
psql -XAtqc "SELECT llm_flush()" >/dev/null
rows=$(psql -XAtqc "SELECT count(*) FROM llm.calls")
[ "$rows" = 400 ] || fail "after the worker was terminated the ledger has $rows rows, expected 400"
echo "ledger_shutdown: 300 rows written across a fast stop, 100 across a terminated worker"
