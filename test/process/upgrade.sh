#!/usr/bin/env bash
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
# Starts its own cluster and fake provider.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
fail() { echo "upgrade: $*" >&2; exit 1; }

LLM_PGPORT=$(llm_free_port $((LLM_PGPORT + 500)))
LLM_FAKE_PORT=$(llm_free_port $((LLM_FAKE_PORT + 500)))
trap llm_stop_all EXIT
llm_start_cluster "llmext.databases = 'upgraded_0_1_0'" >/dev/null || fail "could not start a cluster"
llm_start_fake >/dev/null || fail "could not start the fake provider"

q() { psql -XAtq -v ON_ERROR_STOP=1 "$@"; }
current=$(sed -n "s/^default_version = '\(.*\)'/\1/p" llmext.control)

# One line per property of every object that belongs to the extension.
describe() {
	q -d "$1" <<'SQL'
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
SQL
}

versions=$(ls sql/versions/llmext--*.sql | sed -n 's/.*llmext--\([0-9.]*\)\.sql$/\1/p' | grep -vx "$current")
[ -n "$versions" ] || fail "no earlier version under sql/versions"

createdb fresh || fail "createdb"
q -d fresh -c "SET client_min_messages = error" -c "CREATE EXTENSION llmext" || fail "CREATE EXTENSION llmext (fresh $current)"
q -c "CREATE ROLE alice LOGIN IN ROLE llm_user" || fail "CREATE ROLE alice"
describe fresh >"$LLM_WORKDIR/fresh.txt" || fail "describe fresh"
[ "$(wc -l <"$LLM_WORKDIR/fresh.txt")" -gt 200 ] || fail "the description of a fresh install is too short"

for v in $versions; do
	db="upgraded_${v//./_}"
	createdb "$db" || fail "createdb $db"
	q -d "$db" -c "CREATE EXTENSION llmext VERSION '$v'" || fail "CREATE EXTENSION llmext VERSION '$v'"
	# rows of every table the upgrade changes, written as 0.1.0 wrote them
	q -d "$db" >/dev/null <<'SQL' || fail "rows for $v"
SELECT llm_provider_create('p', current_setting('llmext_test.fake_url'), api_key => 'sk-test-upgrade');
SELECT llm_model_create('m', 'p', 'echo');
SET ROLE alice;
SELECT llm_prompt_create('alice-summary', 'Summarise {{text}}');
SELECT llm_prompt_create('alice-summary', 'Summarise briefly {{text}}');
SELECT llm_submit('hello', 'm', tag => 'before-upgrade');
RESET ROLE;
INSERT INTO llm.calls (entry_id, created_at, role, database, model, provider, outcome, cost_usd)
VALUES ('e1', now(), 'alice', current_database(), 'm', 'p', 'ok', 0.25);
INSERT INTO llm.spend_daily (day, role, cost_usd) VALUES (current_date, 'alice', 0.25);
UPDATE llm.requests SET priority = 5000 WHERE tag = 'before-upgrade';
SQL
	if [ "$db" = upgraded_0_1_0 ]; then
		# the worker (back within 5 s of the database's creation) leaves it queued
		for _ in $(seq 1 100); do
			grep -q "llmext in database \"$db\" is version $v, the library is version $current" \
				"$LLM_WORKDIR/postgres.log" && break
			sleep 0.1
		done
		grep -q "is version $v, the library is version $current" "$LLM_WORKDIR/postgres.log" ||
			fail "the worker did not say it waits for the update of $db"
		sleep 1
		state=$(q -d "$db" -c "SELECT state FROM llm.requests")
		[ "$state" = queued ] || fail "the worker took a request before the update: $state"
	fi
	q -d "$db" -c "ALTER EXTENSION llmext UPDATE" || fail "ALTER EXTENSION llmext UPDATE from $v"
	[ "$(q -d "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'llmext'")" = "$current" ] ||
		fail "the update from $v did not reach $current"
	describe "$db" >"$LLM_WORKDIR/$db.txt" || fail "describe $db"
	if ! diff -u "$LLM_WORKDIR/fresh.txt" "$LLM_WORKDIR/$db.txt" >"$LLM_WORKDIR/$db.diff"; then
		head -n 80 "$LLM_WORKDIR/$db.diff" >&2
		fail "upgraded from $v differs from a fresh $current (- fresh, + upgraded)"
	fi

	# the carried rows, as their owner sees them (logged in: rows from before
	# the update count as made by their own login)
	got=$(q -d "$db" -U alice -c "
		SELECT (SELECT count(*) FROM llm.calls WHERE entry_id = 'e1')
			|| ' ' || (SELECT login_role FROM llm.calls WHERE entry_id = 'e1')
			|| ' ' || (SELECT count(*) FROM llm.requests) || ' ' || (SELECT priority FROM llm.requests)
			|| ' ' || (SELECT owner FROM llm.prompt_owners WHERE name = 'alice-summary')
			|| ' ' || (SELECT max(version) FROM llm.prompts)")
	[ "$got" = "1 alice 1 1000 alice 2" ] ||
		fail "rows after the update from $v (calls, login, requests, priority, owner, versions): $got"
	# and the new rules hold for them: alice adds a version, nobody else may
	q -d "$db" -c "CREATE ROLE bob_$db LOGIN IN ROLE llm_user" >/dev/null
	[ "$(q -d "$db" -U alice -c "SELECT llm_prompt_create('alice-summary', 'v3 {{text}}')")" = 3 ] ||
		fail "alice could not add a version to her prompt after the update"
	err=$(q -d "$db" -U "bob_$db" -c "SELECT llm_prompt_create('alice-summary', 'mine')" 2>&1)
	case $err in
	*"permission denied to add a version to prompt"*) ;;
	*) fail "another role added a version to alice's prompt after the update: $err" ;;
	esac
	if [ "$db" = upgraded_0_1_0 ]; then
		done=$(q -d "$db" -U alice -c "SELECT llm_wait_batch('before-upgrade', '20 seconds') ->> 'done'")
		[ "$done" = 1 ] || fail "the request queued before the update was not served after it: $done"
		answer=$(q -d "$db" -U alice -c "SELECT state || ' ' || login_role FROM llm.requests")
		[ "$answer" = "done alice" ] || fail "the request queued before the update: $answer"
	fi
	echo "upgrade: $v -> $current equals a fresh $current ($(wc -l <"$LLM_WORKDIR/fresh.txt") properties); rows carried"
done
