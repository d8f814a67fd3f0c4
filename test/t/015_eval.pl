# Evaluation runs through the worker: a run cancelled halfway (llm_cancel_batch
# on its tag) ends 'cancelled', and no result is written after the cancel.
use strict;
use warnings;

use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = LlmextTest::node('eval');
LlmextTest::wait_for_worker($node);
LlmextTest::create_extension($node);
$node->safe_psql(
	'postgres', q{
	SELECT llm_model_create('slow-200', 'fake', 'slow-200', limits => '{"max_concurrency": 1}');
	SELECT llm_eval_set_create('many');
	SELECT llm_eval_cases_add('many',
		$$SELECT 'k' || lpad(i::text, 2, '0') AS key, 'question ' || i AS input,
				 to_jsonb('echo: question ' || i) AS expected
			FROM generate_series(1, 30) i$$);
});
my $run = $node->safe_psql('postgres',
	q{SELECT llm_eval_run('many', '[{"name": "slow", "model": "slow-200"}]')});
is($run, '1', 'the run is queued');

ok( $node->poll_query_until(
		'postgres', "SELECT count(*) >= 3 FROM llm.eval_results WHERE run = $run AND scored_at IS NOT NULL"),
	'some results come in');
my $cancelled = $node->safe_psql('postgres', "SELECT llm_cancel_batch('eval-$run')");
cmp_ok($cancelled, '>', 0, "the rest of the batch is cancelled ($cancelled requests)");
my $wait = $node->safe_psql('postgres', "SELECT llm_eval_wait($run, '30 seconds') ->> 'state'");
is($wait, 'cancelled', 'llm_eval_wait reports the run cancelled');
is($node->safe_psql('postgres', "SELECT state FROM llm.eval_runs WHERE id = $run"),
	'cancelled', 'the run ended cancelled');
my $scored = $node->safe_psql('postgres',
	"SELECT count(*) FROM llm.eval_results WHERE run = $run AND scored_at IS NOT NULL");
cmp_ok($scored, '<', 30, "only part of the run was answered ($scored results)");
is( $node->safe_psql('postgres', "SELECT count(*) FROM llm.eval_results WHERE run = $run"),
	$scored, 'the cancelled requests left no result rows');
usleep(1_000_000);
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM llm.eval_results WHERE run = $run AND scored_at IS NOT NULL"),
	$scored, 'no result is written after the cancel');
is( $node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE passed) || '/' || count(*) FROM llm.eval_results WHERE run = $run"),
	"$scored/$scored", 'every answered case was scored (exact: the echo)');

$node->stop;
done_testing();
