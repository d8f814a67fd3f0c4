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
use strict;
use warnings;

use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# log_statement = none: the API key below must not reach the server log,
# and PostgreSQL::Test::Cluster logs every statement
my $node = LlmextTest::node('callback_security',
	conf => [ "llmext.callback_timeout = '2s'", 'log_statement = none' ]);
LlmextTest::wait_for_worker($node);

sub sql { return $node->safe_psql('postgres', $_[0]); }
sub is_superuser { return sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'bob'"); }
# callback_error of the request of batch $tag
sub callback_error
{
	return sql("SELECT coalesce(callback_error, '(none)') FROM llm.requests WHERE tag = '$_[0]'");
}
sub wait_batch { sql("SELECT llm_wait_batch('$_[0]', '60 seconds') ->> 'done'"); }

# the bootstrap superuser (the operating system user running the test)
my $su = sql('SELECT current_user');

sql(q{
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'),
						   api_key => 'sk-test-fake-callback-secret');
SELECT llm_model_create('echo', 'fake', 'echo', input_price => 1, output_price => 1);
SELECT llm_model_create('slow', 'fake', 'slow-1500');
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
GRANT llm_user TO alice, bob;
CREATE SCHEMA bob AUTHORIZATION bob;
});

# 1. RESET ALL, then a nested request whose callback tries to become superuser
sql(q{
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
});
wait_batch('stage1');
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM llm.requests WHERE tag = 'stage2' AND state = 'done'");
is(callback_error('stage1'), '(none)', "stage one's callback (RESET ALL, a nested request) ran");
is(sql("SELECT submitted_by || '/' || login_role FROM llm.requests WHERE tag = 'stage2'"),
	'bob/bob', "after RESET ALL in a callback, the nested request is still bob's");
like(callback_error('stage2'), qr/permission denied|must be superuser/,
	"stage two's callback (ALTER ROLE bob SUPERUSER) is refused");
is(is_superuser(), 'f', 'RESET ALL in a callback did not make bob superuser');

# 2. settings left behind: a 1 ms timeout, and a search_path with a planted operator
sql(q{
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
});
wait_batch('settings');
usleep(500_000);
# alice's requests after it: slow ones keep the worker's cancel check running
sql(q{
SET SESSION AUTHORIZATION alice;
SELECT count(llm_submit('alice ' || g, 'slow', tag => 'alice')) FROM generate_series(1, 3) g;
});
sql("SELECT llm_wait_batch('alice', '60 seconds')");
is( sql("SELECT string_agg(state || coalesce(': ' || error, ''), ', ') FROM llm.requests WHERE tag = 'alice'"),
	'done, done, done',
	"settings a callback left (a 1 ms timeout) are undone: alice's requests are done");
is(is_superuser(), 'f', 'a search_path left by a callback did not make bob superuser');

# 3. the escapes a restricted operation refuses, and llmext's own functions
my @escapes = qw(session_auth set_role config_role discard_all load temp_table
  read_keys copy_keys budget);
my $escapes = q{
CREATE FUNCTION public.make_callback(name text, body text) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
	EXECUTE format('CREATE FUNCTION bob.%I(id bigint, r jsonb) RETURNS void LANGUAGE plpgsql AS %L',
				   name, 'BEGIN ' || body || ' END');
END $f$;
GRANT EXECUTE ON FUNCTION public.make_callback(text, text) TO bob;
SET SESSION AUTHORIZATION bob;
SELECT make_callback('session_auth', 'SET SESSION AUTHORIZATION SUPERUSER_NAME;');
SELECT make_callback('set_role', 'SET ROLE SUPERUSER_NAME;');
SELECT make_callback('config_role', 'PERFORM set_config(''role'', ''SUPERUSER_NAME'', false);');
SELECT make_callback('discard_all', 'DISCARD ALL;');
SELECT make_callback('load', 'LOAD ''plpgsql'';');
SELECT make_callback('temp_table', 'CREATE TEMP TABLE mine (x int);');
SELECT make_callback('read_keys', 'PERFORM * FROM llm.provider_keys;');
SELECT make_callback('copy_keys', 'COPY (SELECT api_key FROM llm.provider_keys) TO PROGRAM ''cat'';');
SELECT make_callback('budget', 'PERFORM llm_budget_set(''bob'', ''day'', 1000);');
SELECT make_callback('cancel_alice',
	'INSERT INTO bob.log SELECT ''cancelled of alice'', llm_cancel_batch(''alice-later'')::text;');
};
$escapes =~ s/SUPERUSER_NAME/$su/g;
sql($escapes);
sql(q{
SET SESSION AUTHORIZATION alice;
SELECT count(llm_submit('alice later ' || g, 'slow', tag => 'alice-later')) FROM generate_series(1, 2) g;
});
for my $cb (@escapes, 'cancel_alice')
{
	sql("SET SESSION AUTHORIZATION bob;
	   SELECT llm_submit('$cb', 'echo', tag => 'escape-$cb', callback => 'bob.$cb(bigint,jsonb)')");
}
wait_batch("escape-$_") for (@escapes, 'cancel_alice');
usleep(500_000);
for my $cb (@escapes)
{
	my $err = callback_error("escape-$cb");
	isnt($err, '(none)', "callback $cb is refused");
	note "$cb refused: $err";
}
is(sql("SELECT value FROM bob.log WHERE what = 'cancelled of alice'"),
	'0', "bob's callback cancelled none of alice's requests");
sql("SELECT llm_wait_batch('alice-later', '60 seconds')");
is(sql("SELECT string_agg(state, ',') FROM llm.requests WHERE tag = 'alice-later'"),
	'done,done', "alice's later requests finished");
is(sql('SELECT count(*) FROM llm.budgets'), '0', "bob's callback set no budget");
is(is_superuser(), 'f', 'bob did not become superuser');
unlike(slurp_file($node->logfile), qr/sk-test-fake-callback-secret/,
	'the API key is not in the server log');

# 4. a 30 s callback is stopped after llmext.callback_timeout (2 s)
sql(q{
SET SESSION AUTHORIZATION bob;
SELECT make_callback('sleep_30', 'PERFORM pg_sleep(30);');
SELECT make_callback('stubborn', 'LOOP BEGIN PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP;');
});
sql(q{
SET SESSION AUTHORIZATION bob;
SELECT llm_submit('sleep', 'echo', tag => 'sleep', callback => 'bob.sleep_30(bigint,jsonb)');
});
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'llmext worker' AND wait_event = 'PgSleep'");
my $start = time;
sql(q{
SET SESSION AUTHORIZATION alice;
SELECT llm_complete('alice during the sleep', 'echo');
});
my $flushed = sql("SELECT llm_flush('3 seconds')");
sql(q{
SET SESSION AUTHORIZATION alice;
SELECT llm_submit('alice queued during the sleep', 'echo', tag => 'alice-sleep');
});
sql("SELECT llm_wait_batch('alice-sleep', '60 seconds')");
my $waited_ms = int((time - $start) * 1000);
is($flushed, 't', "llm_flush('3 seconds') did not give up while a callback slept");
like(callback_error('sleep'), qr/llmext\.callback_timeout/,
	'the sleeping callback is stopped by llmext.callback_timeout');
cmp_ok($waited_ms, '<', 10000, "alice's queued request did not wait behind a 30 s callback");
note "a 30 s callback delayed alice's queued request by $waited_ms ms";

# a callback that catches every cancel: the worker ends and comes back
my $old_pid = LlmextTest::worker_pid($node);
sql(q{
SET SESSION AUTHORIZATION bob;
SELECT llm_submit('stubborn', 'echo', tag => 'stubborn', callback => 'bob.stubborn(bigint,jsonb)');
});
sql(q{
SET SESSION AUTHORIZATION alice;
SELECT llm_submit('alice after stubborn', 'echo', tag => 'alice-stubborn');
});
sql("SELECT llm_wait_batch('alice-stubborn', '60 seconds')");
is(sql("SELECT state FROM llm.requests WHERE tag = 'alice-stubborn'"),
	'done', "alice's request after a stubborn callback finished");
LlmextTest::wait_for_worker($node);
isnt(LlmextTest::worker_pid($node), $old_pid,
	'the worker running a callback that ignores cancels was replaced');
is(is_superuser(), 'f', 'bob did not become superuser');

$node->stop;
done_testing();
