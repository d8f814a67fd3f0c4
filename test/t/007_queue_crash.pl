# Crashes lose no queued work: a batch of 1,000 requests, first with the
# worker killed by SIGKILL mid-batch (the postmaster then restarts every
# process), then with the whole server stopped with "-m immediate" and
# started again.  Every request must end exactly once in done or error:
# a trigger logs each row's move out of running, and no row may move twice.
# The fake provider answers in 20 ms.
use strict;
use warnings;

use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;

# PostgreSQL::Test::Cluster turns restart_after_crash off; this test needs it
my $node = LlmextTest::node(
	'queue_crash',
	conf => ['restart_after_crash = on'],
	fake => [ '--latency-ms', '20' ]);
LlmextTest::wait_for_worker($node);
LlmextTest::create_extension($node);
$node->safe_psql(
	'postgres', q{
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

sub count_of
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) $sql");
}

# Submits 1,000 requests tagged $tag and waits until 100 are done; returns
# how many were done then.
sub submit_and_wait_for_100
{
	my ($tag) = @_;
	$node->safe_psql('postgres',
		"SELECT count(llm_submit('$tag ' || g, 'echo', tag => '$tag')) FROM generate_series(1, 1000) g");
	# polled from one session every 10 ms: the batch takes about a second
	$node->safe_psql(
		'postgres', qq{
		DO \$\$
		BEGIN
			WHILE (SELECT count(*) FROM llm.requests WHERE tag = '$tag' AND state = 'done') < 100 LOOP
				PERFORM pg_sleep(0.01);
			END LOOP;
		END \$\$});
	return count_of("FROM llm.requests WHERE tag = '$tag' AND state = 'done'");
}

sub check_batch
{
	my ($tag) = @_;
	my $summary = $node->safe_psql('postgres', "SELECT llm_wait_batch('$tag', '120 seconds')");
	is(count_of("FROM llm.requests WHERE tag = '$tag' AND state IN ('queued', 'running')"),
		0, "$tag: no request is left unfinished")
	  or diag $summary;
	is(count_of("FROM llm.requests WHERE tag = '$tag' AND state = 'done'"),
		1000, "$tag: every request is done")
	  or diag $summary;
	is( count_of(
			"FROM (SELECT l.id FROM finished_log l JOIN llm.requests r USING (id)
			  WHERE r.tag = '$tag' GROUP BY l.id HAVING count(*) > 1) t"),
		0,
		"$tag: no request was finished twice");
	is( $node->safe_psql(
			'postgres',
			"SELECT count(DISTINCT l.id) FROM finished_log l JOIN llm.requests r USING (id)
			  WHERE r.tag = '$tag'"),
		1000,
		"$tag: the log has every finish");
}

# 1. SIGKILL of the worker in the middle of a batch
my $done = submit_and_wait_for_100('sigkill');
cmp_ok($done, '<', 1000, 'the worker is killed in the middle of the batch');
my $pid = LlmextTest::worker_pid($node);
ok(kill('KILL', $pid), 'the worker is killed with SIGKILL');
sleep 1;
LlmextTest::wait_for_worker($node);
check_batch('sigkill');
note "worker killed after $done of 1000 done";

# 2. The whole server stopped with -m immediate mid-batch, then started
$done = submit_and_wait_for_100('immediate');
cmp_ok($done, '<', 1000, 'the server is stopped in the middle of the batch');
$node->stop('immediate');
$node->start;
LlmextTest::wait_for_worker($node);
check_batch('immediate');
note "server stopped immediately after $done of 1000 done";

$node->stop;
done_testing();
