# pg_cron schedules the queue: one job enqueues a "nightly" batch every
# minute (pg_cron 1.4, as Debian 12 ships it, has minute granularity) and a
# second records the batches' progress.  The node preloads pg_cron and
# llmext; pg_cron connects over the node's Unix socket, which it trusts.
# Takes up to two minutes.
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
	'pg_cron',
	preload => 'pg_cron,llmext',
	conf    => ["cron.database_name = 'postgres'"]);
# pg_cron's own connections: to the socket, known once the node exists
$node->append_conf('postgresql.conf', "cron.host = '" . $node->host . "'");
$node->restart;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION pg_cron;
CREATE EXTENSION llmext;
SELECT llm_provider_create('fake', current_setting('llmext_test.fake_url'));
SELECT llm_model_create('echo', 'fake', 'echo');
CREATE TABLE tickets (id int PRIMARY KEY, body text, summary text);
INSERT INTO tickets SELECT g, 'ticket number ' || g FROM generate_series(1, 20) g;
CREATE FUNCTION store_summary(request_id bigint, result jsonb) RETURNS void LANGUAGE sql AS $$
	UPDATE tickets t SET summary = result ->> 'content'
	  FROM llm.requests r
	 WHERE r.id = request_id AND t.id = split_part(r.messages -> -1 ->> 'content', ' ', 3)::int
$$;
CREATE TABLE batch_progress (at timestamptz, tag text, total bigint, done bigint);
SELECT cron.schedule('nightly-summaries', '* * * * *', $$
	SELECT count(llm_submit('summarise ticket ' || id, 'echo', tag => 'nightly',
							callback => 'store_summary(bigint, jsonb)'))
	  FROM tickets WHERE summary IS NULL AND NOT EXISTS (SELECT FROM llm.requests WHERE tag = 'nightly')
$$);
SELECT cron.schedule('nightly-progress', '* * * * *', $$
	INSERT INTO batch_progress SELECT now(), tag, total, done FROM llm.batches WHERE tag = 'nightly'
$$);
});

# once a second (pg_cron runs jobs at the start of a minute), up to 150 s
my ($succeeded, $summarised, $progress);
for (1 .. 150)
{
	($succeeded, $summarised, $progress) = split /\|/, $node->safe_psql(
		'postgres', q{
		SELECT (SELECT count(DISTINCT jobid) FROM cron.job_run_details WHERE status = 'succeeded'),
			   (SELECT count(*) FROM tickets WHERE summary IS NOT NULL),
			   (SELECT count(*) > 0 FROM batch_progress WHERE tag = 'nightly' AND total = 20)});
	last if $succeeded == 2 && $summarised == 20 && $progress eq 't';
	sleep 1;
}
is($succeeded, 2, 'both jobs succeeded')
  or diag $node->safe_psql('postgres',
	"SELECT string_agg(return_message, '; ') FROM cron.job_run_details WHERE status <> 'succeeded'");
is($summarised, 20, "the batch's callbacks summarised all 20 tickets");
is($node->safe_psql('postgres', 'SELECT summary FROM tickets WHERE id = 7'),
	'echo: summarise ticket 7', 'ticket 7 has its own summary');
is($progress, 't', "the progress job recorded the batch's progress");

$node->stop;
done_testing();
