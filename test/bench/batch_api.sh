#!/usr/bin/env bash
# Benchmark: queued requests in batch mode (the provider's Batch API) against
# the fake provider, for N = SMALL and N = LARGE requests submitted under one
# tag in one statement (prompts of PROMPT_BYTES bytes, cache off, so every
# request is a line of the input file).  Each N gets a fresh cluster and fake
# (llmext.batch_api_wait 1 s, llmext.batch_api_poll_interval 200 ms; the fake
# completes a batch at its first poll) and a warm-up batch of WARMUP
# requests first, so both start from the same warm worker.  While the batch
# runs, one psql session samples every 100 ms the worker's memory
# (/proc/<pid>/status: RssAnon, its private memory; VmRSS, which also counts
# the shared buffers and shared memory it touched), the CPU time of the
# worker and of the fake (/proc/<pid>/stat) and the provider batch's row; the
# phases come from the worker's log lines (log_line_prefix %n: Unix time) and
# that row.  It prints, measured in this one run (no timed assertions):
#   - per N: the phases (wall time, worker and fake CPU, worker peak RssAnon),
#     the time until llm_flush has the ledger rows, requests per second end
#     to end, the JSONL uploaded (input_bytes), the fake's counters
#     (batches_created, batch_lines), and the checks: every request done
#     exactly once (states, attempts), N ledger rows of source 'batch_api';
#   - the ratio of the worker's peak RssAnon growth at LARGE to that at SMALL
#     (flat: near 1, not LARGE / SMALL), and the growth at LARGE against the
#     size of its input file (streamed: far below it).
#   bash test/bench/batch_api.sh        (SMALL=5000 LARGE=50000 WARMUP=1000 PROMPT_BYTES=100)
# ANALYZE=0: no statistics on llm.requests (by default an ANALYZE runs in the
# submitting transaction, as autovacuum would before a 1 min batch_api_wait);
# QUEUE_ENTRIES=65536: llmext.queue_entries (default 4096); CONTEXTS=1: the
# worker logs its memory contexts at 90 % answered, and the report shows the
# largest; BENCH_KEEP=1 keeps the samples and log lines (the directory is
# printed).  N above llmext.batch_api_max_requests (50,000) makes more than
# one provider batch: the phases are then those of the first.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
SMALL=${SMALL:-5000}
LARGE=${LARGE:-50000}
WARMUP=${WARMUP:-1000}
PROMPT_BYTES=${PROMPT_BYTES:-100}
WAIT_MS=1000	# llmext.batch_api_wait
POLL_MS=200		# llmext.batch_api_poll_interval
CLK=$(getconf CLK_TCK)
OPTIONS='{"batch_api": true, "cache": "off"}'
OUT=$(mktemp -d /tmp/llmext-bench-batch.XXXXXX)
SAMPLER_PID=
CONTEXTS_PID=

stop_sampler() {
	if [ -n "$SAMPLER_PID" ]; then
		kill "$SAMPLER_PID" 2>/dev/null
		wait "$SAMPLER_PID" 2>/dev/null
		SAMPLER_PID=
	fi
}
# BENCH_KEEP=1 keeps the samples, log lines and reports in $OUT (printed)
trap 'stop_sampler; [ -n "$CONTEXTS_PID" ] && kill "$CONTEXTS_PID" 2>/dev/null; llm_stop_all; if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $OUT"; else rm -rf "$OUT"; fi' EXIT

q() { psql -XAtq -F '|' -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }
fake_stats() {	# batches_created batch_lines
	python3 -c 'import json, sys, urllib.request
s = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_stats"))
print(s["batches_created"], s["batch_lines"])' "$LLM_FAKE_PORT"
}
submit() {	# tag n [analyze]: one statement, and ANALYZE in its transaction
	q <<SQL >/dev/null
BEGIN;
SELECT count(llm_submit(rpad('question ' || g || ': ', $PROMPT_BYTES, 'lorem ipsum dolor sit amet '),
						'echo', options => '$OPTIONS', tag => '$1'))
  FROM generate_series(1, $2) g;
${3:+ANALYZE llm.requests;}
COMMIT;
SQL
}

# run_one N: a fresh cluster and fake, a warm-up, then N requests measured;
# prints its report and leaves it in OUT/N.report (its last line: SUMMARY N
# RssAnon-growth VmRSS-growth JSONL-bytes seconds write-growth answers-growth,
# in kB)
run_one() {
	local n=$1 tag worker last t0 t1 t2 t3 c2 c3 hwm0 hwm1 rss0 anon0 status first bytes analyzed \
		calls0 calls bc0 bc1 bl0 bl1 states attempts_min attempts_max joined distinct_req
	llm_stop_all
	LLM_PGPORT=$(llm_free_port "$LLM_PGPORT")
	LLM_FAKE_PORT=$(llm_free_port "$LLM_FAKE_PORT")
	llm_start_cluster "log_line_prefix = '%n [%p] '" "log_autovacuum_min_duration = 0" \
		"llmext.batch_api_wait = '${WAIT_MS}ms'" "llmext.batch_api_poll_interval = '${POLL_MS}ms'" \
		${QUEUE_ENTRIES:+"llmext.queue_entries = $QUEUE_ENTRIES"} >/dev/null || exit 1
	llm_start_fake >/dev/null || exit 1
	for _ in $(seq 1 100); do
		worker=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmext worker'")
		[ -n "$worker" ] && break
		sleep 0.1
	done
	[ -n "$worker" ] || { echo "no llmext worker" >&2; exit 1; }
	q <<SQL >/dev/null || exit 1
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', 'http://127.0.0.1:$LLM_FAKE_PORT/v1');
SELECT llm_model_create('echo', 'fake', 'echo');
SQL
	# the same code paths once, so that both sizes start from a warm worker
	submit warmup "$WARMUP" || exit 1
	q -c "SELECT llm_wait_batch('warmup', '10 minutes')" >/dev/null
	[ "$(q -c "SELECT done FROM llm.batches WHERE tag = 'warmup'")" = "$WARMUP" ] ||
		{ echo "the warm-up did not finish:" >&2; q -c "SELECT * FROM llm.batches" >&2; exit 1; }
	q -c "SELECT llm_flush()" >/dev/null
	sleep 1
	last=$(q -c "SELECT coalesce(max(id), 0) FROM llm.provider_batches")
	calls0=$(q -c "SELECT count(*) FROM llm.calls WHERE source = 'batch_api'")
	read -r bc0 bl0 < <(fake_stats)
	status=$(q -c "SELECT pg_read_file('/proc/$worker/status')")
	rss0=$(echo "$status" | awk '/^VmRSS/ { print $2 }')
	anon0=$(echo "$status" | awk '/^RssAnon/ { print $2 }')
	hwm0=$(echo "$status" | awk '/^VmHWM/ { print $2 }')

	# the sampler: one session, a row every 100 ms until stopped (psql
	# itself in the background, not a subshell, so that its pid is $!)
	psql -XAtq -F '|' >"$OUT/$n.samples" 2>"$OUT/$n.sampler.err" <<SQL &
SELECT round(extract(epoch FROM clock_timestamp())::numeric, 3),
	   substring(s FROM 'RssAnon:\s*(\d+)'), substring(s FROM 'VmRSS:\s*(\d+)'),
	   (SELECT f[12]::bigint + f[13]::bigint
		  FROM string_to_array(split_part(pg_read_file('/proc/$worker/stat'), ') ', 2), ' ') f),
	   (SELECT f[12]::bigint + f[13]::bigint
		  FROM string_to_array(split_part(pg_read_file('/proc/$LLM_FAKE_PID/stat'), ') ', 2), ' ') f),
	   coalesce(b.state, '-'), coalesce(b.answered, 0),
	   coalesce(round(extract(epoch FROM b.updated_at)::numeric, 3), 0)
  FROM pg_read_file('/proc/$worker/status') s
  LEFT JOIN LATERAL (SELECT state, answered, updated_at FROM llm.provider_batches
					  WHERE id > $last ORDER BY id LIMIT 1) b ON true
\watch 0.1
SQL
	SAMPLER_PID=$!
	sleep 0.5

	tag="bench-$n"
	t0=$(now)
	# ANALYZE=1 (the default): statistics that know the rows just queued, as
	# autovacuum takes them within its naptime (1 min, also the default
	# llmext.batch_api_wait); in the submitting transaction, so that they are
	# there before the worker collects the rows.  ANALYZE=0: none at all (the
	# cluster is younger than autovacuum's first look)
	submit "$tag" "$n" "$([ "${ANALYZE:-1}" = 1 ] && echo analyze)" || exit 1
	t1=$(now)
	# CONTEXTS=1: the worker logs its memory contexts once 90 % are answered
	if [ -n "${CONTEXTS:-}" ]; then
		(
			while [ "$(q -c "SELECT coalesce(max(answered), 0) >= $n * 0.9 FROM llm.provider_batches
							  WHERE id > $last")" != t ]; do
				sleep 0.1
			done
			q -c "SELECT pg_log_backend_memory_contexts($worker)" >/dev/null
		) &
		CONTEXTS_PID=$!
	fi
	q -c "SELECT llm_wait_batch('$tag', '60 minutes')" >/dev/null
	t2=$(now)
	sleep 0.3
	stop_sampler
	[ -n "$CONTEXTS_PID" ] && { kill "$CONTEXTS_PID" 2>/dev/null; wait "$CONTEXTS_PID" 2>/dev/null; CONTEXTS_PID=; }
	hwm1=$(q -c "SELECT substring(pg_read_file('/proc/$worker/status') FROM 'VmHWM:\s*(\d+)')")
	read -r bc1 bl1 < <(fake_stats)

	# the ledger: its rows are written by the worker after the answers
	c2=$(awk '{ print $14 + $15 }' "/proc/$worker/stat")
	q -c "SELECT llm_flush('300 seconds')" >/dev/null
	t3=$(now)
	c3=$(awk '{ print $14 + $15 }' "/proc/$worker/stat")
	# checks: each request done once, one ledger row each
	states=$(q -c "SELECT string_agg(state || ' ' || c, ', ' ORDER BY state) FROM
					 (SELECT state, count(*) c FROM llm.requests WHERE tag = '$tag' GROUP BY state) x")
	read -r attempts_min attempts_max < <(q -F ' ' -c "SELECT min(attempts), max(attempts)
		FROM llm.requests WHERE tag = '$tag'")
	calls=$(( $(q -c "SELECT count(*) FROM llm.calls WHERE source = 'batch_api'") - calls0 ))
	read -r joined distinct_req < <(q -F ' ' -c "SELECT count(*), count(DISTINCT r.id)
		FROM llm.requests r JOIN llm.calls c ON c.entry_id::text = r.response ->> 'entry_id'
	   WHERE r.tag = '$tag' AND c.source = 'batch_api'")
	# the batches of this run: id, lines, bytes, collected at (created_at)
	q -F ' ' -c "SELECT id, requests, input_bytes, round(extract(epoch FROM created_at)::numeric, 3), state
				   FROM llm.provider_batches WHERE id > $last ORDER BY id" >"$OUT/$n.batches"
	first=$(awk 'NR == 1 { print $1 }' "$OUT/$n.batches")
	bytes=$(awk '{ b += $3 } END { print b + 0 }' "$OUT/$n.batches")
	grep -a "llmext provider batch ${first}[: ]" "$LLM_WORKDIR/postgres.log" >"$OUT/$n.log"
	# anything the worker complained about meanwhile
	grep -aE "ERROR|WARNING|FATAL" "$LLM_WORKDIR/postgres.log" | tail -n 5 >"$OUT/$n.errors"
	# when autovacuum analyzed llm.requests (the plans of the chunk queries follow its statistics)
	analyzed=$(awk -v t0="$t0" '/automatic analyze of table ".*llm.requests"/ && $1 >= t0 - 5 {
		printf "%s%+.1f s", sep, $1 - t0; sep = ", " }' "$LLM_WORKDIR/postgres.log")
	if [ -n "${CONTEXTS:-}" ]; then
		grep -a "TopMemoryContext:\|Grand total:\|more child contexts\|provider batch answers:" \
			"$LLM_WORKDIR/postgres.log" | tail -n 5 | sed 's/^.*LOG: *//' >"$OUT/$n.contexts"
	fi

	awk -v n="$n" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v clk="$CLK" -v anon0="$anon0" -v rss0="$rss0" \
		-v hwm0="$hwm0" -v hwm1="$hwm1" -v bytes="$bytes" -v nb="$(wc -l <"$OUT/$n.batches")" \
		-v collect0="$(awk 'NR == 1 { print $4 }' "$OUT/$n.batches")" \
		-v bc="$((bc1 - bc0))" -v bl="$((bl1 - bl0))" -v states="$states" -v amin="$attempts_min" \
		-v amax="$attempts_max" -v calls="$calls" -v joined="$joined" -v dreq="$distinct_req" \
		-v wait_ms="$WAIT_MS" -v poll_ms="$POLL_MS" -v logf="$OUT/$n.log" -v t3="$t3" \
		-v flush_cpu="$((c3 - c2))" -v analyzed="${analyzed:-none}" -v analyze="$([ "${ANALYZE:-1}" = 1 ] && echo 1)" -F '|' '
	function at(t, col,    i, v) {	# a sampled column at time t (the last sample at or before it)
		v = S[1, col]
		for (i = 1; i <= ns; i++) { if (S[i, 1] > t) break; v = S[i, col] }
		return v
	}
	function peak(a, b, col,    i, m) {	# the most at a, or sampled from a to b
		m = at(a, col)
		for (i = 1; i <= ns; i++) if (S[i, 1] >= a && S[i, 1] <= b && S[i, col] > m) m = S[i, col]
		return m
	}
	function phase(name, a, b) {
		printf "    %-48s %6.2f s  worker CPU %5.2f s  fake CPU %5.2f s  worker RssAnon <= %5.1f MB\n",
			name, b - a, (at(b, 4) - at(a, 4)) / clk, (at(b, 5) - at(a, 5)) / clk, peak(a, b, 2) / 1024
	}
	{ ns++; for (i = 1; i <= 8; i++) S[ns, i] = $i }
	# the poll that saw the batch completed put it in state finishing: at
	# updated_at while nothing is answered yet, else between two samples
	$6 == "submitted" { last_submitted = $1 }
	$6 == "finishing" && !fin { fin = ($7 == 0 && $8 > 0) ? $8 : (last_submitted ? (last_submitted + $1) / 2 : $1) }
	END {
		while ((getline line < logf) > 0) {
			split(line, w, " ")
			if (line ~ /collecting requests/) tcol = w[1]
			if (line ~ /wrote [0-9]+ requests/) {
				tup = w[1]
				match(line, /in [0-9.]+ s, uploaded/); wr = substr(line, RSTART + 3, RLENGTH - 16)
				match(line, /in [0-9.]+ s$/); upl = substr(line, RSTART + 3, RLENGTH - 5)
			}
			if (line ~ /: created /) tcre = w[1]
			if (line ~ / done/) tdone = w[1]
		}
		if (!tdone) { print "N=" n ": the provider batch never logged done"; exit 1 }
		if (!fin) fin = tdone	# never sampled in state finishing
		growth = peak(t0, t2, 2) - anon0
		gwrite = peak(tcol, tup, 2) - anon0
		ganswers = peak(fin, tdone, 2) - anon0
		rgrowth = peak(t0, t2, 3) - rss0
		printf "N=%d: %d requests submitted, %d provider batch(es); checks: %s; attempts %d..%d; ledger rows %d (source batch_api), %d joined to %d distinct requests; the fake: %d batch(es) created, %d lines answered\n",
			n, n, nb, states, amin, amax, calls, joined, dreq, bc, bl
		printf "  JSONL uploaded: %.1f MB (%.0f bytes a line)\n", bytes / 1048576, bytes / n
		printf "  phases (the first provider batch):\n"
		phase(analyze ? "submitting (one statement) and ANALYZE" : "submitting (one statement)", t0, t1)
		phase("waiting for the collect (batch_api_wait " wait_ms " ms)", t1, collect0)
		phase("collecting (rows to running)", collect0, tcol)
		phase("writing the JSONL (" wr " s logged)", tcol, tup - upl)
		phase("uploading (" upl " s logged)", tup - upl, tup)
		phase("creating (the fake reads the file)", tup, tcre)
		phase("poll interval + the fake answering at its poll", tcre, fin)
		phase("downloading, reading and writing the answers", fin, tdone)
		phase("until llm_wait_batch returned", tdone, t2)
		printf "    %-48s %6.2f s  worker CPU %5.2f s (llm_flush, after llm_wait_batch)\n", "the ledger rows written", t3 - t2, flush_cpu / clk
		printf "  autovacuum analyzed llm.requests at (from the submit): %s\n", analyzed
		printf "  end to end: %.2f s, %.0f requests/s (submit to done); the worker'"'"'s phases (collect, write, upload, download and answers): %.2f s, %.0f requests/s\n",
			tdone - t0, n / (tdone - t0), (tup - collect0) + (tdone - fin), n / ((tup - collect0) + (tdone - fin))
		printf "  worker memory: RssAnon %.1f MB before, peak +%.1f MB (writing and uploading the JSONL +%.1f MB, the answers +%.1f MB); VmRSS %.1f MB before, peak +%.1f MB; VmHWM %.1f -> %.1f MB\n",
			anon0 / 1024, growth / 1024, gwrite / 1024, ganswers / 1024, rss0 / 1024, rgrowth / 1024, hwm0 / 1024, hwm1 / 1024
		printf "SUMMARY %d %d %d %d %.3f %d %d\n", n, growth, rgrowth, bytes, tdone - t0, gwrite, ganswers
	}' "$OUT/$n.samples" | tee "$OUT/$n.report" | grep -v '^SUMMARY'
	[ -s "$OUT/$n.errors" ] && { echo "  the server log's last errors:"; sed 's/^/    /' "$OUT/$n.errors"; }
	[ -s "$OUT/$n.contexts" ] && { echo "  the worker's memory contexts at 90 % answered:"; sed 's/^/    /' "$OUT/$n.contexts"; }
	[ -s "$OUT/$n.sampler.err" ] && { echo "  sampler:"; sed 's/^/    /' "$OUT/$n.sampler.err" | head -n 5; }
}

run_one "$SMALL"
run_one "$LARGE"
read -r _ _ gs rs _ ts ws as < <(grep '^SUMMARY' "$OUT/$SMALL.report")
read -r _ _ gl rl bl tl wl al < <(grep '^SUMMARY' "$OUT/$LARGE.report")
echo "--- statistics: $([ "${ANALYZE:-1}" = 1 ] && echo "ANALYZE in the submitting transaction" || echo "none (ANALYZE=0)")"
awk -v s="$SMALL" -v l="$LARGE" -v gs="$gs" -v gl="$gl" -v rs="$rs" -v rl="$rl" -v bl="$bl" -v ts="$ts" -v tl="$tl" \
	-v ws="$ws" -v wl="$wl" -v as="$as" -v al="$al" 'BEGIN {
	printf "ratio of the worker'"'"'s peak RssAnon growth, N=%d / N=%d: %.2f (+%.1f MB / +%.1f MB; flat is 1, proportional %.0f)\n",
		l, s, gl / (gs > 0 ? gs : 1), gl / 1024, gs / 1024, l / s
	printf "ratio of the worker'"'"'s peak VmRSS growth,   N=%d / N=%d: %.2f (+%.1f MB / +%.1f MB)\n",
		l, s, rl / (rs > 0 ? rs : 1), rl / 1024, rs / 1024
	printf "N=%d: the JSONL is %.1f MB, the worker grew by %.1f MB: %.2f of the file (streamed: far below 1)\n",
		l, bl / 1048576, gl / 1024, gl / (bl / 1024)
	printf "  of which writing and uploading the JSONL: +%.1f MB at N=%d, +%.1f MB at N=%d; the answers: +%.1f MB at N=%d, +%.1f MB at N=%d\n",
		ws / 1024, s, wl / 1024, l, as / 1024, s, al / 1024, l
	printf "requests/s end to end: %.0f at N=%d, %.0f at N=%d (ratio %.2f)\n", s / ts, s, l / tl, l, (l / tl) / (s / ts)
}'
