#!/usr/bin/env bash
# Crashes lose no queued work: a batch of 1,000 requests, first with the
# worker killed by SIGKILL mid-batch (the postmaster then restarts every
# process), then with the whole server stopped with "-m immediate" and
# started again.  Every request must end exactly once in done or error:
# a trigger logs each row's move out of running, and no row may move twice.
# Starts its own cluster and its own fake provider (20 ms per answer).
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
fail() { echo "queue_crash: $*" >&2; exit 1; }

LLM_PGPORT=$(llm_free_port $((LLM_PGPORT + 300)))
LLM_FAKE_PORT=$(llm_free_port $((LLM_FAKE_PORT + 300)))
trap llm_stop_all EXIT
llm_start_cluster >/dev/null || fail "could not start a cluster"
llm_start_fake --latency-ms 20 >/dev/null || fail "could not start the fake provider"

worker_pid() {
	psql -XAtqc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmext worker'"
}
wait_for_worker() {
	for _ in $(seq 1 150); do
		[ -n "$(worker_pid 2>/dev/null)" ] && return 0
		sleep 0.1
	done
	fail "the worker did not start"
}
wait_for_worker
psql -XAtq -v ON_ERROR_STOP=1 <<'SQL' >/dev/null || fail "set-up failed"
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
SELECT llm_model_create('echo', 'fake', 'echo');
CREATE TABLE finished_log (id bigint, state text);
CREATE FUNCTION log_finish() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.finished_log VALUES (NEW.id, NEW.state);
	RETURN NEW;
END $$;
CREATE TRIGGER log_finish AFTER UPDATE ON llm.requests FOR EACH ROW
	WHEN (OLD.state = 'running' AND NEW.state IN ('done', 'error'))
	EXECUTE FUNCTION log_finish();
SQL

check_batch() {	# check_batch TAG
	local summary twice
	summary=$(psql -XAtqc "SELECT llm_wait_batch('$1', '120 seconds')")
	psql -XAtqc "SELECT count(*) FROM llm.requests WHERE tag = '$1' AND state IN ('queued', 'running')" |
		grep -qx 0 || fail "$1: unfinished requests remain: $summary"
	[ "$(psql -XAtqc "SELECT count(*) FROM llm.requests WHERE tag = '$1' AND state = 'done'")" = 1000 ] ||
		fail "$1: not every request is done: $summary"
	twice=$(psql -XAtqc "SELECT count(*) FROM (SELECT l.id FROM finished_log l
		JOIN llm.requests r USING (id) WHERE r.tag = '$1' GROUP BY l.id HAVING count(*) > 1) t")
	[ "$twice" = 0 ] || fail "$1: $twice requests were finished twice"
	[ "$(psql -XAtqc "SELECT count(DISTINCT l.id) FROM finished_log l JOIN llm.requests r USING (id)
		WHERE r.tag = '$1'")" = 1000 ] || fail "$1: the log misses some finishes"
}

# 1. SIGKILL of the worker in the middle of a batch
psql -XAtqc "SELECT count(llm_submit('kill ' || g, 'echo', tag => 'sigkill')) FROM generate_series(1, 1000) g" >/dev/null
for _ in $(seq 1 100); do
	done_now=$(psql -XAtqc "SELECT count(*) FROM llm.requests WHERE tag = 'sigkill' AND state = 'done'")
	[ "$done_now" -ge 100 ] && break
	sleep 0.05
done
kill -9 "$(worker_pid)" || fail "no worker to kill"
sleep 1
for _ in $(seq 1 100); do psql -XAtqc "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
wait_for_worker
check_batch sigkill
echo "queue_crash: worker killed after $done_now of 1000 done; all 1000 finished exactly once"

# 2. The whole server stopped with -m immediate mid-batch, then started
psql -XAtqc "SELECT count(llm_submit('stop ' || g, 'echo', tag => 'immediate')) FROM generate_series(1, 1000) g" >/dev/null
for _ in $(seq 1 100); do
	done_now=$(psql -XAtqc "SELECT count(*) FROM llm.requests WHERE tag = 'immediate' AND state = 'done'")
	[ "$done_now" -ge 100 ] && break
	sleep 0.05
done
llm_as_owner "$LLM_PG_BIN/pg_ctl" -D "$LLM_PGDATA" -m immediate -w stop >/dev/null || fail "stop failed"
llm_as_owner "$LLM_PG_BIN/pg_ctl" -D "$LLM_PGDATA" -l "$LLM_WORKDIR/postgres.log" -w start >/dev/null ||
	fail "start failed"
wait_for_worker
check_batch immediate
echo "queue_crash: server stopped immediately after $done_now of 1000 done; all 1000 finished exactly once"
