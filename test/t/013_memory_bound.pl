# Bounded memory (docs/security.md, item 9): an llm_user's worst case in one
# backend stays under the stated formula
#
#   peak RSS - RSS at start <= 64 MB + 3 T + 200 N + 6 M + 8 Q + (3 c + 6) R
#
# with T = llmext.max_template_bytes, N = llmext.max_template_nodes,
# M = llmext.max_rendered_bytes, Q = llmext.max_request_bytes,
# c = llmext.max_batch_concurrency, R = llmext.max_response_bytes_limit.
# Each case runs in its own session as an llm_user that has raised
# llmext.max_response_bytes as far as it can; the backend reads its own
# /proc/self/status (VmRSS at the start, VmHWM at the end).  Oversized input
# must be refused with 54000, never XX000.  The ceilings are in the node's
# postgresql.conf.
use strict;
use warnings;

use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $MB = 1024 * 1024;
my ($T, $N, $M, $Q, $C, $R) = (4 * $MB, 500_000, 8 * $MB, 16 * $MB, 8, 8 * $MB);
my $BOUND = 64 * $MB + 3 * $T + 200 * $N + 6 * $M + 8 * $Q + (3 * $C + 6) * $R;
my $bound_mb = int($BOUND / $MB);

my $node = LlmextTest::node(
	'memory_bound',
	conf => [
		"llmext.max_template_bytes = $T", "llmext.max_template_nodes = $N",
		"llmext.max_rendered_bytes = $M", "llmext.max_request_bytes = $Q",
		"llmext.max_batch_concurrency = $C", "llmext.max_response_bytes_limit = $R",
		'llmext.queue_memory = 8'
	]);
LlmextTest::create_extension($node);
$node->safe_psql(
	'postgres', q{
	SELECT llm_model_create('huge', 'fake', 'huge-8000000');
	CREATE ROLE mallory LOGIN;
	GRANT llm_user TO mallory;
	CREATE FUNCTION kb(field text) RETURNS bigint LANGUAGE sql AS $$
		SELECT substring(pg_read_file('/proc/self/status') FROM field || ':\s+(\d+) kB')::bigint
	$$;
});

# Runs $sql as mallory in a fresh backend and checks the bound.
sub run_case
{
	my ($name, $sql) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql(
		'postgres', qq{
SELECT llm_complete('warm up', 'echo') IS NOT NULL;
SELECT 'start ' || kb('VmRSS');
SET SESSION AUTHORIZATION mallory;
SET llmext.max_response_bytes = '500MB';
$sql
RESET SESSION AUTHORIZATION;
SELECT 'peak ' || kb('VmHWM');
},
		stdout => \$out,
		stderr => \$err);
	is($rc, 0, "$name: runs without error") or diag "$out\n$err";
	note "$name: psql printed:\n$out";
	my ($start) = $out =~ /^start (\d+)$/m;
	my ($peak)  = $out =~ /^peak (\d+)$/m;
	ok(defined $start && defined $peak, "$name: the memory figures are there")
	  or return diag "$out\n$err";
	my $used = ($peak - $start) * 1024;
	diag sprintf('%s: %d MB over the start (bound %d MB)', $name, int($used / $MB), $bound_mb);
	cmp_ok($used, '<=', $BOUND, "$name: stays under the bound");
}

# a batch of 64 answers of 8,000,000 bytes: 8 at a time, whatever the number
run_case('batch of 64 answers of 8 MB', qq{
SELECT count(*) = 64 AND bool_and(length(completion) = 8000000)
  FROM llm_complete_batch(array_fill('x'::text, ARRAY[64]), 'huge', concurrency => $C);
});
# the same through a stored prompt (rendering in the loop)
run_case('prompt batch of 64 answers of 8 MB', qq{
SELECT llm_prompt_create('huge', 'say {{a}}', model => 'huge');
SELECT count(*) = 64 AND bool_and(length(completion) = 8000000)
  FROM llm_complete_prompt_batch('huge', array_fill('{"a": 1}'::jsonb, ARRAY[64]), concurrency => $C);
});
# a template at both ceilings (500,000 parts, under 4 MB), rendered near M
run_case("template of $N parts rendered to 8 MB", qq{
SELECT llm_prompt_create('wide', repeat('{{a}}', $N), model => 'echo');
SELECT length(llm_render('wide', jsonb_build_object('a', repeat('y', 16))) #>> '{messages,0,content}') = 8000000;
SELECT length(llm_complete_prompt('wide', jsonb_build_object('a', repeat('y', 14)))) = 7000006;
});
# the largest request (the echo's answer cut to one word)
my $words = int(($Q - 4096) / 2);
run_case('request of 16 MB', qq{
SELECT llm_complete(repeat('z ', $words), 'echo',
					options => '{"max_completion_tokens": 1}') = 'echo:';
});

# oversized input: 54000, even beyond what PostgreSQL can allocate at once
sub check_state
{
	my ($name, $sql) = @_;
	my ($out, $err) = ('', '');
	$node->psql(
		'postgres', qq{
SET SESSION AUTHORIZATION mallory;
\\set VERBOSITY sqlstate
$sql
},
		stdout        => \$out,
		stderr        => \$err,
		on_error_stop => 0);
	like("$out\n$err", qr/^(?:psql:<stdin>:\d+: )?ERROR:  54000/m, "$name: refused with SQLSTATE 54000")
	  and diag "$name: 54000";
}
check_state('a 48 MB template of 8M variables',
	"SELECT llm_prompt_create('v8m', repeat('{{a}} ', 8000000));");
check_state('a 120 MB template', "SELECT llm_prompt_create('v120', repeat('{{a}} ', 20000000));");
check_state('a template of ' . ($N + 1) . ' parts',
	"SELECT llm_prompt_create('vn', repeat('{{a}}', " . ($N + 1) . '));');
check_state('a 300 MB prompt', "SELECT llm_complete(repeat('z', 300000000), 'echo');");
check_state('rendering past 8 MB',
	"SELECT llm_render('wide', jsonb_build_object('a', repeat('y', 17)));");
check_state('concurrency ' . ($C + 1),
	"SELECT * FROM llm_complete_batch(ARRAY['a'], 'echo', concurrency => " . ($C + 1) . ');');
diag "every case stayed under $bound_mb MB";

$node->stop;
done_testing();
