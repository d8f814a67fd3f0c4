#!/usr/bin/env bash
# Bounded memory (docs/security.md, item 9): an llm_user's worst case in one
# backend stays under the stated formula
#
#   peak RSS - RSS at start <= 64 MB + 3 T + 200 N + 6 M + 8 Q + (3 c + 6) R
#
# with T = llmext.max_template_bytes, N = llmext.max_template_nodes,
# M = llmext.max_rendered_bytes, Q = llmext.max_request_bytes,
# c = llmext.max_batch_concurrency, R = llmext.max_response_bytes_limit.
# Each case runs in its own session as an llm_user that has raised
# llmext.max_response_bytes as far as it can; the backend reads its own
# /proc/self/status (VmRSS at the start, VmHWM at the end).  Oversized input
# must be refused with 54000, never XX000.  Starts its own cluster and fake
# provider (the ceilings are in its postgresql.conf).
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
fail() { echo "memory_bound: $*" >&2; exit 1; }

MB=$((1024 * 1024))
T=$((4 * MB)) N=500000 M=$((8 * MB)) Q=$((16 * MB)) C=8 R=$((8 * MB))
BOUND=$((64 * MB + 3 * T + 200 * N + 6 * M + 8 * Q + (3 * C + 6) * R))

LLM_PGPORT=$(llm_free_port $((LLM_PGPORT + 200)))
LLM_FAKE_PORT=$(llm_free_port $((LLM_FAKE_PORT + 200)))
trap llm_stop_all EXIT
llm_start_cluster "llmext.max_template_bytes = $T" "llmext.max_template_nodes = $N" \
	"llmext.max_rendered_bytes = $M" "llmext.max_request_bytes = $Q" \
	"llmext.max_batch_concurrency = $C" "llmext.max_response_bytes_limit = $R" \
	"llmext.queue_memory = 8" >/dev/null || fail "could not start a cluster"
llm_start_fake >/dev/null || fail "could not start the fake provider"

psql -XAtq -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || fail "setup failed"
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
SELECT llm_model_create('echo', 'fake', 'echo');
SELECT llm_model_create('huge', 'fake', 'huge-8000000');
CREATE ROLE mallory LOGIN;
GRANT llm_user TO mallory;
CREATE FUNCTION kb(field text) RETURNS bigint LANGUAGE sql AS $$
	SELECT substring(pg_read_file('/proc/self/status') FROM field || ':\s+(\d+) kB')::bigint
$$;
SQL

# run_case NAME SQL: runs SQL as mallory in a fresh backend, checks the bound
run_case() {
	local out start peak used
	out=$(psql -XAtq -v ON_ERROR_STOP=1 2>&1 <<SQL
SELECT llm_complete('warm up', 'echo') IS NOT NULL;
SELECT 'start ' || kb('VmRSS');
SET SESSION AUTHORIZATION mallory;
SET llmext.max_response_bytes = '500MB';
$2
RESET SESSION AUTHORIZATION;
SELECT 'peak ' || kb('VmHWM');
SQL
	) || fail "$1: $out"
	start=$(sed -n 's/^start //p' <<<"$out")
	peak=$(sed -n 's/^peak //p' <<<"$out")
	[ -n "$start" ] && [ -n "$peak" ] || fail "$1: no memory figures: $out"
	used=$(((peak - start) * 1024))
	echo "memory_bound: $1: $((used / MB)) MB over the start (bound $((BOUND / MB)) MB)"
	[ "$used" -le "$BOUND" ] || fail "$1 used $((used / MB)) MB, more than the bound $((BOUND / MB)) MB"
}

# a batch of 64 answers of 8,000,000 bytes: 8 at a time, whatever the number
run_case "batch of 64 answers of 8 MB" \
	"SELECT count(*) = 64 AND bool_and(length(completion) = 8000000)
	   FROM llm_complete_batch(array_fill('x'::text, ARRAY[64]), 'huge', concurrency => $C);"
# the same through a stored prompt (rendering in the loop)
run_case "prompt batch of 64 answers of 8 MB" \
	"SELECT llm_prompt_create('huge', 'say {{a}}', model => 'huge');
	 SELECT count(*) = 64 AND bool_and(length(completion) = 8000000)
	   FROM llm_complete_prompt_batch('huge', array_fill('{\"a\": 1}'::jsonb, ARRAY[64]), concurrency => $C);"
# a template at both ceilings (500,000 parts, under 4 MB), rendered near M
run_case "template of $N parts rendered to 8 MB" \
	"SELECT llm_prompt_create('wide', repeat('{{a}}', $N), model => 'echo');
	 SELECT length(llm_render('wide', jsonb_build_object('a', repeat('y', 16))) #>> '{messages,0,content}') = 8000000;
	 SELECT length(llm_complete_prompt('wide', jsonb_build_object('a', repeat('y', 14)))) = 7000006;"
# the largest request (the echo's answer cut to one word)
run_case "request of 16 MB" \
	"SELECT llm_complete(repeat('z ', $(((Q - 4096) / 2))), 'echo',
						 options => '{\"max_completion_tokens\": 1}') = 'echo:';"

# oversized input: 54000, even beyond what PostgreSQL can allocate at once
check_state() {
	local got
	got=$(psql -XAtq 2>&1 <<SQL
SET SESSION AUTHORIZATION mallory;
\set VERBOSITY sqlstate
$2
SQL
	)
	grep -q "^ERROR:  54000" <<<"$got" || fail "$1: expected SQLSTATE 54000, got: $got"
	echo "memory_bound: $1: 54000"
}
check_state "a 48 MB template of 8M variables" "SELECT llm_prompt_create('v8m', repeat('{{a}} ', 8000000));"
check_state "a 120 MB template" "SELECT llm_prompt_create('v120', repeat('{{a}} ', 20000000));"
check_state "a template of $((N + 1)) parts" "SELECT llm_prompt_create('vn', repeat('{{a}}', $((N + 1))));"
check_state "a 300 MB prompt" "SELECT llm_complete(repeat('z', 300000000), 'echo');"
check_state "rendering past 8 MB" "SELECT llm_render('wide', jsonb_build_object('a', repeat('y', 17)));"
check_state "concurrency $((C + 1))" "SELECT * FROM llm_complete_batch(ARRAY['a'], 'echo', concurrency => $((C + 1)));"
echo "memory_bound: every case stayed under $((BOUND / MB)) MB"
