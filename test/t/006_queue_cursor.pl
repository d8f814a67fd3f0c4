# While a long run of requests keeps the worker claiming full batches, it
# claims on from where it stopped (a cursor), and from the start at least
# once a second.  So a request put back behind the cursor (a retry) and one
# of a higher priority submitted later are taken long before the run ends.
# It fails when the cursor is kept for the whole run.
use strict;
use warnings;

use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = LlmextTest::node('queue_cursor', conf => ['llmext.worker_concurrency = 4']);
LlmextTest::wait_for_worker($node);
LlmextTest::create_extension($node);
$node->safe_psql(
	'postgres', q{
	SELECT llm_model_create('cursor-slow', 'fake', 'slow-40');
	SELECT llm_model_create('cursor-flaky', 'fake', 'flaky-1-cursor');
});

# the flaky request first: its retry goes back behind everything after it
$node->safe_psql(
	'postgres', q{
	SELECT llm_submit('retried', 'cursor-flaky', tag => 'cursor-flaky');
	SELECT count(llm_submit('bulk ' || g, 'cursor-slow', tag => 'cursor-bulk'))
	  FROM generate_series(1, 400) g;
});
usleep(300_000);
$node->safe_psql(
	'postgres', q{
	SELECT count(llm_submit('urgent ' || g, 'cursor-slow', tag => 'cursor-urgent', priority => 10))
	  FROM generate_series(1, 3) g});
for my $tag (qw(flaky urgent bulk))
{
	like(
		$node->safe_psql('postgres',
			"SELECT llm_wait_batch('cursor-$tag', '2 minutes') ->> 'done'"),
		qr/^\d+$/,
		"waiting for the $tag requests");
}

# the start of the 300th bulk request: 100 were still to start then, a second at least
my ($attempts, $retried_done, $urgent_started) = split /\|/, $node->safe_psql(
	'postgres', q{
	WITH bulk AS (SELECT started_at FROM llm.requests WHERE tag = 'cursor-bulk'
				  ORDER BY started_at OFFSET 299 LIMIT 1)
	SELECT (SELECT attempts FROM llm.requests WHERE tag = 'cursor-flaky'),
		   (SELECT bool_and(state = 'done' AND finished_at < bulk.started_at)
			  FROM llm.requests WHERE tag = 'cursor-flaky'),
		   (SELECT bool_and(state = 'done' AND started_at < bulk.started_at)
			  FROM llm.requests WHERE tag = 'cursor-urgent')
	  FROM bulk});
is($attempts, 2, 'the flaky request made 2 attempts');
is($retried_done, 't', 'the retried request ran before the last 100 of the run');
is($urgent_started, 't', 'the urgent requests started before the last 100 of the run');

$node->stop;
done_testing();
