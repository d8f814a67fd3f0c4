#!/usr/bin/env bash
# Installs what building and testing llmext need, from Debian's packages.
set -euo pipefail

# chromium (with a font for its screenshots): test/t/016_eval_html.pl opens
# llm_eval_report_html's page in it, headless
packages=(build-essential pkg-config postgresql-15 postgresql-server-dev-15
	postgresql-contrib libcurl4-openssl-dev libcjson-dev python3 python3-uvloop curl
	clang-14 libclang-rt-14-dev postgresql-15-cron time libipc-run-perl
	chromium fonts-dejavu-core)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} = 0 ] && exit 0

echo "== installing: ${missing[*]}"
sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
