# An evaluation watch run by pg_cron 1.4: llm_eval_watch, called by an
# llm_user allowed to use pg_cron, schedules the job as that user; the job
# re-runs the set every minute against what the label serves; when the
# provider changes the model behind the label's model name, the next run's
# score drops, llm.eval_drift says so and a session that listens on
# llm_eval_drift is told once.  A user without the right to use pg_cron gets
# the recipe.  Takes two to three minutes (pg_cron runs jobs once a minute).
use strict;
use warnings;

use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
ok(-f "$pkglibdir/pg_cron.so", 'pg_cron is installed (postgresql-15-cron)')
  or BAIL_OUT('pg_cron is not installed');

my $node = LlmextTest::node(
	'eval_drift',
	preload => 'pg_cron,llmext',
	conf    => ["cron.database_name = 'postgres'"]);
# pg_cron's own connections: to the socket, known once the node exists
$node->append_conf('postgresql.conf', "cron.host = '" . $node->host . "'");
$node->restart;
LlmextTest::wait_for_worker($node);

# the label serves version 1 of "colors" on model "drifty", the fake's
# learner (it answers from the prompt's examples): 4 of 4 cases right
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION pg_cron;
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
SELECT llm_model_create('drifty', 'fake', 'learner');
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
GRANT llm_user TO alice, bob;
GRANT USAGE ON SCHEMA cron TO alice;
SET SESSION AUTHORIZATION alice;
SELECT llm_prompt_create('colors', '{{input}}', system => 'Answer A or B.',
						 examples => '[{"input": {"input": "red green"}, "output": "A"},
									   {"input": {"input": "blue yellow"}, "output": "B"}]',
						 model => 'drifty');
SELECT llm_eval_set_create('colors-set');
SELECT llm_eval_cases_add('colors-set', $$
	SELECT * FROM (VALUES ('k1', 'red green', '"A"'::jsonb), ('k2', 'blue yellow', '"B"'),
						  ('k3', 'red purple', '"A"'), ('k4', 'plain', '"echo: plain"'))
		AS t(key, input, expected)$$);
RESET SESSION AUTHORIZATION;
SELECT llm_prompt_deploy('colors', 1, 'production');
});

# bob may not use pg_cron: his watch is recorded, with the recipe to run
my ($ret, $out, $err) = $node->psql(
	'postgres', q{
SET SESSION AUTHORIZATION bob;
SELECT llm_eval_set_create('bob-set');
SELECT llm_eval_cases_add('bob-set', $$SELECT 'b1' AS key, 'plain' AS input$$);
SELECT job IS NULL, recipe FROM llm_eval_watch('bob-set', 'colors:production', '0 3 * * *', 0.1);
});
is($ret, 0, "bob's watch is recorded");
like($out, qr/^t\|SELECT cron\.schedule\('llm-eval-watch-1', '0 3 \* \* \*', 'SELECT public\.llm_eval_watch_run\(1\)'\)$/m,
	'without the right to use pg_cron, no job: the recipe');
like($err, qr/role "bob" may not schedule pg_cron jobs.*GRANT USAGE ON SCHEMA cron TO bob/s,
	'and a notice says what is missing');
is($node->safe_psql('postgres', 'SELECT count(*) FROM cron.job'), '0', 'no job was scheduled for bob');

# alice's invalid schedule is refused before pg_cron sees it
($ret, $out, $err) = $node->psql('postgres',
	q{SET SESSION AUTHORIZATION alice; SELECT llm_eval_watch('colors-set', 'colors:production', '* * * *', 0.1)});
like($err, qr/invalid schedule "\* \* \* \*"/, 'an invalid schedule is refused');

# alice's watch, every minute: the job is hers, and runs the watch
my $row = $node->safe_psql(
	'postgres', q{
SET SESSION AUTHORIZATION alice;
SELECT watch, job FROM llm_eval_watch('colors-set', 'colors:production', '* * * * *', 0.2);
});
my ($watch, $job) = split /\|/, $row;
ok($job =~ /^\d+$/, "alice's watch $watch has pg_cron job $job");
is( $node->safe_psql(
		'postgres', "SELECT jobname, schedule, command, username FROM cron.job WHERE jobid = $job"),
	"llm-eval-watch-$watch|* * * * *|SELECT public.llm_eval_watch_run($watch)|alice",
	'the job runs the watch as alice, on its schedule');

# within a minute or two the job queues a run, which the worker ends
my $done = 0;
for (1 .. 150)
{
	$done = $node->safe_psql(
		'postgres', qq{
		SELECT count(*) FROM llm.eval_watch_runs wr JOIN llm.eval_runs r ON r.id = wr.run
		 WHERE wr.watch = $watch AND r.state = 'done'});
	last if $done > 0;
	sleep 1;
}
ok($done > 0, 'a run of the watch was queued by the job and finished')
  or diag $node->safe_psql('postgres',
	"SELECT string_agg(status || ': ' || return_message, '; ') FROM cron.job_run_details");
is( $node->safe_psql(
		'postgres', qq{
		SELECT DISTINCT r.submitted_by FROM llm.eval_watch_runs wr JOIN llm.eval_runs r ON r.id = wr.run
		 WHERE wr.watch = $watch}),
	'alice', 'the run is submitted by alice, not by a superuser');
is( $node->safe_psql(
		'postgres', "SELECT baseline_score, latest_score, drifted FROM llm.eval_drift WHERE watch = $watch"),
	'1|1|f', 'the first run is the baseline: 4 of 4, no drift');

# the provider changes the model behind "drifty"; a session listens, and
# waits (in one statement, so notifications are printed when it ends)
# until the view shows the drift
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION wait_for_drift(watch bigint, seconds integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1 .. seconds LOOP
		IF (SELECT d.drifted FROM llm.eval_drift d WHERE d.watch = wait_for_drift.watch) THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(1);
	END LOOP;
	RETURN false;
END $$;
});
$node->psql(
	'postgres', qq{
	LISTEN llm_eval_drift;
	UPDATE llm.models SET remote_model = 'echo' WHERE name = 'drifty';
	SELECT wait_for_drift($watch, 150);
	SELECT pg_sleep(0.5);
	SELECT 'after';
},
	stdout => \$out,
	stderr => \$err);
my $all = "$out\n$err";
like($out, qr/^t$/m, 'a later run shows the drift');
like(
	$all,
	qr/Asynchronous notification "llm_eval_drift" with payload "\{"run": \d+, "drop": 0\.750000, "watch": $watch\}" received/,
	'the drift is announced on llm_eval_drift with the watch, the run and the drop');
my $times = () = $all =~ /notification "llm_eval_drift"/g;
is($times, 1, 'it is announced once');
is( $node->safe_psql(
		'postgres', "SELECT baseline_score, latest_score, score_drop, drifted FROM llm.eval_drift WHERE watch = $watch"),
	'1|0.25|0.75|t', 'llm.eval_drift: 1 at the baseline, 0.25 now');
is( $node->safe_psql(
		'postgres', qq{
		SELECT count(*) FILTER (WHERE status <> 'succeeded') FROM cron.job_run_details WHERE jobid = $job}),
	'0', 'every run of the job succeeded');

# alice removes the watch: its job goes too
$node->safe_psql('postgres', "SET SESSION AUTHORIZATION alice; SELECT llm_eval_unwatch($watch)");
is($node->safe_psql('postgres', "SELECT count(*) FROM cron.job WHERE jobid = $job"),
	'0', 'llm_eval_unwatch removes the job');
is($node->safe_psql('postgres', "SELECT count(*) FROM llm.eval_watches WHERE id = $watch"),
	'0', 'and the watch');

$node->stop;
done_testing();
