# Evaluation runs through the worker: a run cancelled halfway (llm_cancel_batch
# on its tag) ends 'cancelled', and no result is written after the cancel;
# answers are scored by the scorer process, or by the worker itself when no
# scorer can be started; answers written and never scored (a scorer or
# worker that stopped) are scored when the worker starts again.
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

# the answers were scored by the scorer, a process of its own, still there
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'llmext scorer' AND datname = 'postgres'"),
	'1', 'a scorer process scored the answers');

# answers written and never scored: a run whose requests ended (as a worker
# that stopped before its scorer got their ids leaves them), in a database no
# worker served yet; the worker that comes for it scores them when it starts
$node->safe_psql('postgres', 'CREATE DATABASE later');
LlmextTest::create_extension($node, 'later');
$node->safe_psql(
	'later', q{
	CREATE FUNCTION public.starts_with_echo(output text, expected jsonb, vars jsonb) RETURNS numeric
	LANGUAGE sql AS $$ SELECT CASE WHEN output LIKE 'echo:%' THEN 1 ELSE 0 END $$;
	SELECT llm_eval_set_create('left');
	SELECT llm_eval_cases_add('left',
		$$SELECT 'k' || i AS key, 'question ' || i AS input, to_jsonb('echo: question ' || i) AS expected
			FROM generate_series(1, 3) i$$);
	SELECT llm_eval_run('left', '[{"name": "e", "model": "echo"}]');
	SELECT llm_eval_run('left', '[{"name": "e", "model": "echo"}]',
						scorer => '{"type": "function", "function": "public.starts_with_echo"}');
	UPDATE llm.requests
	   SET state = CASE WHEN messages -> -1 ->> 'content' = 'question 3' THEN 'error' ELSE 'done' END,
		   completion = CASE WHEN messages -> -1 ->> 'content' <> 'question 3'
							 THEN 'echo: ' || (messages -> -1 ->> 'content') END,
		   error = CASE WHEN messages -> -1 ->> 'content' = 'question 3' THEN 'provider said no' END,
		   response = '{"usage": {"input_tokens": 2, "output_tokens": 3}, "latency_ms": 5}',
		   finished_at = now();
});
$node->append_conf('postgresql.conf', "llmext.databases = 'postgres, later'");
$node->restart;
LlmextTest::wait_for_worker($node, 'later');
is( $node->safe_psql('later',
		"SELECT (llm_eval_wait(1, '30 seconds') ->> 'state') || ' ' || (llm_eval_wait(2, '30 seconds') ->> 'state')"),
	'done done', 'both runs end once the worker for the database has started');
is( $node->safe_psql(
		'later', q{
	SELECT string_agg(run || case_key || ':' || coalesce(score::text, '-') || ':' || coalesce(error, '-'), ' '
					  ORDER BY run, case_key)
	  FROM llm.eval_results}),
	'1k1:1:- 1k2:1:- 1k3:-:provider said no '
	  . '2k1:-:the scorer failed: its callback was lost when the worker stopped '
	  . '2k2:-:the scorer failed: its callback was lost when the worker stopped 2k3:-:provider said no',
	'answers left unscored are scored; a function scorer whose callback never ran is an error, not pending');
$node->stop;

# no background worker slot for a scorer: the worker scores the answers itself
my $small = LlmextTest::node('eval_small', conf => ['max_worker_processes = 2']);
LlmextTest::wait_for_worker($small);
LlmextTest::create_extension($small);
$small->safe_psql(
	'postgres', q{
	SELECT llm_eval_set_create('few');
	SELECT llm_eval_cases_add('few',
		$$SELECT 'k' || i AS key, 'question ' || i AS input, to_jsonb('echo: question ' || i) AS expected
			FROM generate_series(1, 20) i$$);
});
my $small_run = $small->safe_psql('postgres',
	q{SELECT llm_eval_run('few', '[{"name": "e", "model": "echo"}]', repeats => 2)});
is( $small->safe_psql('postgres',
		"SELECT llm_eval_wait($small_run, '30 seconds') ->> 'state'"),
	'done', 'with no slot for a scorer the run ends');
is( $small->safe_psql(
		'postgres', qq{
	SELECT count(*) FILTER (WHERE passed) || ' ' || count(*) || ' '
		   || (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'llmext scorer')
	  FROM llm.eval_results WHERE run = $small_run}),
	'40 40 0', 'the worker scored every answer itself; no scorer ran');
ok($small->log_contains('llmext could not start an evaluation scorer: no background worker slot is free'),
	'the server log says why');
$small->stop;
done_testing();
