#!/usr/bin/env bash
# Benchmark: llm_embed_batch of N short texts ('ticket <g> about <word>')
# against the fake provider, cache off, for each fake latency in LATENCY_MS:
# inputs per second, the requests and inputs the fake received (its
# /_stats counters), the backend's peak memory (VmHWM of its
# /proc/<pid>/status, before and after), and the ratio to the fake alone: the
# same chunks of BATCH inputs posted straight to the fake's /v1/embeddings by
# CONCURRENCY keep-alive Python clients (asyncio, the answer read but not
# parsed), the most llmext could reach.
#   bash test/bench/embed_batch.sh      (N=100000 LATENCY_MS="0 20" CONCURRENCY=8 BATCH=100 STATEMENT=N)
# BATCH is the model's max_batch_inputs; STATEMENT the inputs per statement:
# N in one statement by default, or N / STATEMENT statements in one session.
# DIMENSIONS (unset: the fake's 32) is passed as the "dimensions" option: the
# fake's CPU per input grows with it, and it is what limits both at 32.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
N=${N:-100000}
LATENCY_MS=${LATENCY_MS:-"0 20"}
CONCURRENCY=${CONCURRENCY:-8}
BATCH=${BATCH:-100}
DIMENSIONS=${DIMENSIONS:-}
STATEMENT=${STATEMENT:-$N}
# options of each call, and the same "dimensions" in the fake alone's requests
OPTIONS='{"cache": "off"'${DIMENSIONS:+', "dimensions": '$DIMENSIONS}'}'

trap llm_stop_all EXIT
llm_start_cluster >/dev/null || exit 1
psql -XqAtc 'CREATE EXTENSION llmext' >/dev/null || exit 1

fake_stats() {	# embedding_requests embedding_inputs
	python3 -c 'import json, sys, urllib.request
s = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_stats"))
print(s["embedding_requests"], s["embedding_inputs"])' "$LLM_FAKE_PORT"
}

# one session: the statements of STATEMENT inputs each, \timing summed; the
# backend's VmHWM read by itself (pg_read_file of /proc/self/status)
embed_sql() {
	local lo=1 hi
	echo "SELECT 'hwm0', substring(pg_read_file('/proc/self/status') from 'VmHWM:\\s*(\\d+)');"
	echo "SELECT 'cpu0', (SELECT (f[12]::bigint + f[13]::bigint) * 1000 / $(getconf CLK_TCK) FROM string_to_array(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' ') f);"
	printf '%s\n' '\timing on'
	while [ "$lo" -le "$N" ]; do
		hi=$((lo + STATEMENT - 1))
		[ "$hi" -gt "$N" ] && hi=$N
		echo "SELECT 'rows', count(*), count(embedding), count(error) FROM llm_embed_batch(ARRAY(
	SELECT 'ticket ' || g || ' about ' || (ARRAY['billing', 'login', 'refund', 'shipping', 'password'])[g % 5 + 1]
	  FROM generate_series($lo, $hi) g), '$model', '$OPTIONS', concurrency => $CONCURRENCY);"
		lo=$((hi + 1))
	done
	printf '%s\n' '\timing off'
	echo "SELECT 'hwm1', substring(pg_read_file('/proc/self/status') from 'VmHWM:\\s*(\\d+)');"
	echo "SELECT 'cpu1', (SELECT (f[12]::bigint + f[13]::bigint) * 1000 / $(getconf CLK_TCK) FROM string_to_array(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' ') f);"
}

for latency in $LATENCY_MS; do
	# a fake per latency, on a port free now (other jobs may have taken the
	# first one meanwhile), with its provider and model
	[ -n "${LLM_FAKE_PID:-}" ] && { kill "$LLM_FAKE_PID"; wait "$LLM_FAKE_PID" 2>/dev/null; }
	LLM_FAKE_PORT=$(llm_free_port "$LLM_FAKE_PORT")
	llm_start_fake --latency-ms "$latency" >/dev/null || exit 1
	model=emb_$latency
	psql -XqAt -v ON_ERROR_STOP=1 <<SQL >/dev/null || exit 1
SELECT llm_provider_create('fake_$latency', 'http://127.0.0.1:$LLM_FAKE_PORT/v1');
SELECT llm_model_create('$model', 'fake_$latency', 'emb-main', use => 'embedding');
SELECT llm_model_set_limits('$model', '{"max_batch_inputs": $BATCH}');
SQL
	read -r req0 in0 < <(fake_stats)
	out=$(embed_sql | psql -XqAt -F ' ' -v ON_ERROR_STOP=1) || { echo "$out" >&2; exit 1; }
	read -r req1 in1 < <(fake_stats)
	summary=$(echo "$out" | awk -v n="$N" -v c="$CONCURRENCY" -v b="$BATCH" -v l="$latency" -v st="$STATEMENT" \
		-v req="$((req1 - req0))" -v inputs="$((in1 - in0))" '
		$1 == "hwm0" { hwm0 = $2 }
		$1 == "hwm1" { hwm1 = $2 }
		$1 == "cpu0" { cpu0 = $2 }
		$1 == "cpu1" { cpu1 = $2 }
		$1 == "rows" { rows += $2; embs += $3; errs += $4; stmts++ }
		/^Time: / { ms += $2 }
		END {
			printf "llm_embed_batch, latency %d ms: %d inputs (%d statements of up to %d), C=%d, %d a request: %.0f ms, %.0f inputs/s\n", l, n, stmts, st, c, b, ms, n / (ms / 1000)
			printf "       rows %d, embeddings %d, errors %d; the fake received %d requests, %d inputs\n", rows, embs, errs, req, inputs
			printf "       backend peak memory (VmHWM) %d kB before, %d kB after; backend CPU %d ms, %.1f us an input\n", hwm0, hwm1, cpu1 - cpu0, (cpu1 - cpu0) * 1000 / n
			print n / (ms / 1000)
		}')
	echo "$summary" | sed '$d'
	rate=$(echo "$summary" | tail -n 1)

	# the fake alone: the same texts in the same chunks at the same concurrency
	python3 - "$LLM_FAKE_PORT" "$CONCURRENCY" "$N" "$BATCH" "$latency" "$rate" "$DIMENSIONS" <<'PY'
import asyncio, json, sys, time
dims = {"dimensions": int(sys.argv[7])} if sys.argv[7] else {}
port, clients, n, batch, latency, db_rate = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                             int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]))
words = ["billing", "login", "refund", "shipping", "password"]
texts = [f"ticket {g} about {words[g % 5]}" for g in range(1, n + 1)]
reqs = []
for i in range(0, n, batch):
    body = json.dumps({"model": "emb-main", "input": texts[i:i + batch],
                       "encoding_format": "float"} | dims).encode()
    reqs.append(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
todo = iter(reqs)
async def client():
    r, w = await asyncio.open_connection("127.0.0.1", port)
    for req in todo:
        w.write(req)
        head = await r.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"fake answered {head.splitlines()[0]!r}")
        size = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
        await r.readexactly(size)
    w.close()
async def main():
    t = time.monotonic()
    await asyncio.gather(*[client() for _ in range(clients)])
    s = time.monotonic() - t
    bound = f", latency's bound {clients * batch / (latency / 1000):.0f}" if latency > 0 else ""
    print(f"fake alone, latency {latency:.0f} ms: {len(reqs)} requests in {s * 1000:.0f} ms, "
          f"{n / s:.0f} inputs/s{bound}; llm_embed_batch / fake alone: {db_rate / (n / s):.2f}")
asyncio.run(main())
PY
done
