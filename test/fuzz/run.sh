#!/usr/bin/env bash
# Fuzzes every parser of untrusted bytes with libFuzzer, AddressSanitizer
# (leaks included) and UndefinedBehaviorSanitizer, one target after another:
#   fuzz_template        templates and JSON Schema (src/core/template.c, src/core/jsonschema*.c)
#   fuzz_chat_response   a provider's 2xx body (openai_ and anthropic_parse_chat_response)
#   fuzz_error_body      a provider's error body (openai_error_message), redacted
#   fuzz_cachekey        the canonical request, i.e. the cache key (src/core/cachekey.c)
#   fuzz_score           the evaluation scorers: scorer JSON, output, expected (src/core/score*.c)
#   fuzz_batch_line      a Batch API output line, batch object and page (src/providers/openai_batch.c)
# Each target is test/fuzz/<target>.c; its seeds are test/fuzz/corpus/<target>/.
#
# Debian 12 packages it needs (clang's -fsanitize=fuzzer runtime,
# libclang_rt.fuzzer-x86_64.a, is in libclang-rt-14-dev, which clang-14
# only recommends):
#   apt-get install -y clang-14 libclang-rt-14-dev libcjson-dev pkg-config
#
# Usage:
#   test/fuzz/run.sh                        every target, FUZZ_SECONDS each (default 8)
#   test/fuzz/run.sh --list                 print the targets' names
#   FUZZ_TARGETS="fuzz_cachekey fuzz_error_body" test/fuzz/run.sh   only these
#   FUZZ_SECONDS=3600 test/fuzz/run.sh      an hour per target
#   FUZZ_RUNS=10000000 test/fuzz/run.sh     ten million executions per target
#                                           (no time limit unless FUZZ_SECONDS is set too)
#   FUZZ_CORPUS=DIR                         keep each target's corpus in DIR/<target> across runs
#   FUZZ_CFLAGS=...                         extra compiler flags, e.g.
#                                           -fno-sanitize=float-cast-overflow
#   FUZZ_LOG_DIR=DIR                        keep each target's libFuzzer log as DIR/<target>.log
#   test/fuzz/run.sh FILE...                replay inputs, e.g. a saved crash, through the
#                                           target named by the file (artifacts are named
#                                           <target>-crash-...), FUZZ_TARGETS, or else all
#
# A crash, leak, UB report or timeout exits non-zero and leaves the input in
# test/fuzz/artifacts/<target>-... (replay it as above).  New corpus entries
# go to a temporary directory that is removed at exit (unless FUZZ_CORPUS
# names one), so nothing in the tree changes unless something breaks.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
artifacts=$here/artifacts
all_targets="fuzz_template fuzz_chat_response fuzz_error_body fuzz_cachekey fuzz_score fuzz_batch_line"

# The sources each target links, besides its own file.
# Every target links the whole pure tree (src/core, src/providers): small,
# and a target never misses a helper that a parser starts to use.
sources() {
	case $1 in
	fuzz_template | fuzz_chat_response | fuzz_error_body | fuzz_cachekey | fuzz_score | fuzz_batch_line)
		(cd "$root/src" && echo core/*.c providers/*.c) ;;
	*) return 1 ;;
	esac
}

dictionary() {
	case $1 in
	fuzz_template) echo "$here/template.dict" ;;
	*) echo "$here/json.dict" ;;
	esac
}

if [ "${1:-}" = --list ]; then
	echo $all_targets
	exit 0
fi

targets=${FUZZ_TARGETS:-}
if [ -z "$targets" ] && [ $# -gt 0 ]; then
	# replaying: the target a saved input names, when they all name the same one
	for f in "$@"; do
		t=$(basename "$f" | sed -n 's/^\(fuzz_[a-z_]*\)-.*/\1/p')
		[ -n "$t" ] || t=$(basename "$(dirname "$f")")
		sources "$t" >/dev/null 2>&1 || { targets=; break; }
		if [ -z "$targets" ]; then targets=$t
		elif [ "$targets" != "$t" ]; then targets=; break; fi
	done
fi
targets=${targets:-$all_targets}
for t in $targets; do
	sources "$t" >/dev/null || { echo "run.sh: unknown target $t (known: $all_targets)" >&2; exit 2; }
done

cc=${FUZZ_CC:-}
if [ -z "$cc" ]; then
	for candidate in clang clang-14; do
		if command -v "$candidate" >/dev/null; then
			cc=$candidate
			break
		fi
	done
fi
if [ -z "$cc" ]; then
	echo "fuzz: no clang (apt-get install -y clang-14 libclang-rt-14-dev libcjson-dev pkg-config)" >&2
	exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build() {					# build TARGET: prints the binary's path
	local bin=$work/$1 srcs=()
	for s in $(sources "$1"); do srcs+=("$root/src/$s"); done
	# shellcheck disable=SC2046,SC2086  # several words on purpose
	"$cc" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-fno-omit-frame-pointer -g -O1 -std=gnu11 -Wall -Wextra -Wno-unused-parameter \
		${FUZZ_CFLAGS:-} -I"$root/src" $(pkg-config --cflags libcjson) \
		-o "$bin" "$here/$1.c" "${srcs[@]}" \
		$(pkg-config --libs libcjson) -lm >&2 || return 1
	echo "$bin"
}

export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

if [ $# -gt 0 ]; then
	for t in $targets; do
		bin=$(build "$t") || { echo "$t: build failed"; exit 1; }
		"$bin" -runs=1 "$@"
		echo "$t: replayed $# input(s) without a failure"
	done
	exit 0
fi

mkdir -p "$artifacts"
failed=0
for t in $targets; do
	bin=$(build "$t") || { echo "$t: build failed"; failed=1; continue; }
	corpus=$work/corpus/$t
	[ -n "${FUZZ_CORPUS:-}" ] && corpus=$FUZZ_CORPUS/$t
	mkdir -p "$corpus"
	log=$work/$t.log
	[ -n "${FUZZ_LOG_DIR:-}" ] && { mkdir -p "$FUZZ_LOG_DIR"; log=$FUZZ_LOG_DIR/$t.log; }
	limits=()
	if [ -n "${FUZZ_RUNS:-}" ]; then
		limits+=(-runs="$FUZZ_RUNS")
		[ -n "${FUZZ_SECONDS:-}" ] && limits+=(-max_total_time="$FUZZ_SECONDS")
		what="${FUZZ_RUNS} runs"
	else
		limits+=(-max_total_time="${FUZZ_SECONDS:-8}")
		what="${FUZZ_SECONDS:-8}s"
	fi
	status=0
	start=$(date +%s)
	# The seeds are read from the tree, new inputs written to $corpus only.
	"$bin" "$corpus" "$here/corpus/$t" "${limits[@]}" \
		-max_len=4096 -timeout=10 -rss_limit_mb=2048 \
		-dict="$(dictionary "$t")" -artifact_prefix="$artifacts/$t-" \
		-print_final_stats=1 >"$log" 2>&1 || status=$?
	elapsed=$(($(date +%s) - start))

	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	corp=$(grep -o 'corp: [0-9]*/[0-9a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)
	if [ "$status" != 0 ]; then
		# the report itself, not libFuzzer's progress lines before it
		awk '/runtime error|ERROR: |deadly signal|^==[0-9]+==/ { p = 1 } p' "$log" | head -n 40 >&2
		echo "$t: FAILED (exit $status) within $what; input saved in $artifacts/ (replay: test/fuzz/run.sh FILE)"
		failed=1
		continue
	fi
	echo "$t: ok, ${runs:-?} runs in ${elapsed}s (${speed:-?}/s), coverage ${cov:-?} edges, ${ft:-?} features, corpus ${corp:-?}"
done
exit $failed
