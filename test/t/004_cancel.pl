# Query cancel during a call: pg_cancel_backend stops a 30 s call at once
# (the fake provider sees the client leave), and 50 cancelled calls in one
# backend leave no file descriptor (curl handle, socket) behind.
use strict;
use warnings;

use IPC::Run;
use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = LlmextTest::node('cancel');
LlmextTest::create_extension($node);
$node->safe_psql(
	'postgres', q{
	SELECT llm_model_create('stats', 'fake', 'stats');
	SELECT llm_model_create('slow-30000', 'fake', 'slow-30000');
});

sub aborted
{
	return $node->safe_psql('postgres',
		"SELECT llm_complete('stats', 'stats')::jsonb ->> 'aborted'");
}

my $before = aborted();
my ($out, $err) = ('', '');
my $start = time;
my $client = IPC::Run::start(
	[
		'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		'-c', "SET application_name = 'llmext_cancel_test'",
		'-c', "SELECT llm_complete('hi', 'slow-30000')"
	],
	'>', \$out, '2>', \$err);

ok( $node->poll_query_until(
		'postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE application_name = 'llmext_cancel_test' AND state = 'active'
		   AND wait_event_type = 'Extension'}),
	'the call shows up waiting in pg_stat_activity');
$node->safe_psql(
	'postgres', q{
	SELECT pg_cancel_backend(pid) FROM pg_stat_activity
	 WHERE application_name = 'llmext_cancel_test'});
$client->finish;
my $elapsed = time - $start;
like($err, qr/canceling statement due to user request/, 'the call ends with a cancel error');
cmp_ok($elapsed, '<', 15, 'pg_cancel_backend ended a 30 s call long before its end');
note sprintf('pg_cancel_backend ended a 30 s call after %.2f s in all', $elapsed);
usleep(300_000);
is(aborted() - $before, 1, 'the provider saw the client leave, once');

# 50 cancelled calls in one backend: the descriptor count stays put
my $script = join '',
  "SET statement_timeout = '50ms';\n",
  "SELECT llm_complete('warm up', 'slow-30000');\n",
  "SELECT llm_complete('warm up', 'echo');\n",
  "SELECT count(*) FROM pg_ls_dir('/proc/self/fd');\n",
  (map { "SELECT llm_complete('call $_', 'slow-30000');\n" } 1 .. 50),
  "SELECT llm_complete('still healthy', 'echo');\n",
  "SELECT count(*) FROM pg_ls_dir('/proc/self/fd');\n";
my ($counts, $errors);
$node->psql(
	'postgres', $script,
	on_error_stop => 0,
	stdout => \$counts,
	stderr => \$errors);
my $timeouts = () = $errors =~ /canceling statement due to statement timeout/g;
is($timeouts, 51, '51 calls ended by statement_timeout');
like($counts, qr/^echo: still healthy$/m, 'the backend answers after the cancels');
my @fds = $counts =~ /^(\d+)$/mg;
is(scalar @fds, 2, 'the descriptors were counted before and after');
is($fds[1], $fds[0], "open descriptors stay at $fds[0] over 50 cancelled calls");

$node->stop;
done_testing();
