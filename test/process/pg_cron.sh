#!/usr/bin/env bash
# pg_cron schedules the queue: one job enqueues a "nightly" batch every
# minute (pg_cron 1.4, as Debian 12 ships it, has minute granularity) and a
# second records the batches' progress.  Starts its own cluster with
# shared_preload_libraries = 'pg_cron,llmext'; pg_cron connects over libpq
# to localhost, which the test cluster trusts.  Takes up to two minutes.
# Uses the fake provider that test/run_all.sh starts (LLM_FAKE_PORT).
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
fail() { echo "pg_cron: $*" >&2; exit 1; }

[ -f "$(pg_config --pkglibdir)/pg_cron.so" ] || fail "pg_cron is not installed (postgresql-15-cron)"
LLM_PRELOAD="pg_cron,llmext"
LLM_PGPORT=$(llm_free_port $((LLM_PGPORT + 400)))
trap llm_stop_all EXIT
llm_start_cluster "cron.database_name = 'postgres'" >/dev/null || fail "could not start a cluster"
psql -XAtq -v ON_ERROR_STOP=1 <<'SQL' >/dev/null || fail "set-up failed"
CREATE EXTENSION pg_cron;
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
SELECT llm_model_create('echo', 'fake', 'echo');
CREATE TABLE tickets (id int PRIMARY KEY, body text, summary text);
INSERT INTO tickets SELECT g, 'ticket number ' || g FROM generate_series(1, 20) g;
CREATE FUNCTION store_summary(request_id bigint, result jsonb) RETURNS void LANGUAGE sql AS $$
	UPDATE tickets t SET summary = result ->> 'content'
	  FROM llm.requests r
	 WHERE r.id = request_id AND t.id = split_part(r.messages -> -1 ->> 'content', ' ', 3)::int
$$;
CREATE TABLE batch_progress (at timestamptz, tag text, total bigint, done bigint);
SELECT cron.schedule('nightly-summaries', '* * * * *', $$
	SELECT count(llm_submit('summarise ticket ' || id, 'echo', tag => 'nightly',
							callback => 'store_summary(bigint, jsonb)'))
	  FROM tickets WHERE summary IS NULL AND NOT EXISTS (SELECT FROM llm.requests WHERE tag = 'nightly')
$$);
SELECT cron.schedule('nightly-progress', '* * * * *', $$
	INSERT INTO batch_progress SELECT now(), tag, total, done FROM llm.batches WHERE tag = 'nightly'
$$);
SQL

for _ in $(seq 1 150); do
	succeeded=$(psql -XAtqc "SELECT count(DISTINCT jobid) FROM cron.job_run_details WHERE status = 'succeeded'")
	summarised=$(psql -XAtqc "SELECT count(*) FROM tickets WHERE summary IS NOT NULL")
	progress=$(psql -XAtqc "SELECT count(*) > 0 FROM batch_progress WHERE tag = 'nightly' AND total = 20")
	[ "$succeeded" = 2 ] && [ "$summarised" = 20 ] && [ "$progress" = t ] && break
	sleep 1
done
failed=$(psql -XAtqc "SELECT string_agg(return_message, '; ') FROM cron.job_run_details WHERE status <> 'succeeded'")
[ "$succeeded" = 2 ] || fail "jobs that succeeded: $succeeded (failures: $failed)"
[ "$summarised" = 20 ] || fail "$summarised of 20 tickets were summarised"
[ "$(psql -XAtqc "SELECT summary FROM tickets WHERE id = 7")" = "echo: summarise ticket 7" ] ||
	fail "ticket 7 has the wrong summary"
[ "$progress" = t ] || fail "the progress job recorded nothing"
echo "pg_cron: a scheduled job queued a 20-ticket batch, its callbacks stored the summaries, a second job recorded progress"
