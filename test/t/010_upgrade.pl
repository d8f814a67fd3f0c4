# An installation upgraded along the upgrade scripts equals a fresh one.
# For every earlier version V (a frozen sql/versions/llmext--V.sql): one
# database gets CREATE EXTENSION llmext VERSION 'V', some rows of every kind
# the upgrade has to carry, then ALTER EXTENSION llmext UPDATE; another gets
# the current version fresh.  The two must describe alike: every object of
# the extension with its definition, columns, constraints, indexes,
# policies, privileges, comments, settings and dump configuration.  The
# carried rows must still be there, and readable by their owners.
# A worker serves the upgraded database: it leaves the queue alone while the
# installed version is older than the library, and serves the request queued
# before the update once it is done.
use strict;
use warnings;

use LlmextTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $root = $LlmextTest::root;
my ($current) = slurp_file("$root/llmext.control") =~ /^default_version = '(.*)'/m;
my @versions = grep { $_ ne $current }
  map { m{/llmext--([0-9.]+)\.sql$} ? $1 : () } glob("$root/sql/versions/llmext--*.sql");
ok(@versions > 0, "earlier versions under sql/versions: @versions");

my $node = LlmextTest::node('upgrade', conf => ["llmext.databases = 'upgraded_0_1_0, eval_0_3_0'"]);

# One line per property of every object that belongs to the extension.
my $describe = q{
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'llmext'),
members AS (
	SELECT d.classid, d.objid
	  FROM pg_depend d, ext
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
),
rels AS (
	SELECT c.oid, c.oid::regclass::text AS name, c.relkind, c.relacl, c.reloptions, c.relrowsecurity
	  FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
),
lines AS (
	SELECT 'object ' || pg_describe_object(m.classid, m.objid, 0) AS line FROM members m
	UNION ALL
	SELECT format('function %s: %s acl=%s comment=%s', p.oid::regprocedure,
				  pg_get_functiondef(p.oid), p.proacl, obj_description(p.oid, 'pg_proc'))
	  FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
	UNION ALL
	SELECT format('relation %s: kind=%s acl=%s options=%s rls=%s comment=%s', r.name, r.relkind,
				  r.relacl, r.reloptions, r.relrowsecurity, obj_description(r.oid, 'pg_class'))
	  FROM rels r
	UNION ALL
	-- columns by their place among the live ones: a dropped column leaves a gap in attnum
	SELECT format('column %s #%s %s %s notnull=%s default=%s comment=%s', r.name,
				  row_number() OVER (PARTITION BY r.oid ORDER BY a.attnum), a.attname,
				  format_type(a.atttypid, a.atttypmod), a.attnotnull,
				  pg_get_expr(ad.adbin, ad.adrelid), col_description(r.oid, a.attnum))
	  FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
	  LEFT JOIN pg_attrdef ad ON ad.adrelid = r.oid AND ad.adnum = a.attnum
	UNION ALL
	SELECT format('constraint %s %s: %s', r.name, c.conname, pg_get_constraintdef(c.oid))
	  FROM rels r JOIN pg_constraint c ON c.conrelid = r.oid
	UNION ALL
	SELECT format('index %s', pg_get_indexdef(i.indexrelid))
	  FROM rels r JOIN pg_index i ON i.indrelid = r.oid
	UNION ALL
	SELECT format('policy %s %s: %s %s using=%s check=%s', r.name, p.polname, p.polcmd, p.polroles,
				  pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
	  FROM rels r JOIN pg_policy p ON p.polrelid = r.oid
	UNION ALL
	SELECT format('trigger %s', pg_get_triggerdef(t.oid))
	  FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
	UNION ALL
	SELECT format('view %s: %s', r.name, pg_get_viewdef(r.oid))
	  FROM rels r WHERE r.relkind IN ('v', 'm')
	UNION ALL
	SELECT format('dumped %s where %s', c::regclass, w)
	  FROM ext e JOIN pg_extension x ON x.oid = e.oid,
		   unnest(x.extconfig, x.extcondition) AS u(c, w)
	UNION ALL
	SELECT format('schema %s acl=%s comment=%s', n.nspname, n.nspacl, obj_description(n.oid, 'pg_namespace'))
	  FROM pg_namespace n JOIN members m ON m.classid = 'pg_namespace'::regclass AND m.objid = n.oid
)
SELECT line FROM lines ORDER BY line;
};

sub describe
{
	my ($db) = @_;
	my $file = "$PostgreSQL::Test::Utils::tmp_check/$db.txt";
	append_to_file($file, $node->safe_psql($db, $describe) . "\n");
	return $file;
}

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', "SET client_min_messages = error; CREATE EXTENSION llmext");
$node->safe_psql('postgres', 'CREATE ROLE alice LOGIN IN ROLE llm_user');
my $fresh = describe('fresh');
my $properties = () = slurp_file($fresh) =~ /\n/g;
cmp_ok($properties, '>', 200, "a fresh $current has more than 200 properties ($properties)");

for my $v (@versions)
{
	(my $db = "upgraded_$v") =~ tr/./_/;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION llmext VERSION '$v'");
	# rows of every table the upgrade changes, written as 0.1.0 wrote them
	$node->safe_psql(
		$db, q{
SELECT llm_provider_create('p', current_setting('llmext_test.fake_url'), api_key => 'sk-test-upgrade');
SELECT llm_model_create('m', 'p', 'echo');
SET ROLE alice;
SELECT llm_prompt_create('alice-summary', 'Summarise {{text}}');
SELECT llm_prompt_create('alice-summary', 'Summarise briefly {{text}}');
SELECT llm_submit('hello', 'm', tag => 'before-upgrade');
RESET ROLE;
SELECT llm_prompt_deploy('alice-summary', 1, 'production', 'm');
SELECT llm_prompt_split('alice-summary', 'canary', ARRAY[1, 2], ARRAY[0.5, 0.5]);
SELECT llm_budget_set('alice', 'day', 10);
});
	# 0.1.0 had no bound on priorities: the update clamps them
	my $priority = '0';
	if ($v eq '0.1.0')
	{
		$node->safe_psql($db, "UPDATE llm.requests SET priority = 5000 WHERE tag = 'before-upgrade'");
		$priority = '1000';
	}
	# a ledger row and its daily spend, in the columns the version has
	# (0.2.0 added login_role)
	my $login = $node->safe_psql($db,
		"SELECT count(*) FROM pg_attribute WHERE attrelid = 'llm.calls'::regclass AND attname = 'login_role'") ? ', login_role' : '';
	my $login_value = $login ? ", 'alice'" : '';
	$node->safe_psql($db,
		"INSERT INTO llm.calls (entry_id, created_at, role, database, model, provider, outcome, cost_usd$login)
		 VALUES ('e1', now(), 'alice', current_database(), 'm', 'p', 'ok', 0.25$login_value);
		 INSERT INTO llm.spend_daily (day, role, cost_usd$login) VALUES (current_date, 'alice', 0.25$login_value);");
	if ($db eq 'upgraded_0_1_0')
	{
		# the worker (back within 5 s of the database's creation) leaves it queued
		ok( eval {
				$node->wait_for_log(
					qr/llmext in database "$db" is version \Q$v\E, the library is version \Q$current\E/);
			},
			"the worker says it waits for the update of $db");
		sleep 1;
		is($node->safe_psql($db, 'SELECT state FROM llm.requests'),
			'queued', 'the worker takes no request before the update');
	}
	$node->safe_psql($db, 'ALTER EXTENSION llmext UPDATE');
	is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'llmext'"),
		$current, "the update from $v reaches $current");
	my $upgraded = describe($db);
	my $diff = `diff -u '$fresh' '$upgraded'`;
	is($diff, '', "upgraded from $v equals a fresh $current, property by property")
	  or diag join("\n", (split /\n/, $diff)[ 0 .. 79 ]);
	if ($v eq '0.3.0')
	{
		# 0.3.0 scored each evaluation answer in a callback: a run queued then
		# (in a database of its own, served by a worker) is scored after the update
		$node->safe_psql('postgres', 'CREATE DATABASE eval_0_3_0');
		$node->safe_psql(
			'eval_0_3_0', q{
CREATE EXTENSION llmext VERSION '0.3.0';
SELECT llm_provider_create('p', current_setting('llmext_test.fake_url'), api_key => 'sk-test-upgrade');
SELECT llm_model_create('m', 'p', 'echo');
SET ROLE alice;
SELECT llm_eval_set_create('up');
SELECT llm_eval_cases_add('up', $$SELECT 'k' || i AS key, 'question ' || i AS input,
	to_jsonb('echo: question ' || i) AS expected FROM generate_series(1, 4) i$$);
SELECT llm_eval_run('up', '[{"name": "e", "model": "m"}, {"name": "s", "model": "m", "system": "x"}]',
					repeats => 2);
RESET ROLE;
ALTER EXTENSION llmext UPDATE;
});
		is( $node->safe_psql('eval_0_3_0', "SELECT llm_eval_wait(1, '30 seconds') ->> 'state'",
				extra_params => [ '-U', 'alice' ]),
			'done', "an evaluation run queued with $v ends after the update");
		# (the echo model answers the last user message: both variants pass)
		is( $node->safe_psql(
				'eval_0_3_0', q{
			SELECT (SELECT string_agg(variant || ':' || results || '/' || pending || '/' || mean_score, ' '
									  ORDER BY variant) FROM llm.eval_report WHERE run = 1)
				|| ' ' || (SELECT count(*) FROM llm.eval_results WHERE run = 1 AND passed)},
				extra_params => [ '-U', 'alice' ]),
			'e:8/0/1 s:8/0/1 16',
			"its answers are scored and summed up in its report");
	}

	# the carried rows, as their owner sees them (logged in: rows from before
	# the update count as made by their own login)
	my @alice = (extra_params => [ '-U', 'alice' ]);
	is( $node->safe_psql(
			$db, q{
		SELECT (SELECT count(*) FROM llm.calls WHERE entry_id = 'e1')
			|| ' ' || (SELECT login_role FROM llm.calls WHERE entry_id = 'e1')
			|| ' ' || (SELECT count(*) FROM llm.requests) || ' ' || (SELECT priority FROM llm.requests)
			|| ' ' || (SELECT owner FROM llm.prompt_owners WHERE name = 'alice-summary')
			|| ' ' || (SELECT max(version) FROM llm.prompts)},
			@alice),
		"1 alice 1 $priority alice 2",
		"rows carried from $v (calls, login, requests, priority, owner, versions)");
	# labels, their history and budgets are carried, and work with the new functions
	is( $node->safe_psql(
			$db, q{
		SELECT (SELECT count(*) FROM llm.prompt_labels WHERE name = 'alice-summary')
			|| ' ' || (SELECT count(*) FROM llm.prompt_label_history WHERE name = 'alice-summary')
			|| ' ' || (llm_render('alice-summary', '{"text": "x"}', label => 'production') ->> 'version')
			|| ' ' || (SELECT limit_usd FROM llm_budget_status() WHERE role = 'alice')
			|| ' ' || (SELECT spent_usd FROM llm_budget_status() WHERE role = 'alice')},
			@alice),
		'2 2 1 10 0.25',
		"labels, label history and budgets carried from $v (labels, moves, production version, limit, spent)");
	$node->safe_psql($db, "SELECT llm_prompt_deploy('alice-summary', 2)");
	$node->safe_psql($db, "SELECT llm_prompt_rollback('alice-summary')");
	is( $node->safe_psql($db,
			"SELECT llm_render('alice-summary', '{\"text\": \"x\"}') ->> 'version'"),
		'1', "deploy and rollback work on a label carried from $v");
	# and the new rules hold for them: alice adds a version, nobody else may
	$node->safe_psql($db, "CREATE ROLE bob_$db LOGIN IN ROLE llm_user");
	is($node->safe_psql($db, "SELECT llm_prompt_create('alice-summary', 'v3 {{text}}')", @alice),
		'3', 'alice adds a version to her prompt after the update');
	my ($out, $err);
	$node->psql(
		$db, "SELECT llm_prompt_create('alice-summary', 'mine')",
		extra_params => [ '-U', "bob_$db" ],
		stdout => \$out,
		stderr => \$err);
	like($err, qr/permission denied to add a version to prompt/,
		"another role may not add a version to alice's prompt after the update");
	if ($db eq 'upgraded_0_1_0')
	{
		is( $node->safe_psql($db,
				"SELECT llm_wait_batch('before-upgrade', '20 seconds') ->> 'done'", @alice),
			'1',
			'the request queued before the update is served after it');
		is($node->safe_psql($db, "SELECT state || ' ' || login_role FROM llm.requests", @alice),
			'done alice', "the request queued before the update is alice's, and done");
	}
}

$node->stop;
done_testing();
