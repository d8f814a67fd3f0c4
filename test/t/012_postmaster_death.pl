# Postmaster death during a steady backlog: the worker, busy with requests
# in flight against a slow model (it waits in curl, not on its latch), must
# exit within about a second of a SIGKILL of the postmaster and send the
# provider nothing more (the fake provider's chat_requests stops growing).
use strict;
use warnings;

use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = LlmextTest::node('postmaster_death', conf => ['llmext.worker_concurrency = 8']);
LlmextTest::wait_for_worker($node);
my $worker = LlmextTest::worker_pid($node);
LlmextTest::create_extension($node);
$node->safe_psql(
	'postgres', q{
	SELECT llm_model_create('slow', 'fake', 'slow-300');
	SELECT count(llm_submit('backlog ' || g, 'slow', tag => 'backlog')) FROM generate_series(1, 2000) g;
});

sub requests { return LlmextTest::fake_stat($node, 'chat_requests'); }

# A zombie no one reaps (the postmaster was its parent) counts as gone.
sub alive
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/status" or return 0;
	my $status = do { local $/; <$fh> };
	return $status !~ /^State:\s*Z/m;
}

# The pids of the processes whose parent is $ppid.
sub children_of
{
	my ($ppid) = @_;
	my @pids;
	for my $stat (glob '/proc/[0-9]*/stat')
	{
		open my $fh, '<', $stat or next;
		my $line = <$fh> // next;
		# pid (comm) state ppid ...: comm may hold spaces and parentheses
		push @pids, $1 if $line =~ /^(\d+) \(.*\) \S+ (\d+) / && $2 == $ppid;
	}
	return @pids;
}

# a steady backlog: 8 requests in flight, about 25 a second
for (1 .. 100)
{
	last if requests() >= 40;
	usleep(100_000);
}
cmp_ok(requests(), '>=', 40, 'the worker gets going on the backlog');

my ($postmaster) = slurp_file($node->data_dir . '/postmaster.pid') =~ /^(\d+)/;
my @children = children_of($postmaster);
my $before = requests();
my $start = time;
$node->kill9;    # SIGKILL of the postmaster; the node then counts as stopped
my $gone;
for (1 .. 100)
{
	if (!alive($worker))
	{
		$gone = time;
		last;
	}
	usleep(20_000);
}
my $at_exit = requests();
sleep 2;
my $later = requests();
ok(defined $gone, 'the worker exits within 2 s of the death of the postmaster')
  or diag sprintf('the provider got %d more requests meanwhile', $later - $before);
my $exit_s = defined $gone ? $gone - $start : 2;
cmp_ok($exit_s, '<=', 1.2, 'the worker exits within 1.2 s of the death of the postmaster');
is($later - $at_exit, 0, 'the provider gets no request after the worker is gone');
# requests sent between the last count and the kill, at most one per place
cmp_ok($at_exit - $before, '<=', 8,
	'the provider gets at most 8 requests (one per place) after the postmaster died');
diag sprintf('worker exited %.2f s after SIGKILL of the postmaster; '
	  . '%d requests reached the provider after the kill, none after the exit',
	$exit_s, $at_exit - $before);

# the postmaster is gone: pg_ctl cannot stop what is left of the node
kill 'KILL', grep { alive($_) } @children;

done_testing();
