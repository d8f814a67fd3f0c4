# Batch-mode requests across restarts: the fake provider's batches take
# three steps of 1.5 s (validating, in_progress, finalizing).  A batch of 40
# requests is at the provider when the server restarts (fast shutdown): the
# new worker resumes polling and every request ends exactly once, with one
# ledger row each and one batch at the provider.  Then the worker is
# killed right after the provider accepted a batch (the test hook
# llmext.batch_api_crash_after_create): recovery finds that batch by its
# metadata instead of creating another.
use strict;
use warnings;

use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = LlmextTest::node(
	'batch_api',
	conf => [
		'restart_after_crash = on',
		"llmext.batch_api_wait = '200ms'",
		"llmext.batch_api_poll_interval = '100ms'"
	],
	fake => [ '--batch-step-ms', '1500' ]);
LlmextTest::wait_for_worker($node);
LlmextTest::create_extension($node);
$node->safe_psql(
	'postgres', q{
	SELECT llm_model_create('cheap', 'fake', 'echo', input_price => 1, output_price => 2);
	CREATE TABLE finished_log (id bigint, state text);
	CREATE FUNCTION log_finish() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.finished_log VALUES (NEW.id, NEW.state);
		RETURN NEW;
	END $$;
	CREATE TRIGGER log_finish AFTER UPDATE ON llm.requests FOR EACH ROW
		WHEN (OLD.state = 'running' AND NEW.state IN ('done', 'error'))
		EXECUTE FUNCTION log_finish();
});

sub query { return $node->safe_psql('postgres', $_[0]); }

sub submit
{
	my ($tag, $n) = @_;
	query(  "SELECT count(llm_submit('$tag ' || g, 'cheap', tag => '$tag',"
		  . " options => '{\"batch_api\": true}')) FROM generate_series(1, $n) g");
}

sub wait_done
{
	my ($tag, $n, $what) = @_;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) = $n FROM llm.requests WHERE tag = '$tag' AND state = 'done'"),
		$what);
}

# --- a restart while the batch is at the provider
submit('restart', 40);
ok( $node->poll_query_until(
		'postgres',
		"SELECT EXISTS (SELECT FROM llm.provider_batches WHERE state = 'submitted'"
		  . " AND provider_status IN ('validating', 'in_progress'))"),
	'the batch is at the provider');
is(query("SELECT count(*) FROM llm.requests WHERE tag = 'restart' AND state = 'running'"),
	'40', 'its requests wait in it, running');
$node->restart;
LlmextTest::wait_for_worker($node);
is(query("SELECT count(*) FROM llm.requests WHERE tag = 'restart' AND state = 'running'"),
	'40', 'a restart leaves them in the batch (not queued again)');
wait_done('restart', 40, 'the new worker resumed polling and read the answers');
is(query("SELECT count(*), count(DISTINCT id) FROM finished_log"),
	'40|40', 'each request ended exactly once');
is(query(
		"SELECT bool_and(completion = 'echo: ' || (messages -> 0 ->> 'content')) FROM llm.requests WHERE tag = 'restart'"),
	't', 'each with its own answer');
is(LlmextTest::fake_stat($node, 'batches_created'), 1, 'one batch at the provider');
query("SELECT llm_flush()");
is(query("SELECT count(*) FROM llm.calls WHERE source = 'batch_api'"),
	'40', 'one ledger row per request');
ok( $node->poll_query_until(
		'postgres', "SELECT state = 'done' FROM llm.provider_batches WHERE id = 1"),
	'the provider batch ends after its requests');
is(query("SELECT state, requests, answered FROM llm.provider_batches"),
	'done|40|40', 'the provider batch is done');
like(slurp_file($node->logfile), qr/llmext provider batch 1: wrote 40 requests/,
	'the log tells how the input file went');

# --- the worker killed right after the provider accepted a batch
my $pid = LlmextTest::worker_pid($node);
query("ALTER SYSTEM SET llmext.batch_api_crash_after_create = on; SELECT pg_reload_conf()");
sleep 1;    # the worker reloads its settings at its next turn
submit('crash', 5);
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 AND min(pid) <> $pid FROM pg_stat_activity WHERE backend_type = 'llmext worker'"),
	'the worker was killed and came back');
query("ALTER SYSTEM RESET llmext.batch_api_crash_after_create; SELECT pg_reload_conf()");
wait_done('crash', 5, 'the batch created before the crash answered');
is(LlmextTest::fake_stat($node, 'batches_created'), 2, 'exactly one more batch at the provider');
like(slurp_file($node->logfile), qr/llmext provider batch 2: found batch_\S+ at the provider/,
	'recovery found it by its metadata');
is(query("SELECT count(*), count(DISTINCT id) FROM finished_log"),
	'45|45', 'still each request ended exactly once');

$node->stop;
done_testing();
