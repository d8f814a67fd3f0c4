#!/usr/bin/env bash
# Unit benchmark of the scorers and statistics: builds test/bench/scorers.c
# with the pure core (-O2, as the extension is built) and prints scores per
# second per core for each scorer.  No server needed.
#   bash test/bench/scorers.sh            (SECONDS_PER=1 second per scorer)
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck disable=SC2046  # several words on purpose
${CC:-cc} -std=gnu11 -O2 -Wall -Wextra -Wno-unused-parameter -Isrc $(pkg-config --cflags libcjson) \
	-o "$work/scorers" test/bench/scorers.c src/core/*.c src/providers/*.c \
	$(pkg-config --libs libcjson) -lm
"$work/scorers" "${SECONDS_PER:-1}"
