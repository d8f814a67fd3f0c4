# Shared by the TAP tests under test/t: a PostgreSQL::Test::Cluster node
# that preloads llmext and knows the fake provider's address
# (llmext_test.fake_url), the fake provider itself (test/fake_provider.py,
# stopped when the test ends), and a few helpers.
#
#   my $node = LlmextTest::node('name',
#       preload => 'pg_cron,llmext',        # shared_preload_libraries; '' for none
#       conf    => ["llmext.callback_timeout = '2s'"],   # extra postgresql.conf lines
#       fake    => ['--latency-ms', '20']);  # the fake provider's arguments
#   LlmextTest::wait_for_worker($node);
#   LlmextTest::create_extension($node);     # llmext, provider "fake", model "echo"
#   LlmextTest::fake_stat($node, 'chat_requests');   # a counter of the fake provider
#
# LLM_PG_ENV="NAME=VALUE ...", when set, goes to the node's server (through
# pg_ctl, on start and restart) and to nothing else, as in test/lib/cluster.sh:
# test/sanitize.sh puts LD_PRELOAD (the ASan runtime), ASAN_OPTIONS and
# UBSAN_OPTIONS there.
package LlmextTest;

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use HTTP::Tiny;
use JSON::PP qw(decode_json);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# The worktree's root: test/perl/../..
our $root = abs_path(dirname(__FILE__) . '/../..');

my @fake_pids;

# The variables of LLM_PG_ENV, as a list of NAME => VALUE pairs.
sub server_env
{
	my @env;
	for my $word (split ' ', $ENV{LLM_PG_ENV} // '')
	{
		my ($name, $value) = $word =~ /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s
		  or BAIL_OUT("LLM_PG_ENV: \"$word\" is not NAME=VALUE");
		push @env, $name, $value;
	}
	return @env;
}

# Starts the fake provider on a free port with the given arguments; returns
# the port.  It is stopped when the test ends.
sub start_fake
{
	my (@args) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $log  = "$PostgreSQL::Test::Utils::tmp_check/fake_provider_$port.log";
	# Debian's python3 has python3-uvloop (install_deps.sh): a faster fake
	my $python =
	  system('/usr/bin/python3 -c "import uvloop" 2>/dev/null') == 0
	  ? '/usr/bin/python3'
	  : 'python3';
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open STDOUT, '>', $log or die "$log: $!";
		open STDERR, '>&', \*STDOUT or die "dup: $!";
		exec $python, "$root/test/fake_provider.py", '--port', $port, @args
		  or die "exec $python: $!";
	}
	push @fake_pids, $pid;
	for (1 .. 200)
	{
		return $port if -f $log && slurp_file($log) =~ /listening/;
		usleep(50_000);
	}
	BAIL_OUT("the fake provider did not start:\n" . (-f $log ? slurp_file($log) : ''));
}

END
{
	my $status = $?;
	for my $pid (@fake_pids)
	{
		kill 'TERM', $pid;
		waitpid($pid, 0);
	}
	$? = $status;
}

# A started node.  Options: preload (shared_preload_libraries, 'llmext' by
# default, '' for none), conf (extra postgresql.conf lines), fake (the fake
# provider's arguments; undef to start none and point at fake_port instead).
sub node
{
	my ($name, %opt) = @_;
	my $preload = exists $opt{preload} ? $opt{preload} : 'llmext';
	my $fake_port = $opt{fake_port} // start_fake(@{ $opt{fake} // [] });

	my $node = LlmextTest::Node->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = '$preload'")
	  if $preload ne '';
	$node->append_conf('postgresql.conf',
		"llmext_test.fake_url = 'http://127.0.0.1:$fake_port/v1'");
	$node->append_conf('postgresql.conf', $_) for @{ $opt{conf} // [] };
	$node->start;
	$node->{llmext_fake_port} = $fake_port;
	return $node;
}

# The pid of the (one) llmext worker, or '' when there is none.
sub worker_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmext worker'");
}

# Waits until a worker runs (for database $db when given); fails the test
# when none does within the poll timeout.
sub wait_for_worker
{
	my ($node, $db) = @_;
	my $where = defined $db ? " AND datname = '$db'" : '';
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'llmext worker'$where"),
		'the llmext worker runs' . (defined $db ? " for $db" : ''));
}

# A counter of the node's fake provider (its /_stats), e.g. chat_requests.
sub fake_stat
{
	my ($node, $field) = @_;
	my $url = "http://127.0.0.1:$node->{llmext_fake_port}/_stats";
	my $res = HTTP::Tiny->new(timeout => 10)->get($url);
	die "GET $url: $res->{status} $res->{reason}" unless $res->{success};
	return decode_json($res->{content})->{$field};
}

# CREATE EXTENSION llmext with the provider "fake" and the model "echo".
sub create_extension
{
	my ($node, $db) = @_;
	$node->safe_psql(
		$db // 'postgres', q{
		CREATE EXTENSION llmext;
		SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
		SELECT llm_model_create('echo', 'fake', 'echo');
	});
}

# A PostgreSQL::Test::Cluster node whose server gets LLM_PG_ENV: only around
# pg_ctl start and restart (which copy %ENV for pg_ctl, and pg_ctl for the
# postmaster), so psql and the test itself run without it.
package LlmextTest::Node;

use parent -norequire, 'PostgreSQL::Test::Cluster';

sub start
{
	my ($self, @args) = @_;
	local %ENV = (%ENV, LlmextTest::server_env());
	return $self->SUPER::start(@args);
}

sub restart
{
	my ($self, @args) = @_;
	local %ENV = (%ENV, LlmextTest::server_env());
	return $self->SUPER::restart(@args);
}

1;
