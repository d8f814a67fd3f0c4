#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian 12 machine:
#   installs the build dependencies (as root, or through sudo), builds with
#   warnings as errors, installs the extension, runs the unit tests of the
#   pure core, starts a throwaway cluster (shared_preload_libraries =
#   'llmext') and the fake provider, runs the pg_regress suites and the
#   process-level TAP tests (test/t/*.pl, each with nodes of its own), and
#   stops everything it started.
# The last line is "N passed, M failed"; the exit code is 0 only if M is 0.
set -uo pipefail

cd "$(dirname "$0")/.."
. test/lib/cluster.sh

bash test/install_deps.sh || exit 1

echo "== build"
make -s clean >/dev/null 2>&1
make -s WERROR=1 >/dev/null || { echo "build failed"; exit 1; }
if [ "$(id -u)" = 0 ]; then make -s install >/dev/null; else sudo make -s install >/dev/null; fi || {
	echo "make install failed"; exit 1; }

passed=0
failed=0
count() {					# count NAME EXIT_CODE
	if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "ok   $1"
	else failed=$((failed + 1)); echo "FAIL $1"; fi
}

echo "== layers (src/ folders use only themselves and the folders below)"
python3 test/check_layers.py
count "layers" $?

echo "== unit tests (pure core)"
make -s unit
count "unit tests" $?

echo "== fuzzing every parser of untrusted bytes (${FUZZ_SECONDS:-8} s per target)"
for target in $(bash test/fuzz/run.sh --list); do
	FUZZ_TARGETS=$target bash test/fuzz/run.sh
	count "$target" $?
done

echo "== fake provider self-test"
python3 test/fake_provider.py --self-test >/tmp/llmext-fake-selftest.log 2>&1
rc=$?
tail -n 1 /tmp/llmext-fake-selftest.log
count "fake provider self-test" $rc

trap llm_stop_all EXIT
llm_start_cluster "llmext.databases = 'postgres, llmext_regression'" || exit 1
createdb llmext_regression || exit 1
# the worker for a database that did not exist yet comes back within 5 s
for _ in $(seq 1 100); do
	[ "$(psql -XAtqc "SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'llmext worker' AND datname = 'llmext_regression'")" = 1 ] && break
	sleep 0.1
done
llm_start_fake --api-key sk-test-fake-0123456789 || exit 1

echo "== pg_regress"
# pg_regress writes results/ beside sql/; as root that is fine, the server
# (running as another user) only reads SQL from the connection.
make -s installcheck >/tmp/llmext-regress.log 2>&1
rc=$?
grep -E '^(ok|not ok|test |     |\s+[a-z_]+ +\.\.\.)' /tmp/llmext-regress.log | sed 's/^/  /'
[ $rc = 0 ] || { [ -f regression.diffs ] && head -n 200 regression.diffs; }
count "pg_regress suites" $rc

echo "== process-level tests (TAP: test/t/*.pl)"
# Each test starts its own nodes (PostgreSQL::Test::Cluster) and fake
# provider.  PostgreSQL refuses to run as root, so as root prove runs as the
# cluster's owner (llmext_pg), with its tmp_check/ in a directory of its own.
# runuser keeps the environment, so LLM_PG_ENV (test/sanitize.sh) reaches
# LlmextTest, which hands it to each node's server.
tap_dir=$(mktemp -d /tmp/llmext-tap.XXXXXX)
chmod 755 "$tap_dir"
tap_failed=0
if [ "$(id -u)" = 0 ]; then llm_ensure_owner; chown "$LLM_PG_USER" "$tap_dir"; fi
for t in test/t/*.pl; do
	[ -e "$t" ] || continue
	name=$(basename "$t" .pl)
	# one prove per file, so that each file counts once and keeps its logs
	llm_as_owner make -s prove_installcheck PROVE_TESTS="$t" TESTDIR="$tap_dir/$name" \
		>"$tap_dir/$name.out" 2>&1
	rc=$?
	grep -Ev '^(All tests successful|Result: PASS)' "$tap_dir/$name.out" | sed 's/^/  /'
	if [ $rc != 0 ]; then
		tap_failed=1
		tail -n 40 "$tap_dir/$name/tmp_check/log/regress_log_$name" 2>/dev/null | sed 's/^/  | /'
	fi
	count "$name" $rc
done
# the browser test's page and screenshot are artefacts, kept whatever happened
mkdir -p test/artifacts
cp "$tap_dir"/016_eval_html/tmp_check/eval_html/* test/artifacts/ 2>/dev/null &&
	echo "  (the evaluation page and its screenshot: test/artifacts/)"
if [ $tap_failed = 0 ]; then rm -rf "$tap_dir"; else echo "  (TAP logs kept in $tap_dir)"; fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
