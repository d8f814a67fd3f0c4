#!/usr/bin/env bash
# Benchmark: an evaluation run of CASES cases x 3 variants x 2 repeats
# (12,000 requests by default) against the fake provider at LATENCY_MS, end
# to end: llm_eval_run, then llm_eval_wait until every result is scored.
# Prints the time, the requests per second and the ratio to the queue's ideal
# C / latency (C = llmext.worker_concurrency).  Target: at least 0.85.
#   bash test/bench/eval_run.sh            (CASES=2000 LATENCY_MS=50)
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
CASES=${CASES:-2000}
LATENCY_MS=${LATENCY_MS:-50}

trap llm_stop_all EXIT
llm_start_cluster >/dev/null || exit 1
llm_start_fake --latency-ms "$LATENCY_MS" >/dev/null || exit 1
for _ in $(seq 1 100); do
	[ -n "$(psql -XAtqc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmext worker'")" ] && break
	sleep 0.1
done
concurrency=$(psql -XAtqc "SHOW llmext.worker_concurrency")
psql -XqAt -v ON_ERROR_STOP=1 <<SQL >/dev/null || exit 1
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
SELECT llm_model_create('echo', 'fake', 'echo', input_price => 0.15, output_price => 0.6);
SELECT llm_model_create('learner', 'fake', 'learner', input_price => 0.15, output_price => 0.6);
SELECT llm_prompt_create('triage', 'Ticket: {{body}}', model => 'learner',
	examples => '[{"input": {"body": "the app crashes on start"}, "output": "bug"},
				  {"input": {"body": "please add a dark mode"}, "output": "feature"}]');
SELECT llm_eval_set_create('bench', 'synthetic tickets');
SELECT llm_eval_cases_add('bench', \$q\$SELECT g::text AS key,
	jsonb_build_object('body', CASE WHEN g % 2 = 0 THEN 'the app crashes when saving ' || g
									ELSE 'please add an export of report ' || g END) AS vars,
	CASE WHEN g % 2 = 0 THEN 'the app crashes when saving ' || g
		 ELSE 'please add an export of report ' || g END AS input,
	to_jsonb(CASE WHEN g % 2 = 0 THEN 'bug' ELSE 'feature' END) AS expected
	FROM generate_series(1, $CASES) g\$q\$);
SQL
start=$(date +%s.%N)
run=$(psql -XqAt -v ON_ERROR_STOP=1 -c "SELECT llm_eval_run('bench', '[
	{\"name\": \"fewshot\", \"prompt\": \"triage\", \"version\": 1, \"model\": \"learner\"},
	{\"name\": \"fewshot-echo\", \"prompt\": \"triage\", \"version\": 1, \"model\": \"echo\"},
	{\"name\": \"plain\", \"model\": \"learner\", \"system\": \"Answer bug or feature.\"}]', repeats => 2)") || exit 1
state=$(psql -XqAt -c "SELECT llm_eval_wait($run, '600 seconds') ->> 'state'")
end=$(date +%s.%N)
read -r results scored <<<"$(psql -XqAt -F ' ' -c "SELECT count(*), count(scored_at) FROM llm.eval_results WHERE run = $run")"
psql -XqAt -c "SELECT variant, round(mean_score::numeric, 3), errors FROM llm.eval_report WHERE run = $run ORDER BY 1" |
	sed 's/^/  variant|mean score|errors: /'
awk -v s="$start" -v e="$end" -v n="$results" -v k="$scored" -v c="$concurrency" -v l="$LATENCY_MS" -v st="$state" 'BEGIN {
	t = e - s; ideal = c / (l / 1000)
	printf "run %s: %d results, %d scored, in %.2f s: %.0f requests/s, ideal %.0f (C = %d, %d ms)\n", st, n, k, t, n / t, ideal, c, l
	printf "ratio to the ideal: %.2f   (target >= 0.85)\n", n / t / ideal
}'
