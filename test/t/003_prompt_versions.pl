# Concurrent creators of one prompt get distinct, gap-free version numbers.
use strict;
use warnings;

use IPC::Run;
use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = LlmextTest::node('prompt_versions');
LlmextTest::create_extension($node);

# 4 clients, 25 versions each, at once
my @clients;
for my $client (1 .. 4)
{
	my $sql = join '', map {
		"SELECT llm_prompt_create('concurrent', 'client $client, version {{n}} #$_');\n"
	} 1 .. 25;
	my ($out, $err) = ('', '');
	push @clients,
	  [
		IPC::Run::start(
			[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
			'<', \$sql, '>', \$out, '2>', \$err),
		\$err
	  ];
}
for my $i (0 .. $#clients)
{
	my ($h, $err) = @{ $clients[$i] };
	ok($h->finish, 'client ' . ($i + 1) . ' created its 25 versions') or diag $$err;
}

is( $node->safe_psql(
		'postgres',
		"SELECT count(*), count(DISTINCT version), min(version), max(version)
		   FROM llm.prompts WHERE name = 'concurrent'"),
	'100|100|1|100',
	'4 concurrent clients got the versions 1 to 100, each once');

$node->stop;
done_testing();
