# Shared by test/run_all.sh (its pg_regress cluster), test/demo.sh and
# test/bench/*.sh: a throwaway PostgreSQL cluster and the fake provider, both
# stopped by llm_stop_all (set as an EXIT trap).  The TAP tests (test/t) have
# nodes of their own (test/perl/LlmextTest.pm).
#
# PostgreSQL refuses to run as root, so as root the cluster belongs to an
# unprivileged system user (llmext_pg), created when missing.

LLM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# The first free port from $1 on (nothing may listen there yet).
llm_free_port() {
	local port=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
		port=$((port + 1))
	done
	echo "$port"
}

LLM_PGPORT=${LLM_PGPORT:-$(llm_free_port 55432)}
LLM_FAKE_PORT=${LLM_FAKE_PORT:-$(llm_free_port 18089)}
LLM_PG_USER=llmext_pg

# LLM_PG_ENV="NAME=VALUE ...": variables for pg_ctl, and so for the server
# (test/sanitize.sh puts LD_PRELOAD and ASAN_OPTIONS there; LlmextTest.pm
# does the same for the TAP nodes).  Unset, nothing changes.
llm_as_owner() {
	local envs=()
	# shellcheck disable=SC2206  # NAME=VALUE words, split on purpose
	[ -n "${LLM_PG_ENV:-}" ] && [ "$(basename "$1")" = pg_ctl ] && envs=(env $LLM_PG_ENV)
	if [ "$(id -u)" = 0 ]; then
		runuser -u "$LLM_PG_USER" -- "${envs[@]}" "$@"
	else
		"${envs[@]}" "$@"
	fi
}

llm_ensure_owner() {
	if [ "$(id -u)" = 0 ] && ! id "$LLM_PG_USER" >/dev/null 2>&1; then
		useradd --system --no-create-home --shell /usr/sbin/nologin "$LLM_PG_USER"
	fi
}

# llm_start_cluster [extra postgresql.conf lines...]
# (LLM_PRELOAD= starts it without shared_preload_libraries)
llm_start_cluster() {
	LLM_PG_BIN=$(pg_config --bindir)	# here, not at load: install_deps.sh may have just installed it
	llm_ensure_owner
	LLM_WORKDIR=$(mktemp -d /tmp/llmext-test.XXXXXX)
	chmod 755 "$LLM_WORKDIR"
	[ "$(id -u)" = 0 ] && chown "$LLM_PG_USER" "$LLM_WORKDIR"
	LLM_PGDATA=$LLM_WORKDIR/data
	llm_as_owner "$LLM_PG_BIN/initdb" -D "$LLM_PGDATA" -U postgres -A trust \
		--encoding=UTF8 --locale=C >"$LLM_WORKDIR/initdb.log" 2>&1 ||
		{ cat "$LLM_WORKDIR/initdb.log" >&2; return 1; }
	{
		echo "port = $LLM_PGPORT"
		echo "listen_addresses = '127.0.0.1'"
		echo "unix_socket_directories = '$LLM_WORKDIR'"
		[ -n "${LLM_PRELOAD-llmext}" ] && echo "shared_preload_libraries = '${LLM_PRELOAD-llmext}'"
		echo "llmext_test.fake_url = 'http://127.0.0.1:$LLM_FAKE_PORT/v1'"
		echo "fsync = off"
		echo "max_connections = 50"
		for line in "$@"; do echo "$line"; done
	} | llm_as_owner tee -a "$LLM_PGDATA/postgresql.conf" >/dev/null
	llm_as_owner "$LLM_PG_BIN/pg_ctl" -D "$LLM_PGDATA" -l "$LLM_WORKDIR/postgres.log" \
		-w -t 60 start >/dev/null || { cat "$LLM_WORKDIR/postgres.log" >&2; return 1; }
	export PGHOST=127.0.0.1 PGPORT=$LLM_PGPORT PGUSER=postgres PGDATABASE=postgres
}

llm_start_fake() {
	local log=${LLM_WORKDIR:-/tmp}/fake_provider.log
	# Debian's python3 has python3-uvloop (install_deps.sh): a faster fake
	local python=python3
	/usr/bin/python3 -c 'import uvloop' 2>/dev/null && python=/usr/bin/python3
	"$python" "$LLM_ROOT/test/fake_provider.py" --port "$LLM_FAKE_PORT" "$@" >"$log" 2>&1 &
	LLM_FAKE_PID=$!
	for _ in $(seq 1 100); do
		grep -q "listening" "$log" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "fake provider did not start:" >&2
	cat "$log" >&2
	return 1
}

llm_stop_all() {
	if [ -n "${LLM_FAKE_PID:-}" ]; then
		kill "$LLM_FAKE_PID" 2>/dev/null
		wait "$LLM_FAKE_PID" 2>/dev/null
		LLM_FAKE_PID=
	fi
	if [ -n "${LLM_PGDATA:-}" ] && [ -f "$LLM_PGDATA/postmaster.pid" ]; then
		llm_as_owner "$LLM_PG_BIN/pg_ctl" -D "$LLM_PGDATA" -m fast -w stop >/dev/null 2>&1
	fi
	if [ -n "${LLM_WORKDIR:-}" ] && [ -z "${LLM_KEEP_WORKDIR:-}" ]; then
		rm -rf "$LLM_WORKDIR"
	fi
}
