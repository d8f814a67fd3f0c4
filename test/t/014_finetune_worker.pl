# The worker runs fine-tuning jobs against the fake provider: uploads,
# create, polling with events and checkpoints, registration of the model
# and the training cost in the ledger; a job the provider fails; a cancel;
# a restart while a job runs; a create whose answer is lost; and the worker
# killed right after the provider accepted a job (the test hook
# llmext.finetune_crash_after_create): exactly one job at the provider.
#
# Jobs and training sets are inserted directly into the contract tables, as
# llm_training_set_create and llm_finetune_create would.
use strict;
use warnings;

use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = LlmextTest::node(
	'finetune_worker',
	conf => [
		'restart_after_crash = on',
		"llmext.finetune_poll_interval = '100ms'",
		"llmext.finetune_poll_max_interval = '400ms'"
	]);
LlmextTest::wait_for_worker($node);
LlmextTest::create_extension($node);
$node->safe_psql(
	'postgres', q{
	CREATE ROLE alice LOGIN;
	SELECT llm_model_create('mini', 'fake', 'gpt-4o-mini');
	SELECT llm_model_create('stats', 'fake', 'stats');
	UPDATE llm.models SET training_price = 3 WHERE name = 'mini';
	-- a stand-in until the SQL side's function is there
	DO $$
	BEGIN
		IF to_regprocedure('llm._finetune_register(bigint,text,bigint)') IS NULL THEN
			CREATE FUNCTION llm._finetune_register(p_job bigint, p_model text, p_tokens bigint)
			RETURNS text LANGUAGE plpgsql AS $f$
			DECLARE
				j llm.finetune_jobs;
				m text;
			BEGIN
				SELECT * INTO j FROM llm.finetune_jobs WHERE id = p_job;
				m := j.name || '-v' || (SELECT count(*) + 1 FROM llm.models
										 WHERE finetune_job IS NOT NULL AND name LIKE j.name || '-v%');
				INSERT INTO llm.models (name, provider, remote_model, kind, base_model,
										training_set, training_version, finetune_job)
				VALUES (m, j.provider, p_model, 'fine_tuned', j.base_model,
						j.training_set, j.training_version, p_job);
				UPDATE llm.finetune_jobs
				   SET state = 'succeeded', model = m, fine_tuned_model = p_model,
					   trained_tokens = p_tokens, finished_at = now(),
					   cost_usd = p_tokens * (SELECT training_price FROM llm.models
											   WHERE name = j.base_model) / 1000000
				 WHERE id = p_job;
				RETURN m;
			END $f$;
		END IF;
	END $$;
	-- a set of 6 examples, the last one held out
	INSERT INTO llm.training_sets (name, version, query, holdout, examples, held_out,
								   estimated_tokens, bytes, sha256, created_by, login_role)
	VALUES ('faq', 1, 'SELECT ...', 0.2, 5, 1, 100, 0, '', 'alice', 'alice');
	INSERT INTO llm.training_examples (set_name, set_version, ord, example_key, held_out, line, tokens)
	SELECT 'faq', 1, g, g::text, g = 6,
		   format('{"messages":[{"role":"user","content":"question %s"},{"role":"assistant","content":"answer %s"}]}', g, g),
		   10
	  FROM generate_series(1, 6) g;
	UPDATE llm.training_sets s
	   SET bytes = f.bytes, sha256 = f.sha256
	  FROM (SELECT sum(octet_length(line) + 1) AS bytes,
				   encode(sha256(convert_to(string_agg(line || E'\n', '' ORDER BY ord), 'UTF8')), 'hex') AS sha256
			  FROM llm.training_examples WHERE NOT held_out) f
	 WHERE s.name = 'faq';
});

sub stats
{
	my $json = $node->safe_psql('postgres',
		"SET llmext.cache = off; SELECT llm_complete('stats', 'stats')");
	my %s = $json =~ /"(\w+)":\s*(\d+)/g;
	return \%s;
}

# Inserts a job (as llm_finetune_create would) and returns its id.
sub submit
{
	my ($name, $suffix, %opt) = @_;
	my $validation = $opt{validation} ? "'faq', 1" : 'NULL, NULL';
	return $node->safe_psql(
		'postgres', qq{
		INSERT INTO llm.finetune_jobs (name, submitted_by, login_role, base_model, provider,
									   training_set, training_version, validation_set,
									   validation_version, suffix, seed, hyperparameters)
		VALUES ('$name', 'alice', 'alice', 'mini', 'fake', 'faq', 1, $validation, '$suffix', 7,
				'{"n_epochs": 2}')
		RETURNING id});
}

sub wait_state
{
	my ($job, $state, $what) = @_;
	ok( $node->poll_query_until(
			'postgres', "SELECT state FROM llm.finetune_jobs WHERE id = $job", $state),
		$what)
	  or diag $node->safe_psql('postgres', "SELECT * FROM llm.finetune_jobs WHERE id = $job");
}

sub job
{
	my ($job, $columns) = @_;
	return $node->safe_psql('postgres', "SELECT $columns FROM llm.finetune_jobs WHERE id = $job");
}

# 1. A job from queued to succeeded, with a validation file (the held-out row)
my $before = stats();
my $ok = submit('support', 'support', validation => 1);
wait_state($ok, 'succeeded', 'a job goes from queued to succeeded');
my $after = stats();
is($after->{files_uploaded} - $before->{files_uploaded}, 2, 'training and validation files uploaded once each');
is($after->{jobs_created} - $before->{jobs_created}, 1, 'one job created at the provider');
is(job($ok, "model, fine_tuned_model LIKE 'ft:gpt-4o-mini:llmext-fake:support:%', provider_status, error IS NULL"),
	'support-v1|t|succeeded|t', 'the job records its model');
is( $node->safe_psql(
		'postgres', "SELECT kind, base_model, finetune_job = $ok FROM llm.models WHERE name = 'support-v1'"),
	'fine_tuned|mini|t',
	'the tuned model is registered with its lineage');
ok($node->safe_psql('postgres', "SELECT count(*) FROM llm.finetune_events WHERE job = $ok") >= 3,
	'events stored');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*), count(train_loss), count(valid_loss), count(train_mean_token_accuracy), min(step) > 0
		   FROM llm.finetune_checkpoints WHERE job = $ok"),
	'2|2|2|2|t',
	'a checkpoint per epoch, with train and valid metrics');
# 5 training lines of about 90 bytes: trained tokens = epochs x sum(ceil(bytes / 4))
my $tokens = job($ok, 'trained_tokens');
ok($tokens > 0, "trained tokens reported ($tokens)");
is( $node->safe_psql(
		'postgres',
		"SELECT role, login_role, model, input_tokens, cost_usd = $tokens * 3 / 1000000.0, outcome
		   FROM llm.calls WHERE source = 'finetune'"),
	"alice|alice|mini|$tokens|t|ok",
	'the training cost is in the ledger, as the submitter');
is(job($ok, "cost_usd = $tokens * 3 / 1000000.0"), 't', 'the job records its cost');
# the upload is the snapshot's exact bytes: the training file's content
my $file = $node->safe_psql('postgres', "SELECT training_file_id FROM llm.finetune_jobs WHERE id = $ok");
like($file, qr/^file-/, 'the training file id is recorded');

# 2. The provider fails a job
my $bad = submit('broken', 'fail');
wait_state($bad, 'failed', 'a job the provider fails is failed');
like(job($bad, 'error'), qr/training_failed/, 'with the provider\'s error');
is(job($bad, 'finished_at IS NOT NULL AND model IS NULL'), 't', 'finished, no model');

# 3. Cancel a running job
$before = stats();
my $long = submit('forever', 'never');
wait_state($long, 'running', 'a long job runs');
$node->safe_psql('postgres', "UPDATE llm.finetune_jobs SET state = 'cancelling' WHERE id = $long");
wait_state($long, 'cancelled', 'a cancelled job is cancelled');
$after = stats();
is($after->{cancel_requests} - $before->{cancel_requests}, 1, 'one cancel sent to the provider');

# 4. A restart while a job runs: polling resumes
my $again = submit('resumed', 'never');
wait_state($again, 'running', 'a job runs before the restart');
$node->restart;
my $restarted = $node->safe_psql('postgres', 'SELECT now()');
ok( $node->poll_query_until(
		'postgres', "SELECT updated_at > '$restarted' FROM llm.finetune_jobs WHERE id = $again"),
	'polling resumes after a restart');
$node->safe_psql('postgres', "UPDATE llm.finetune_jobs SET state = 'cancelling' WHERE id = $again");
wait_state($again, 'cancelled', 'and the job is cancelled after it');

# 5. The provider creates the job but its answer is lost (500): found, not created again
$before = stats();
my $lost = submit('lost', 'lost');
wait_state($lost, 'succeeded', 'a job whose create answer was lost succeeds');
$after = stats();
is($after->{jobs_created} - $before->{jobs_created}, 1, 'created once at the provider');
ok($after->{job_create_requests} - $before->{job_create_requests} == 1,
	'no second create request: the job was found by its metadata');

# 6. The worker dies right after the provider accepted the job
$before = stats();
my $pid = LlmextTest::worker_pid($node);
$node->safe_psql('postgres',
	"ALTER SYSTEM SET llmext.finetune_crash_after_create = on; SELECT pg_reload_conf()");
# the worker reloads its settings at its next turn
sleep 1;
my $crash = submit('crash', 'crash');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 AND min(pid) <> $pid FROM pg_stat_activity WHERE backend_type = 'llmext worker'"),
	'the worker was killed and came back');
wait_state($crash, 'succeeded', 'the job created before the crash succeeds');
$after = stats();
is($after->{jobs_created} - $before->{jobs_created}, 1, 'exactly one job at the provider');
is($after->{job_create_requests} - $before->{job_create_requests}, 1, 'and one create request');
like(slurp_file($node->logfile), qr/found ftjob-\S+ at the provider, created before/, 'recovery found it by metadata');
$node->safe_psql('postgres',
	"ALTER SYSTEM RESET llmext.finetune_crash_after_create; SELECT pg_reload_conf()");

is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM llm.calls WHERE source = 'finetune'"),
	'3', 'one ledger row per succeeded job');

$node->stop;
done_testing();
