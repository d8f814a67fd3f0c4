#!/usr/bin/env bash
# A batch that finishes is announced on channel llm_batch_done, with its tag.
# Uses the regression database after pg_regress has run.
set -uo pipefail
export PGDATABASE=llmext_regression
fail() { echo "notify: $*" >&2; exit 1; }

tag="notify-$$"
out=$(psql -XAtq <<SQL 2>&1
LISTEN llm_batch_done;
SELECT count(llm_submit('note ' || g, 'echo', tag => '$tag')) FROM generate_series(1, 3) g;
SELECT llm_wait_batch('$tag', '10 seconds') ->> 'done';
SELECT pg_sleep(0.2);
SELECT 'after';
SQL
)
grep -q "Asynchronous notification \"llm_batch_done\" with payload \"$tag\" received" <<<"$out" ||
	fail "no notification: $out"
[ "$(grep -c "payload \"$tag\"" <<<"$out")" = 1 ] || fail "the batch was announced more than once: $out"
echo "notify: the end of a 3-request batch was announced once on llm_batch_done"
