#!/usr/bin/env bash
# Benchmark: llm_render of a stored prompt against the equivalent SQL
# format() building the same user message, in the same run, in one
# statement each over N rows (no client round trips).  Prints renders per
# second for both and their ratio.
#   bash test/bench/render.sh            (ROWS=20000 by default)
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
ROWS=${ROWS:-20000}

trap llm_stop_all EXIT
llm_start_cluster >/dev/null || exit 1
psql -XqAt -v ON_ERROR_STOP=1 <<'SQL' >/dev/null || exit 1
CREATE EXTENSION llmext;
SELECT llm_prompt_create('ticket', E'Summarise ticket {{id}} from {{customer.name}} in {{words}} words:\n{{body}}',
						 system => 'You are a support lead.');
SELECT llm_prompt_deploy('ticket', 1);
SQL
time_ms() {	# time_ms SQL: milliseconds the statement took
	psql -XqAt -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'
}
vars="jsonb_build_object('id', g, 'customer', jsonb_build_object('name', 'Ann'), 'words', 20, 'body', 'The export button crashes the app on large files.')"
render_sql="SELECT count(llm_render('ticket', $vars)) FROM generate_series(1, $ROWS) g"
format_sql="SELECT count(jsonb_build_array(jsonb_build_object('role', 'system', 'content', 'You are a support lead.'),
	jsonb_build_object('role', 'user', 'content', format(E'Summarise ticket %s from %s in %s words:\n%s',
		v ->> 'id', v -> 'customer' ->> 'name', v ->> 'words', v ->> 'body'))))
	FROM (SELECT $vars AS v FROM generate_series(1, $ROWS) g) s"
time_ms "$format_sql" >/dev/null	# warm up
format_ms=$(time_ms "$format_sql")
render_ms=$(time_ms "$render_sql")
awk -v n="$ROWS" -v f="$format_ms" -v r="$render_ms" 'BEGIN {
	printf "SQL format():  %8.0f renders/s\n", n / (f / 1000)
	printf "llm_render():  %8.0f renders/s\n", n / (r / 1000)
	printf "llm_render takes %.2f times as long as format()\n", r / f
}'
