#!/usr/bin/env bash
# The background worker never runs user code with its own rights, keeps
# nothing a callback changes, and is not stalled by a slow callback.
# bob (an llm_user) tries, through callbacks of his queued requests:
#   1. RESET ALL, then queueing a request whose callback makes him superuser;
#   2. leaving settings behind: llmext.request_timeout = 1 ms for everyone,
#      and search_path = bob, pg_catalog with a planted "=" operator that makes
#      him superuser when the worker's superuser queries use it;
#   3. SET SESSION AUTHORIZATION, SET ROLE, set_config('role'), DISCARD ALL,
#      LOAD, a temporary table, reading the keys, cancelling alice's batch,
#      raising his budget;
#   4. sleeping 30 s (llmext.callback_timeout is 2 s here), and sleeping in
#      a loop that catches every cancel.
# Starts its own cluster and fake provider.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
fail() { echo "callback_security: $*" >&2; exit 1; }

LLM_PGPORT=$(llm_free_port $((LLM_PGPORT + 400)))
LLM_FAKE_PORT=$(llm_free_port $((LLM_FAKE_PORT + 400)))
trap llm_stop_all EXIT
llm_start_cluster "llmext.callback_timeout = '2s'" >/dev/null || fail "could not start a cluster"
llm_start_fake >/dev/null || fail "could not start the fake provider"

worker_pid() {
	psql -XAtqc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmext worker'"
}
wait_for_worker() {
	for _ in $(seq 1 200); do
		[ -n "$(worker_pid 2>/dev/null)" ] && return 0
		sleep 0.1
	done
	fail "the worker did not start"
}
q() { psql -XAtq -v ON_ERROR_STOP=1 "$@"; }
is_superuser() { q -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'bob'"; }
# callback_error of the request of batch $1
callback_error() { q -c "SELECT coalesce(callback_error, '(none)') FROM llm.requests WHERE tag = '$1'"; }
wait_batch() { q -c "SELECT llm_wait_batch('$1', '60 seconds') ->> 'done'" >/dev/null; }

wait_for_worker
q <<'SQL' >/dev/null || fail "set-up failed"
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'),
						   api_key => 'sk-test-fake-callback-secret');
SELECT llm_model_create('echo', 'fake', 'echo', input_price => 1, output_price => 1);
SELECT llm_model_create('slow', 'fake', 'slow-1500');
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
GRANT llm_user TO alice, bob;
CREATE SCHEMA bob AUTHORIZATION bob;
SQL

# 1. RESET ALL, then a nested request whose callback tries to become superuser
q <<'SQL' >/dev/null || fail "could not create bob's callbacks"
SET SESSION AUTHORIZATION bob;
CREATE TABLE bob.log (what text, value text);
CREATE FUNCTION bob.stage2(id bigint, r jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO bob.log VALUES ('stage2 ran as', current_user);
	ALTER ROLE bob SUPERUSER;
END $$;
CREATE FUNCTION bob.stage1(id bigint, r jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	RESET ALL;
	PERFORM llm_submit('stage two', 'echo', tag => 'stage2', callback => 'bob.stage2(bigint,jsonb)');
END $$;
SELECT llm_submit('stage one', 'echo', tag => 'stage1', callback => 'bob.stage1(bigint,jsonb)');
SQL
wait_batch stage1
for _ in $(seq 1 100); do
	[ "$(q -c "SELECT count(*) FROM llm.requests WHERE tag = 'stage2' AND state = 'done'")" = 1 ] && break
	sleep 0.1
done
[ "$(callback_error stage1)" = "(none)" ] || fail "stage one's callback failed: $(callback_error stage1)"
owner=$(q -c "SELECT submitted_by || '/' || login_role FROM llm.requests WHERE tag = 'stage2'")
[ "$owner" = "bob/bob" ] || fail "the nested request was recorded as '$owner', not bob's"
grep -Eq "permission denied|must be superuser" <<<"$(callback_error stage2)" ||
	fail "stage two's callback was not refused: $(callback_error stage2)"
[ "$(is_superuser)" = f ] || fail "RESET ALL in a callback made bob superuser"
echo "callback_security: after RESET ALL a callback's request is still bob's; stage two: $(callback_error stage2)"

# 2. settings left behind: a 1 ms timeout, and a search_path with a planted operator
q <<'SQL' >/dev/null || fail "could not create the settings callback"
SET SESSION AUTHORIZATION bob;
CREATE FUNCTION bob.text_eq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
		EXECUTE 'ALTER ROLE bob SUPERUSER';
	END IF;
	RETURN a OPERATOR(pg_catalog.=) b;
END $$;
CREATE FUNCTION bob.int8_eq(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
		EXECUTE 'ALTER ROLE bob SUPERUSER';
	END IF;
	RETURN a OPERATOR(pg_catalog.=) b;
END $$;
CREATE OPERATOR bob.= (LEFTARG = text, RIGHTARG = text, FUNCTION = bob.text_eq);
CREATE OPERATOR bob.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = bob.int8_eq);
CREATE FUNCTION bob.leave_settings(id bigint, r jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('llmext.request_timeout', '1', false);
	PERFORM set_config('search_path', 'bob, pg_catalog', false);
	SET statement_timeout = 1;
END $$;
SELECT llm_submit('settings', 'echo', tag => 'settings', callback => 'bob.leave_settings(bigint,jsonb)');
SQL
wait_batch settings
sleep 0.5
# alice's requests after it: slow ones keep the worker's cancel check running
q -c "SET SESSION AUTHORIZATION alice" \
	-c "SELECT count(llm_submit('alice ' || g, 'slow', tag => 'alice')) FROM generate_series(1, 3) g" >/dev/null
q -c "SELECT llm_wait_batch('alice', '60 seconds')" >/dev/null
alice=$(q -c "SELECT string_agg(state || coalesce(': ' || error, ''), ', ') FROM llm.requests WHERE tag = 'alice'")
[ "$alice" = "done, done, done" ] || fail "alice's requests after bob's callback: $alice"
[ "$(is_superuser)" = f ] || fail "a search_path left by a callback made bob superuser"
echo "callback_security: settings a callback left (1 ms timeout, a planted operator) were undone: alice's requests done"

# 3. the escapes a restricted operation refuses, and llmext's own functions
q <<'SQL' >/dev/null || fail "could not create the escape callbacks"
CREATE FUNCTION public.make_callback(name text, body text) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
	EXECUTE format('CREATE FUNCTION bob.%I(id bigint, r jsonb) RETURNS void LANGUAGE plpgsql AS %L',
				   name, 'BEGIN ' || body || ' END');
END $f$;
GRANT EXECUTE ON FUNCTION public.make_callback(text, text) TO bob;
SET SESSION AUTHORIZATION bob;
SELECT make_callback('session_auth', 'SET SESSION AUTHORIZATION postgres;');
SELECT make_callback('set_role', 'SET ROLE postgres;');
SELECT make_callback('config_role', 'PERFORM set_config(''role'', ''postgres'', false);');
SELECT make_callback('discard_all', 'DISCARD ALL;');
SELECT make_callback('load', 'LOAD ''plpgsql'';');
SELECT make_callback('temp_table', 'CREATE TEMP TABLE mine (x int);');
SELECT make_callback('read_keys', 'PERFORM * FROM llm.provider_keys;');
SELECT make_callback('copy_keys', 'COPY (SELECT api_key FROM llm.provider_keys) TO PROGRAM ''cat'';');
SELECT make_callback('budget', 'PERFORM llm_budget_set(''bob'', ''day'', 1000);');
SELECT make_callback('cancel_alice',
	'INSERT INTO bob.log SELECT ''cancelled of alice'', llm_cancel_batch(''alice-later'')::text;');
SQL
q -c "SET SESSION AUTHORIZATION alice" \
	-c "SELECT count(llm_submit('alice later ' || g, 'slow', tag => 'alice-later')) FROM generate_series(1, 2) g" >/dev/null
for cb in session_auth set_role config_role discard_all load temp_table read_keys copy_keys budget cancel_alice; do
	q -c "SET SESSION AUTHORIZATION bob" \
		-c "SELECT llm_submit('$cb', 'echo', tag => 'escape-$cb', callback => 'bob.$cb(bigint,jsonb)')" >/dev/null
done
for cb in session_auth set_role config_role discard_all load temp_table read_keys copy_keys budget cancel_alice; do
	wait_batch "escape-$cb"
done
sleep 0.5
for cb in session_auth set_role config_role discard_all load temp_table read_keys copy_keys budget; do
	err=$(callback_error "escape-$cb")
	[ "$err" != "(none)" ] || fail "callback $cb was not refused"
	echo "callback_security: $cb refused: $err"
done
[ "$(q -c "SELECT value FROM bob.log WHERE what = 'cancelled of alice'")" = 0 ] ||
	fail "bob's callback cancelled alice's requests"
q -c "SELECT llm_wait_batch('alice-later', '60 seconds')" >/dev/null
[ "$(q -c "SELECT string_agg(state, ',') FROM llm.requests WHERE tag = 'alice-later'")" = "done,done" ] ||
	fail "alice's later requests did not finish"
[ "$(q -c "SELECT count(*) FROM llm.budgets")" = 0 ] || fail "bob's callback set a budget"
[ "$(is_superuser)" = f ] || fail "bob became superuser"
grep -q "sk-test-fake-callback-secret" "$LLM_WORKDIR/postgres.log" && fail "the key is in the server log"

# 4. a 30 s callback is stopped after llmext.callback_timeout (2 s)
q <<'SQL' >/dev/null || fail "could not create the sleeping callbacks"
SET SESSION AUTHORIZATION bob;
SELECT make_callback('sleep_30', 'PERFORM pg_sleep(30);');
SELECT make_callback('stubborn', 'LOOP BEGIN PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP;');
SQL
q -c "SET SESSION AUTHORIZATION bob" \
	-c "SELECT llm_submit('sleep', 'echo', tag => 'sleep', callback => 'bob.sleep_30(bigint,jsonb)')" >/dev/null
for _ in $(seq 1 100); do
	[ "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'llmext worker'
		AND wait_event = 'PgSleep'")" = 1 ] && break
	sleep 0.05
done
start=$(date +%s%N)
q -c "SET SESSION AUTHORIZATION alice" -c "SELECT llm_complete('alice during the sleep', 'echo')" >/dev/null
flushed=$(q -c "SELECT llm_flush('3 seconds')")
q -c "SET SESSION AUTHORIZATION alice" \
	-c "SELECT llm_submit('alice queued during the sleep', 'echo', tag => 'alice-sleep')" >/dev/null
q -c "SELECT llm_wait_batch('alice-sleep', '60 seconds')" >/dev/null
waited_ms=$((($(date +%s%N) - start) / 1000000))
[ "$flushed" = t ] || fail "llm_flush('3 s') gave up while a callback slept"
err=$(callback_error sleep)
grep -q "llmext.callback_timeout" <<<"$err" || fail "the sleeping callback was not stopped: $err"
[ "$waited_ms" -lt 10000 ] || fail "alice's queued request waited ${waited_ms} ms behind a 30 s callback"
echo "callback_security: a 30 s callback delayed alice's queued request by ${waited_ms} ms (llmext.callback_timeout 2 s); llm_flush during it: $flushed; $err"

# a callback that catches every cancel: the worker ends and comes back
old_pid=$(worker_pid)
q -c "SET SESSION AUTHORIZATION bob" \
	-c "SELECT llm_submit('stubborn', 'echo', tag => 'stubborn', callback => 'bob.stubborn(bigint,jsonb)')" >/dev/null
q -c "SET SESSION AUTHORIZATION alice" \
	-c "SELECT llm_submit('alice after stubborn', 'echo', tag => 'alice-stubborn')" >/dev/null
q -c "SELECT llm_wait_batch('alice-stubborn', '60 seconds')" >/dev/null
[ "$(q -c "SELECT state FROM llm.requests WHERE tag = 'alice-stubborn'")" = done ] ||
	fail "alice's request after a stubborn callback did not finish"
wait_for_worker
[ "$(worker_pid)" != "$old_pid" ] || fail "the worker running a stubborn callback was not replaced"
[ "$(is_superuser)" = f ] || fail "bob became superuser"
echo "callback_security: a callback ignoring cancels ended its worker, which came back and ran alice's request"
