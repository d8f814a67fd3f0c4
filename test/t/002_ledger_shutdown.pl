# The ledger survives a server stop: rows still queued in shared memory when
# "pg_ctl stop -m fast" arrives are written by the worker before it exits.
# A worker stopped with pg_terminate_backend writes its queue too, and comes
# back.
use strict;
use warnings;

use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = LlmextTest::node('ledger_shutdown');
LlmextTest::wait_for_worker($node);
LlmextTest::create_extension($node);

# 300 calls, and the server stopped at once: no time for the worker's tick
$node->safe_psql('postgres',
	"SELECT count(llm_complete('row ' || g, 'echo')) FROM generate_series(1, 300) g");
$node->stop('fast');
$node->start;
is($node->safe_psql('postgres', 'SELECT count(*) FROM llm.calls'),
	'300', 'after a fast stop the ledger has all 300 rows');

# the worker told to stop writes what it holds, and is started again
$node->safe_psql(
	'postgres', q{
	SELECT count(llm_complete('more ' || g, 'echo')) FROM generate_series(1, 100) g;
	SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'llmext worker';
});
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'llmext worker'"),
	'the terminated worker comes back');
$node->safe_psql('postgres', 'SELECT llm_flush()');
is($node->safe_psql('postgres', 'SELECT count(*) FROM llm.calls'),
	'400', 'after the worker was terminated the ledger has all 400 rows');

$node->stop;
done_testing();
