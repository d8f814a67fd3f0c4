# A full queue of entries (llmext.queue_entries = 64, its least):
#  1. the worker, finishing 1,000 queued requests 256 at a time, makes more
#     ledger rows and cache entries per turn than the queue holds; it must
#     keep them itself and write them, not wait on itself (which cost 2 s an
#     entry), and every ledger row must be written;
#  2. a backend waiting for a place (the worker held up by a lock on
#     llm.calls, llmext.queue_full_wait = 30 s) must stay cancellable: a
#     pg_cancel_backend ends it at once, and the entry it could not queue
#     goes to the log with a WARNING rather than vanish.
# The fake provider answers in 20 ms.
use strict;
use warnings;

use IPC::Run;
use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = LlmextTest::node(
	'entry_queue_full',
	conf => [
		'llmext.queue_entries = 64', 'llmext.worker_concurrency = 256',
		"llmext.queue_full_wait = '30s'"
	],
	fake => [ '--latency-ms', '20' ]);
LlmextTest::wait_for_worker($node);
LlmextTest::create_extension($node);

sub sql { return $node->safe_psql('postgres', $_[0]); }

# 1. the worker's own entries overflow the queue
my $start = time;
sql("SELECT count(llm_submit('queued ' || g, 'echo', tag => 'burst')) FROM generate_series(1, 1000) g");
my $summary = sql("SELECT llm_wait_batch('burst', '60 seconds')");
my $elapsed = time - $start;
is(sql("SELECT count(*) FROM llm.requests WHERE tag = 'burst' AND state IN ('queued', 'running')"),
	0, 'within 60 s, every one of the 1000 requests is finished')
  or diag $summary;
is(sql("SELECT llm_flush('30 seconds')"), 't', 'llm_flush does not time out');
is(sql("SELECT count(*) FROM llm.calls WHERE source = 'queue'"),
	1000, 'a ledger row for each of the 1000 requests');
cmp_ok($elapsed, '<=', 30, '1000 requests take at most 30 s with 64 places');
diag sprintf('1000 queued requests in %.2f s (%.0f/s) with 64 places; 1000 ledger rows',
	$elapsed, 1000 / $elapsed);

# 2. a backend waiting for a place stays cancellable
my @psql = ('psql', '-XAtq', '-d', $node->connstr('postgres'));
my ($lock_out, $lock_err) = ('', '');
my $locker = IPC::Run::start(
	[
		@psql,
		'-c', "SET application_name = 'entry_queue_locker'",
		'-c', 'BEGIN',
		'-c', 'LOCK TABLE llm.calls IN SHARE MODE',
		'-c', 'SELECT pg_sleep(120)'
	],
	'>', \$lock_out, '2>', \$lock_err);
ok( $node->poll_query_until(
		'postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE application_name = 'entry_queue_locker' AND query LIKE '%pg_sleep%'}),
	'a session holds a lock on llm.calls');

my ($out, $err) = ('', '');
my $client = IPC::Run::start(
	[
		@psql,
		'-c', "SET application_name = 'entry_queue_filler'",
		'-c', "SELECT count(llm_complete('fill ' || g, 'echo')) FROM generate_series(1, 500) g"
	],
	'>', \$out, '2>', \$err);
# the queue is full, and the backend waits, once the provider hears no more
my $last = -1;
for (1 .. 200)
{
	my $now = LlmextTest::fake_stat($node, 'chat_requests');
	last if $now == $last;
	$last = $now;
	usleep(300_000);
}
my $pid = sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'entry_queue_filler'");
isnt($pid, '', 'the filling backend still runs, waiting for a place')
  or diag "stdout: $out\nstderr: $err";
$start = time;
sql("SELECT pg_cancel_backend($pid)") if $pid ne '';
$client->finish;
my $took = time - $start;
sql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'entry_queue_locker'");
$locker->finish;
my $output = "$out\n$err";
like($output, qr/canceling statement due to user request/, 'the waiting backend ends with a cancel error');
like($output, qr/WARNING:  llmext could not queue a/, 'a WARNING says an entry could not be queued');
like($output, qr/DETAIL:  Entry: \{"kind":"/, 'the WARNING shows the entry');
cmp_ok($took, '<=', 0.5, 'the waiting backend ends within 0.5 s of pg_cancel_backend');
is(sql("SELECT llm_flush('30 seconds')"), 't', 'llm_flush does not time out after the lock');
diag sprintf('a backend waiting for a place ended %.2f s after pg_cancel_backend; '
	  . 'the entry it could not queue is in a WARNING', $took);

$node->stop;
done_testing();
