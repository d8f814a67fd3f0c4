#!/usr/bin/env bash
# Fuzzes the template renderer and the JSON Schema validator (src/core/template.c,
# src/core/jsonschema*.c) with libFuzzer, AddressSanitizer (leaks included) and
# UndefinedBehaviorSanitizer.
#
# Debian 12 packages it needs (clang's -fsanitize=fuzzer runtime,
# libclang_rt.fuzzer-x86_64.a, is in libclang-rt-14-dev, which clang-14
# only recommends):
#   apt-get install -y clang-14 libclang-rt-14-dev libcjson-dev pkg-config
#
# Usage:
#   test/fuzz/run.sh                     fuzz for 20 seconds
#   FUZZ_SECONDS=3600 test/fuzz/run.sh   fuzz for an hour (or as long as you like)
#   test/fuzz/run.sh FILE...             replay inputs, e.g. a saved crash
#   FUZZ_CORPUS=DIR                      keep the corpus in DIR across runs
#
# A crash, leak, UB report or timeout exits non-zero and leaves the input in
# test/fuzz/artifacts/ (replay it as above).  New corpus entries go to a
# temporary directory that is removed at exit (unless FUZZ_CORPUS names
# one); the seeds are written there too, so nothing in the tree changes
# unless something breaks.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${FUZZ_SECONDS:-20}
artifacts=$here/artifacts

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
	echo "fuzz_template: no clang (apt-get install -y clang-14 libclang-rt-14-dev libcjson-dev pkg-config)" >&2
	exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin=$work/fuzz_template

# shellcheck disable=SC2046  # pkg-config prints several words on purpose
"$cc" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer -g -O1 -std=gnu11 -Wall -Wextra -Wno-unused-parameter \
	-I"$root/src" $(pkg-config --cflags libcjson) \
	-o "$bin" "$here/fuzz_template.c" \
	"$root/src/core/template.c" "$root/src/core/jsonschema.c" "$root/src/core/jsonschema_check.c" \
	"$root/src/core/jsonschema_common.c" "$root/src/core/request.c" \
	$(pkg-config --libs libcjson)

export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

if [ $# -gt 0 ]; then
	"$bin" -runs=1 "$@"
	echo "fuzz_template: replayed $# input(s) without a failure"
	exit 0
fi

# Seeds: template NUL vars, a template alone (default vars), and schemas.
seeds=$work/seeds
corpus=${FUZZ_CORPUS:-$work/corpus}
mkdir -p "$seeds" "$corpus" "$artifacts"
printf 'Hello {{name}}!' >"$seeds/plain"
printf '{{#items}}\n- {{name}} ({{#ok}}ok{{/ok}}{{^ok}}no{{/ok}}) {{n}}\n{{/items}}\n{{user.address.city}} {{! c }} \\{{x}}' >"$seeds/sections"
printf '{{#list}}{{.}},{{/list}}{{^empty}}none{{/empty}}{{#o}}{{k}}{{/o}}\0{"list":[1,"a",null,{"b":2}],"empty":[],"o":{"k":"v"}}' >"$seeds/with_vars"
printf '{{#a}}{{#a}}{{#a}}{{.}}{{/a}}{{/a}}{{/a}}\0{"a":[1,2,3,4,5,6,7,8,9,10]}' >"$seeds/nested"
printf '{{#a}}\n{{/b}}{{>p}}{{{x}}}{{' >"$seeds/errors"
printf '{"type":"object","required":["name"],"additionalProperties":false,"properties":{"name":{"type":"string","minLength":1,"maxLength":10},"n":{"type":"integer","minimum":0,"maximum":100},"items":{"type":"array","maxItems":5,"items":{"$ref":"#/$defs/item"}}},"$defs":{"item":{"anyOf":[{"type":"object","properties":{"name":{"enum":["x","y"]}}},{"type":"null"}]}}}' >"$seeds/schema"
printf '{"oneOf":[{"type":"integer"},{"type":"number"}],"allOf":[{"const":1}]}\0{"oneOf":[{"$ref":"#/definitions/a"}],"definitions":{"a":{"$ref":"#/definitions/a"}}}' >"$seeds/schema_pair"
printf '{"type":"array","minItems":1,"maxItems":3,"items":{"type":"object","required":["a"],"additionalProperties":{"type":"string"},"properties":{"a":{"type":["integer","boolean","null"]}}}}\0[{"a":1},{"a":true,"b":"x"},{"b":2},{"a~/\\u00e9 x":1}]' >"$seeds/array_instance"
printf '{"type":["string","null"],"minLength":2,"maxLength":3,"enum":["ab","h\\u00e9",null]}\0"h\xc3\xa9"' >"$seeds/string_instance"
printf '{"anyOf":[{"type":"string"},{"type":"null"}],"allOf":[true,{}],"oneOf":[{"minimum":0},{"maximum":-1.5}],"const":"x"}\0"x"' >"$seeds/combinators"
printf '{"$ref":"#/$defs/t","$defs":{"t":{"type":"object","properties":{"k":{"type":"array","items":{"$ref":"#/$defs/t"}}}}}}\0{"k":[{"k":[{"k":[]}]},{"k":[{"k":1}]}]}' >"$seeds/recursive"

status=0
"$bin" "$corpus" "$seeds" \
	-max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
	-dict="$here/template.dict" -artifact_prefix="$artifacts/" \
	-print_final_stats=1 >"$work/log" 2>&1 || status=$?

runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$work/log" | tail -1)
cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1 | cut -d' ' -f2)
if [ "$status" != 0 ]; then
	tail -n 60 "$work/log" >&2
	echo "fuzz_template: FAILED (exit $status) after ${seconds}s; input saved in $artifacts/ (replay: test/fuzz/run.sh FILE)"
	exit 1
fi
echo "fuzz_template: ok, ${runs:-?} runs in ${seconds}s, coverage ${cov:-?} edges, corpus of $(find "$corpus" -type f | wc -l) inputs"
