#!/usr/bin/env bash
# Concurrent creators of one prompt get distinct, gap-free version numbers.
# Uses the regression database after pg_regress has run.
set -uo pipefail
export PGDATABASE=llmext_regression
fail() { echo "prompt_versions: $*" >&2; exit 1; }

for client in 1 2 3 4; do
	(
		for i in $(seq 1 25); do
			echo "SELECT llm_prompt_create('concurrent', 'client $client, version {{n}} #$i');"
		done | psql -XAtq -v ON_ERROR_STOP=1 >/dev/null
	) &
done
wait
summary=$(psql -XAtqc "SELECT count(*), count(DISTINCT version), min(version), max(version)
	FROM llm.prompts WHERE name = 'concurrent'")
[ "$summary" = "100|100|1|100" ] || fail "count, distinct, min, max of versions: $summary"
echo "prompt_versions: 4 concurrent clients created versions 1 to 100, each once"
