#!/usr/bin/env bash
# Benchmark: the queue's throughput through the background worker against
# the fake provider at a fixed latency, for each concurrency C, as achieved
# requests per second divided by the ideal C / latency.  Also the fake
# provider alone at the same concurrency (showing it is not the limit), and
# the worker's CPU time per request and resident memory before and after.
#   bash test/bench/queue_throughput.sh            (REQUESTS=10000 LATENCY_MS=50 CONCURRENCY="64 256")
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
REQUESTS=${REQUESTS:-10000}
LATENCY_MS=${LATENCY_MS:-50}
CONCURRENCY=${CONCURRENCY:-"64 256"}

trap llm_stop_all EXIT
llm_start_cluster "max_connections = 50" >/dev/null || exit 1
llm_start_fake --latency-ms "$LATENCY_MS" >/dev/null || exit 1
for _ in $(seq 1 100); do
	[ -n "$(psql -XAtqc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmext worker'")" ] && break
	sleep 0.1
done
psql -XqAt -v ON_ERROR_STOP=1 <<'SQL' >/dev/null || exit 1
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
SELECT llm_model_create('echo', 'fake', 'echo');
SQL

proc_cpu_ms() {	# utime + stime of a process, in ms
	awk '{ print ($14 + $15) * 1000 / '"$(getconf CLK_TCK)"' }' "/proc/$1/stat"
}
# all of the cluster's processes (the worker, WAL writer, autovacuum...), and
# the backends that have exited: the postmaster's reaped children's time
cluster_cpu_ms() {
	local postmaster total pid
	postmaster=$(head -n 1 "$LLM_PGDATA/postmaster.pid")
	total=$(awk '{ print int(($14 + $15 + $16 + $17) * 1000 / '"$(getconf CLK_TCK)"') }' "/proc/$postmaster/stat")
	for pid in $(pgrep -P "$postmaster"); do
		total=$((total + $(proc_cpu_ms "$pid" | cut -d. -f1)))
	done
	echo "$total"
}
proc_rss_kb() {
	awk '/^RssAnon/ { print $2 }' "/proc/$1/status"
}

for c in $CONCURRENCY; do
	psql -XqAt -c "ALTER SYSTEM SET llmext.worker_concurrency = $c" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 1
	worker=$(psql -XAtqc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmext worker'")
	cpu0=$(proc_cpu_ms "$worker")
	rss0=$(proc_rss_kb "$worker")
	all0=$(cluster_cpu_ms)
	fake0=$(proc_cpu_ms "$LLM_FAKE_PID")
	tag="bench-$c-$RANDOM"
	submit_s=$( { /usr/bin/time -f %e psql -XAtqc "SELECT count(llm_submit('item ' || g, 'echo', tag => '$tag')) FROM generate_series(1, $REQUESTS) g" >/dev/null; } 2>&1 )
	psql -XAtqc "SELECT llm_wait_batch('$tag', '30 minutes')" >/dev/null
	cpu1=$(proc_cpu_ms "$worker")
	rss1=$(proc_rss_kb "$worker")
	all1=$(cluster_cpu_ms)
	fake1=$(proc_cpu_ms "$LLM_FAKE_PID")
	psql -XAt -F ' ' -c "SELECT done, error, extract(epoch FROM finished - started) FROM llm.batches WHERE tag = '$tag'" |
	while read -r done errors seconds; do
		awk -v n="$done" -v e="$errors" -v s="$seconds" -v c="$c" -v l="$LATENCY_MS" \
			-v cpu="$((${cpu1%.*} - ${cpu0%.*}))" -v r0="$rss0" -v r1="$rss1" -v enq="$submit_s" \
			-v all="$((all1 - all0))" -v fake="$((${fake1%.*} - ${fake0%.*}))" -v cores="$(nproc)" 'BEGIN {
			ideal = c / (l / 1000)
			printf "C=%-4d %d done, %d errors in %.2f s: %.0f req/s, ideal %.0f, ratio %.2f\n", c, n, e, s, n / s, ideal, (n / s) / ideal
			printf "       enqueue %.2f s; worker CPU %.3f ms per request; worker private memory (RssAnon) %d kB -> %d kB\n", enq, cpu / n, r0, r1
			printf "       CPU per request: database %.3f ms (worker and backends), fake provider %.3f ms; at the ideal rate that is %.2f of %d cores\n", all / n, fake / n, (all + fake) / n * ideal / 1000, cores
		}'
	done
done

# the fake provider alone, at the highest concurrency: keep-alive clients in asyncio
c_max=$(echo "$CONCURRENCY" | tr ' ' '\n' | sort -n | tail -n 1)
python3 - "$LLM_FAKE_PORT" "$c_max" "$REQUESTS" "$LATENCY_MS" <<'PY'
import asyncio, json, sys, time
port, clients, total, latency = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "x"}]}).encode()
req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
       b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
left = total
async def client():
    global left
    r, w = await asyncio.open_connection("127.0.0.1", port)
    while left > 0:
        left -= 1
        w.write(req)
        head = await r.readuntil(b"\r\n\r\n")
        n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
        await r.readexactly(n)
    w.close()
async def main():
    t = time.monotonic()
    await asyncio.gather(*[client() for _ in range(clients)])
    s = time.monotonic() - t
    ideal = clients / (latency / 1000)
    print(f"fake provider alone, C={clients}: {total / s:.0f} req/s, ideal {ideal:.0f}, ratio {total / s / ideal:.2f}")
asyncio.run(main())
PY
