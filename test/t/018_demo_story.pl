# The demo's story (test/demo_story.sql, run by test/demo.sh) against the
# fake provider, as the README promises it: it runs to its end without an
# error, the fine-tuning job succeeds, the evaluation compares the three
# variants, a promotion is refused and one accepted, and the run's page is
# written.  So that the demo cannot break unnoticed.
use strict;
use warnings;

use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = LlmextTest::node(
	'demo_story',
	conf => [
		"llmext.finetune_poll_interval = '100ms'",
		"llmext.finetune_poll_max_interval = '400ms'"
	]);
LlmextTest::wait_for_worker($node);
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION llmext;
	SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
	SELECT llm_model_create('base', 'fake', 'learner', input_price => 0.15, output_price => 0.60,
							training_price => 3, tuned_input_price => 0.30, tuned_output_price => 1.20);
});

my $html = "$PostgreSQL::Test::Utils::tmp_check/demo-run.html";
my ($rc, $out, $err) = $node->psql(
	'postgres', undef,
	extra_params => [
		'-v', 'ON_ERROR_STOP=1', '-v', 'finetune=true', '-v', "html=$html",
		'-f', "$LlmextTest::root/test/demo_story.sql"
	]);
is($rc, 0, 'the story runs to its end') or diag($err);
unlike($err // '', qr/ERROR/, 'without an error');

is( $node->safe_psql('postgres', "SELECT state || ' ' || model FROM llm.finetunes"),
	'succeeded triage-v1', 'the fine-tuning job succeeded and registered its model');
is( $node->safe_psql(
		'postgres', q{SELECT string_agg(variant || ':' || results || '/' || pending, ' ' ORDER BY variant)
						FROM llm.eval_report}),
	'tuned:54/0 v1-zero-shot:54/0 v2-few-shot:54/0',
	'the evaluation scored 18 cases x 3 repeats of each variant');
is( $node->safe_psql('postgres',
		"SELECT string_agg(action, ' ' ORDER BY id) FROM llm.prompt_label_history WHERE name = 'triage'"),
	'deploy promote_refused promote', 'a promotion refused (too expensive), then one accepted');
like($out, qr/its numbers show how llmext measures, not how good a real model is/,
	'the fake provider\'s rule is said before the numbers');
ok(-s $html > 10_000, 'the run\'s page is written');

$node->stop;
done_testing();
