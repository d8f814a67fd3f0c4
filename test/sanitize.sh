#!/usr/bin/env bash
# Runs the whole suite (test/run_all.sh: unit tests, fuzzers, pg_regress
# suites, TAP process tests) once with the extension built with
# AddressSanitizer and UndefinedBehaviorSanitizer, then the unit tests built
# the same way, and fails on any sanitizer report.  Too slow for every CI
# run; see docs/testing.md.
#
# How:
#  - PGXS adds COPT to both CFLAGS and LDFLAGS, so `COPT=-fsanitize=... make`
#    builds llmext.so against libasan/libubsan (run_all.sh's `make` sees COPT
#    from the environment).
#  - postgres itself is not instrumented: the ASan runtime must be loaded
#    first, so the server runs with LD_PRELOAD=<the compiler's libasan.so>.
#    test/lib/cluster.sh passes LLM_PG_ENV to pg_ctl (through runuser), so
#    only the server and pg_ctl get it, not psql, pg_regress or python; the
#    TAP tests' nodes (test/perl/LlmextTest.pm) get it the same way, on
#    start and restart only.
#    (Plus a small library defining swift_demangle: see below.)
#  - ASAN_OPTIONS: detect_leaks=0 (a backend's memory contexts are freed by
#    exiting: "leaks" by design), detect_odr_violation=0; every report goes
#    to a file under the log directory, one per process (log_path), which
#    the server's user can write.
#  - -fno-sanitize-recover=undefined: undefined behaviour stops the backend,
#    so it also shows up as a failing test.
#
# Usage: bash test/sanitize.sh            (as root, like run_all.sh)
#        SANITIZE_LOG_DIR=DIR bash test/sanitize.sh   keep the reports in DIR
# The last line is "sanitizers: clean" or "sanitizers: N report(s) in DIR".
set -uo pipefail

cd "$(dirname "$0")/.."
start=$(date +%s)

cc=$("${PG_CONFIG:-pg_config}" --cc)	# the compiler PGXS builds with
libasan=$($cc -print-file-name=libasan.so)
libasan=$(readlink -f "$libasan")
if [ ! -f "$libasan" ]; then
	echo "sanitize: no libasan.so for $cc" >&2
	exit 2
fi

logs=${SANITIZE_LOG_DIR:-$(mktemp -d /tmp/llmext-sanitize.XXXXXX)}
mkdir -p "$logs"
chmod 1777 "$logs"
rm -f "$logs"/asan.* "$logs"/ubsan.*

# The ASan runtime, preloaded into a program that is not instrumented,
# initialises itself on the first malloc, which here comes from a library
# constructor (libgpg-error's bindtextdomain, which holds glibc's
# _nl_state_lock).  Its init looks up swift_demangle with dlsym; the failure
# message goes through gettext, which takes the same lock again, and
# postgres hangs in its first bindtextdomain.  A swift_demangle for dlsym to
# find avoids the failure (it is only asked to demangle Swift names).
shim=$logs/swift_demangle_shim.so
printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
	'char *swift_demangle(const char *name, size_t len, char *out, size_t *outlen, uint32_t flags) { return NULL; }' |
	$cc -shared -fPIC -x c -o "$shim" - || exit 2
chmod 755 "$shim"

flags="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow -fno-omit-frame-pointer"
asan_options="detect_leaks=0:detect_odr_violation=0:log_path=$logs/asan"
ubsan_options="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"

echo "== sanitizers: $flags ($cc, LD_PRELOAD=$libasan)"
echo "== reports go to $logs"

# run_all.sh builds (make clean; make) with COPT from the environment and
# starts its cluster through cluster.sh, which hands LLM_PG_ENV to pg_ctl,
# and the TAP tests, whose nodes get it from LlmextTest.pm.
# The fuzzers are sanitized anyway: a short run each.
COPT=$flags \
	LLM_PG_ENV="LD_PRELOAD=$libasan:$shim ASAN_OPTIONS=$asan_options UBSAN_OPTIONS=$ubsan_options" \
	FUZZ_SECONDS=${FUZZ_SECONDS:-2} \
	bash test/run_all.sh
suite=$?

echo "== unit tests built with the sanitizers"
rm -f test/unit/run_unit
make -s unit CC="$cc $flags" >"$logs/unit.out" 2>&1 </dev/null
unit=$?
tail -n 3 "$logs/unit.out"
make -s clean >/dev/null 2>&1

reports=$(find "$logs" -name 'asan.*' -o -name 'ubsan.*' | sort)
n=$(echo -n "$reports" | grep -c . || true)
for f in $reports; do
	echo "---- $f"
	head -n 40 "$f"
done
grep -l 'runtime error\|AddressSanitizer\|LeakSanitizer' "$logs/unit.out" >/dev/null 2>&1 && n=$((n + 1))

echo "sanitize: suite exit $suite, unit tests exit $unit, $(($(date +%s) - start)) s"
if [ "$n" = 0 ] && [ "$suite" = 0 ] && [ "$unit" = 0 ]; then
	echo "sanitizers: clean"
	[ -z "${SANITIZE_LOG_DIR:-}" ] && rm -rf "$logs"
	exit 0
fi
echo "sanitizers: $n report(s) in $logs"
exit 1
