#!/usr/bin/env bash
# CREATE EXTENSION and synchronous calls work in a cluster that does not
# preload llmext.  Starts its own small cluster; uses the running fake
# provider (LLM_FAKE_PORT).
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
fail() { echo "no_preload: $*" >&2; exit 1; }

LLM_PRELOAD=
LLM_PGPORT=$(llm_free_port $((LLM_PGPORT + 100)))
trap llm_stop_all EXIT
llm_start_cluster >/dev/null || fail "could not start a cluster"

preload=$(psql -XAtqc "SHOW shared_preload_libraries")
[ -z "$preload" ] || fail "shared_preload_libraries is '$preload'"
answer=$(psql -XAtq -v ON_ERROR_STOP=1 \
	-c "CREATE EXTENSION llmext" \
	-c "SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'))" \
	-c "SELECT llm_model_create('echo', 'fake', 'echo')" \
	-c "SELECT llm_complete('without preload', 'echo')" 2>&1 | tail -n 1)
[ "$answer" = "echo: without preload" ] || fail "got: $answer"
# without the worker, ledger rows are written in the caller's transaction, with a warning
out=$(psql -XAtq -c "SELECT llm_complete('ledger', 'echo')" -c "SELECT count(*) FROM llm.calls" 2>&1)
grep -q "WARNING:  llmext writes ledger rows and cache entries in the calling transaction" <<<"$out" ||
	fail "no warning about writing in the caller's transaction: $out"
[ "$(tail -n 1 <<<"$out")" = 2 ] || fail "expected 2 ledger rows: $out"
echo "no_preload: CREATE EXTENSION and llm_complete work without shared_preload_libraries"
