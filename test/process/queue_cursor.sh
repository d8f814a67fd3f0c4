#!/usr/bin/env bash
# While a long run of requests keeps the worker claiming full batches, it
# claims on from where it stopped (a cursor), and from the start at least
# once a second.  So a request put back behind the cursor (a retry) and one
# of a higher priority submitted later are taken long before the run ends.
# Uses the regression database after pg_regress has run; sets
# llmext.worker_concurrency to 4 for a while.
set -uo pipefail
export PGDATABASE=llmext_regression
fail() { echo "queue_cursor: $*" >&2; exit 1; }
restore() {
	psql -XAtq -c "ALTER SYSTEM RESET llmext.worker_concurrency" -c "SELECT pg_reload_conf()" >/dev/null
}
trap restore EXIT

n=$$
psql -XAtq -v ON_ERROR_STOP=1 \
	-c "ALTER SYSTEM SET llmext.worker_concurrency = 4" -c "SELECT pg_reload_conf()" \
	-c "SELECT llm_model_create('cursor-slow-$n', 'fake', 'slow-40')" \
	-c "SELECT llm_model_create('cursor-flaky-$n', 'fake', 'flaky-1-cursor-$n')" >/dev/null ||
	fail "set-up failed"
sleep 1	# the worker reads its settings between turns

# the flaky request first: its retry goes back behind everything after it
psql -XAtq -v ON_ERROR_STOP=1 <<SQL >/dev/null || fail "submitting failed"
SELECT llm_submit('retried', 'cursor-flaky-$n', tag => 'cursor-flaky-$n');
SELECT count(llm_submit('bulk ' || g, 'cursor-slow-$n', tag => 'cursor-bulk-$n'))
  FROM generate_series(1, 400) g;
SQL
sleep 0.3
psql -XAtq -c "SELECT count(llm_submit('urgent ' || g, 'cursor-slow-$n', tag => 'cursor-urgent-$n', priority => 10))
				 FROM generate_series(1, 3) g" >/dev/null || fail "submitting failed"
for tag in flaky urgent bulk; do
	psql -XAtqc "SELECT llm_wait_batch('cursor-$tag-$n', '2 minutes') ->> 'done'" | grep -qx '[0-9]*' ||
		fail "waiting for $tag failed"
done

# the start of the 300th bulk request: 100 were still to start then, a second at least
read -r attempts retried_done urgent_started <<<"$(psql -XAt -F ' ' <<SQL
WITH bulk AS (SELECT started_at FROM llm.requests WHERE tag = 'cursor-bulk-$n'
			  ORDER BY started_at OFFSET 299 LIMIT 1)
SELECT (SELECT attempts FROM llm.requests WHERE tag = 'cursor-flaky-$n'),
	   (SELECT bool_and(state = 'done' AND finished_at < bulk.started_at)
		  FROM llm.requests WHERE tag = 'cursor-flaky-$n'),
	   (SELECT bool_and(state = 'done' AND started_at < bulk.started_at)
		  FROM llm.requests WHERE tag = 'cursor-urgent-$n')
  FROM bulk
SQL
)"
[ "$attempts" = 2 ] || fail "the flaky request made $attempts attempts, expected 2"
[ "$retried_done" = t ] || fail "the retried request waited behind the run"
[ "$urgent_started" = t ] || fail "the urgent requests waited behind the run"
psql -XAtq -c "SELECT llm_model_drop('cursor-slow-$n')" -c "SELECT llm_model_drop('cursor-flaky-$n')" >/dev/null
echo "queue_cursor: a retry put back behind the cursor and later urgent requests ran before the last 100 of 400"
