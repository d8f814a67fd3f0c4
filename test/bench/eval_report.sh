#!/usr/bin/env bash
# Benchmark: llm.eval_report over ROWS result rows (1,000,000 by default: 3
# variants x cases x 2 repeats of one run) against a plain GROUP BY over the
# same table (count, mean score, mean latency, total cost per variant).
# Target: the report within 3 times the GROUP BY.  Also prints how long
# writing the rows took, with the aggregates the triggers keep.
#   bash test/bench/eval_report.sh            (ROWS=1000000)
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
ROWS=${ROWS:-1000000}
CASES=$((ROWS / 6))

trap llm_stop_all EXIT
llm_start_cluster "work_mem = '64MB'" >/dev/null || exit 1
psql -XqAt -v ON_ERROR_STOP=1 <<SQL >/dev/null || exit 1
CREATE EXTENSION llmext;
SELECT llm_eval_set_create('bench', 'synthetic');
INSERT INTO llm.eval_runs (id, set_name, variants, repeats, tag, state, submitted_by, login_role, cases, requests)
VALUES (1, 'bench', '[]', 2, 'eval-1', 'done', current_user, current_user, $CASES, $CASES * 6);
SQL
written_start=$(date +%s.%N)
psql -XqAt -v ON_ERROR_STOP=1 <<SQL >/dev/null || exit 1
INSERT INTO llm.eval_results (run, case_key, variant, repeat, output, score, passed, input_tokens,
							  output_tokens, cost_usd, latency_ms, scored_at)
SELECT 1, c::text, v, r, 'answer ' || ((c * 7 + r * (v = 'c')::int) % 5),
	   ((c + r) % 3 > 0)::int, (c + r) % 3 > 0, 40 + c % 9, 5 + c % 4,
	   0.00001 * (1 + c % 3), 40 + (c * 37 + r * 11) % 50, now()
  FROM generate_series(1, $CASES) c, unnest(ARRAY['a', 'b', 'c']) v, generate_series(1, 2) r;
SQL
written=$(echo "$(date +%s.%N) - $written_start" | bc)
psql -XqAt -c "VACUUM ANALYZE llm.eval_results" >/dev/null || exit 1

# the best of three runs of a statement, in ms
best() {
	for _ in 1 2 3; do
		psql -XqAt -c '\timing on' -c "$1" 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1
	done | sort -n | head -n 1
}
plain=$(best "SELECT run, variant, count(*), avg(score), avg(latency_ms), sum(cost_usd) FROM llm.eval_results GROUP BY run, variant")
report=$(best "SELECT * FROM llm.eval_report WHERE run = 1")
rows=$(psql -XqAt -c "SELECT count(*) FROM llm.eval_results")
awk -v n="$rows" -v p="$plain" -v r="$report" -v w="$written" 'BEGIN {
	printf "result rows: %d, written in one statement with their aggregates in %.1f s\n", n, w
	printf "plain GROUP BY:      %8.0f ms\n", p
	printf "llm.eval_report:     %8.0f ms\n", r
	printf "ratio (report / GROUP BY): %.2f   (target <= 3)\n", r / p
}'
