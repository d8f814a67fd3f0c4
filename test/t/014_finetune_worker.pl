# The worker runs fine-tuning jobs against the fake provider: uploads,
# create, polling with events and checkpoints, registration of the model
# and the training cost in the ledger; an upload the provider refuses; a job
# the provider fails; a cancel;
# a restart while a job runs; a create whose answer is lost; and the worker
# killed right after the provider accepted a job (the test hook
# llmext.finetune_crash_after_create): exactly one job at the provider.
#
# The training set and the jobs are alice's, made with llm_training_set_create
# and llm_finetune_create (she is granted llm_finetune).
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
	CREATE ROLE alice LOGIN IN ROLE llm_user, llm_finetune;
	SELECT llm_model_create('mini', 'fake', 'gpt-4o-mini', training_price => 3);
	SELECT llm_model_create('stats', 'fake', 'stats');
});
# sixteen examples as alice, a share held out (chosen by the hash of each key)
$node->safe_psql(
	'postgres', q{
	SELECT llm_training_set_create('faq',
		$$SELECT g::text AS id, 'question ' || g AS input, 'answer ' || g AS output
			FROM generate_series(1, 16) g$$, holdout => 0.2);
}, extra_params => [ '-U', 'alice' ]);
my ($examples, $held_out) = split /\|/,
  $node->safe_psql('postgres', "SELECT examples, held_out FROM llm.training_sets WHERE name = 'faq'");
ok($held_out > 0 && $examples >= 10, "a training set of $examples examples, $held_out held out");

sub stats
{
	my $json = $node->safe_psql('postgres',
		"SET llmext.cache = off; SELECT llm_complete('stats', 'stats')");
	my %s = $json =~ /"(\w+)":\s*(\d+)/g;
	return \%s;
}

# Queues a job as alice and returns its id.
sub submit
{
	my ($name, $suffix, %opt) = @_;
	my $validation = $opt{validation} ? "'faq'" : 'NULL';
	return $node->safe_psql(
		'postgres', qq{
		SELECT llm_finetune_create('$name', 'mini', 'faq', validation_set => $validation,
								   hyperparameters => '{"n_epochs": 2}', suffix => '$suffix')},
		extra_params => [ '-U', 'alice' ]);
}

sub cancel
{
	my ($job) = @_;
	return $node->safe_psql('postgres', "SELECT llm_finetune_cancel($job)",
		extra_params => [ '-U', 'alice' ]);
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
# trained tokens = epochs x sum(ceil(bytes / 4)) over the training lines
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

# the tuned model answers from what it was trained on (the fake's learning
# rule), its base does not; and a prompt label can point at it
my ($seen, $unseen) = split /\|/, $node->safe_psql(
	'postgres', q{
	SELECT (SELECT min(ord) FROM llm.training_examples WHERE set_name = 'faq' AND NOT held_out),
		   (SELECT min(ord) FROM llm.training_examples WHERE set_name = 'faq' AND held_out)});
is($node->safe_psql('postgres', "SELECT llm_complete('question $seen', 'support-v1')"),
	"answer $seen", 'the tuned model answers a trained question with its ideal answer');
isnt($node->safe_psql('postgres', "SELECT llm_complete('question $unseen', 'support-v1')"),
	"answer $unseen", 'a held-out question was not trained on');
isnt($node->safe_psql('postgres', "SELECT llm_complete('question $seen', 'mini')"),
	"answer $seen", 'the base model does not know the answer');
$node->safe_psql(
	'postgres', q{
	SELECT llm_prompt_create('faq-prompt', '{{q}}', model => 'mini');
	SELECT llm_prompt_deploy('faq-prompt', 1, 'tuned', model => 'support-v1');
});
is( $node->safe_psql(
		'postgres', "SELECT llm_complete_prompt('faq-prompt', '{\"q\": \"question $seen\"}', label => 'tuned')"),
	"answer $seen",
	'a prompt label deploys the tuned model');

# 1b. The provider refuses the upload (the fake's X-Fake-Fault header, sent by
# this provider on every request): failed, nothing created
$node->safe_psql(
	'postgres', q{
	SELECT llm_provider_create('fake-reject', current_setting('llmext_test.fake_url'),
							   options => '{"headers": {"X-Fake-Fault": "reject"}}');
	SELECT llm_model_create('mini-reject', 'fake-reject', 'gpt-4o-mini', training_price => 3);
});
$before = stats();
my $refused = $node->safe_psql(
	'postgres', "SELECT llm_finetune_create('refused', 'mini-reject', 'faq')",
	extra_params => [ '-U', 'alice' ]);
wait_state($refused, 'failed', 'a job whose upload the provider refuses is failed');
like(job($refused, 'error'), qr/upload rejected/, 'with the provider\'s message');
$after = stats();
is($after->{files_uploaded} - $before->{files_uploaded}, 0, 'no file stored');
is($after->{job_create_requests} - $before->{job_create_requests}, 0, 'no job asked for');

# 2. The provider fails a job
my $bad = submit('broken', 'fail');
wait_state($bad, 'failed', 'a job the provider fails is failed');
like(job($bad, 'error'), qr/training_failed/, 'with the provider\'s error');
is(job($bad, 'finished_at IS NOT NULL AND model IS NULL'), 't', 'finished, no model');

# 3. Cancel a running job
$before = stats();
my $long = submit('forever', 'never');
wait_state($long, 'running', 'a long job runs');
is(cancel($long), 't', 'llm_finetune_cancel of a running job');
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
cancel($again);
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
