#!/usr/bin/env bash
# Benchmark: the worker uploading a large training file (200 MB by default)
# for a fine-tuning job, against curl uploading the same bytes to the same
# fake provider.  Prints both times, their ratio (curl / worker: 1.0 means
# as fast as curl), and how much the worker's private memory (RssAnon,
# sampled every 20 ms; VmHWM would count the shared buffers it read) grew.
# Targets: ratio at least 0.8; peak memory growth under 32 MB (streamed).
#   bash test/bench/finetune_upload.sh            (MEGABYTES=200)
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
MEGABYTES=${MEGABYTES:-200}
# about 4 kB per example
EXAMPLES=$((MEGABYTES * 256))

trap llm_stop_all EXIT
llm_start_cluster "llmext.finetune_poll_interval = '100ms'" >/dev/null || exit 1
llm_start_fake >/dev/null || exit 1
for _ in $(seq 1 100); do
	[ -n "$(psql -XAtqc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmext worker'")" ] && break
	sleep 0.1
done
worker=$(psql -XAtqc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmext worker'")

# The set is written straight into the snapshot tables: creating it through
# llm_training_set_create is measured by training_set.sh.  Its size and
# SHA-256 are filled in afterwards (the worker checks them), past the
# trigger that keeps versions immutable.
psql -XqAt -v ON_ERROR_STOP=1 <<SQL >/dev/null || exit 1
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'), api_key => 'sk-bench');
SELECT llm_model_create('base', 'fake', 'learner', training_price => 3);
INSERT INTO llm.training_sets (name, version, query, examples, held_out, estimated_tokens, bytes, sha256,
							   created_by, login_role)
VALUES ('big', 1, 'bench', 0, 0, 0, 0, '', current_user, current_user);
INSERT INTO llm.training_examples (set_name, set_version, ord, example_key, held_out, line, tokens)
SELECT 'big', 1, g, g::text, false,
	   jsonb_build_object('messages', jsonb_build_array(
			jsonb_build_object('role', 'user', 'content', 'question ' || g || ' ' || repeat('lorem ipsum ', 160)),
			jsonb_build_object('role', 'assistant', 'content', 'answer ' || g || ' ' || repeat('dolor sit ', 190))))::text,
	   1000
  FROM generate_series(1, $EXAMPLES) g;
SET session_replication_role = replica;
UPDATE llm.training_sets s
   SET examples = x.n, estimated_tokens = x.tokens, bytes = x.bytes, sha256 = x.sha256
  FROM (SELECT count(*) AS n, sum(tokens) AS tokens, sum(octet_length(line) + 1) AS bytes,
			   encode(sha256(convert_to(string_agg(line || E'\n', '' ORDER BY ord), 'UTF8')), 'hex') AS sha256
		  FROM llm.training_examples WHERE set_name = 'big') x
 WHERE s.name = 'big';
SQL
bytes=$(psql -XqAt -c "SELECT bytes FROM llm.training_sets WHERE name = 'big'")

anon() { awk '/^RssAnon/ { print $2 }' "/proc/$1/status"; }	# kB
before=$(anon "$worker")
peak=$before
start=$(date +%s.%N)
psql -XqAt -v ON_ERROR_STOP=1 -c "SELECT llm_finetune_create('bench', 'base', 'big', suffix => 'never')" >/dev/null || exit 1
# sample the worker's memory until the file id is recorded
while :; do
	now=$(anon "$worker")
	[ "$now" -gt "$peak" ] && peak=$now
	if [ -n "$(psql -XqAt -c "SELECT training_file_id FROM llm.finetune_jobs WHERE name = 'bench'")" ]; then
		break
	fi
	awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { exit !(n - s > 300) }' && break
	sleep 0.02
done
end=$(date +%s.%N)
after=$peak
state=$(psql -XqAt -c "SELECT state || coalesce(' ' || error, '') FROM llm.finetune_jobs WHERE name = 'bench'")
[ -n "$(psql -XqAt -c "SELECT training_file_id FROM llm.finetune_jobs WHERE name = 'bench'")" ] ||
	{ echo "the upload did not finish: $state"; exit 1; }

# the worker's own account of the two steps (a LOG line per file)
steps=$(sed -n 's/.*wrote [0-9]* bytes in \([0-9.]*\) s, uploaded them as [^ ]* in \([0-9.]*\) s.*/\1 \2/p' \
	"$LLM_WORKDIR/postgres.log" | tail -n 1)
file="$LLM_WORKDIR/big.jsonl"
psql -XqAt -c "COPY (SELECT * FROM llm_training_jsonl('big')) TO STDOUT" >"$file"
curl_s=$(curl -s -o /dev/null -w '%{time_total}' -F purpose=fine-tune -F "file=@$file;filename=big.jsonl" \
	"http://127.0.0.1:$LLM_FAKE_PORT/v1/files")
awk -v b="$bytes" -v s="$start" -v e="$end" -v c="$curl_s" -v hb="$before" -v ha="$after" -v st="$state" \
	-v spool="${steps% *}" -v up="${steps#* }" 'BEGIN {
	w = e - s
	printf "training file: %.1f MB; the job is now: %s\n", b / 1048576, st
	printf "worker (job queued -> file id recorded: spooling the snapshot to a temporary file,\n"
	printf "        then the upload; the job seen within 100 ms): %.2f s (%.1f MB/s)\n", w, b / 1048576 / w
	printf "curl, the same bytes to the same fake:                   %.2f s (%.1f MB/s)\n", c, b / 1048576 / c
	printf "  of which writing the temporary file %.2f s, the upload itself %.2f s (%.1f MB/s)\n", spool, up, b / 1048576 / up
	printf "ratio of the uploads (curl time / worker upload time): %.2f   (target >= 0.8)\n", c / up
	printf "ratio end to end (curl time / worker time):            %.2f\n", c / w
	printf "worker private memory (RssAnon): %.1f MB, at most %.1f MB during the upload, +%.1f MB   (target < 32 MB)\n", hb / 1024, ha / 1024, (ha - hb) / 1024
}'
