# CREATE EXTENSION and synchronous calls work in a cluster that does not
# preload llmext; without the worker, ledger rows are written in the
# caller's transaction, with a WARNING.
use strict;
use warnings;

use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = LlmextTest::node('no_preload', preload => '');

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'shared_preload_libraries is empty');

LlmextTest::create_extension($node);
is($node->safe_psql('postgres', "SELECT llm_complete('without preload', 'echo')"),
	'echo: without preload', 'llm_complete works without shared_preload_libraries');

my ($stdout, $stderr);
$node->psql(
	'postgres', q{
	SELECT llm_complete('ledger', 'echo');
	SELECT count(*) FROM llm.calls;
},
	stdout => \$stdout,
	stderr => \$stderr);
like(
	$stderr,
	qr/WARNING:  llmext writes ledger rows and cache entries in the calling transaction/,
	'a WARNING says ledger rows are written in the calling transaction');
like($stdout, qr/\n2\z/, 'both calls have a ledger row');

$node->stop;
done_testing();
