# A batch that finishes is announced on channel llm_batch_done, with its tag,
# once.
use strict;
use warnings;

use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = LlmextTest::node('notify');
LlmextTest::wait_for_worker($node);
LlmextTest::create_extension($node);

my $tag = 'notify-batch';
my ($out, $err);
$node->psql(
	'postgres', qq{
	LISTEN llm_batch_done;
	SELECT count(llm_submit('note ' || g, 'echo', tag => '$tag')) FROM generate_series(1, 3) g;
	SELECT llm_wait_batch('$tag', '10 seconds') ->> 'done';
	SELECT pg_sleep(0.2);
	SELECT 'after';
},
	stdout => \$out,
	stderr => \$err);
my $all = "$out\n$err";
like(
	$all,
	qr/Asynchronous notification "llm_batch_done" with payload "$tag" received/,
	'the end of the batch is announced on llm_batch_done with its tag');
my $times = () = $all =~ /payload "$tag"/g;
is($times, 1, 'the batch is announced once');

$node->stop;
done_testing();
