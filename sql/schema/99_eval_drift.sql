-- Evaluation drift: a watch re-runs an evaluation set against what a stored
-- prompt's label serves now, on a pg_cron schedule, and llm.eval_drift
-- compares the latest score with the score right after the label last
-- moved (a deploy, split or rollback: a promotion).  A drop beyond the
-- watch's threshold is announced on channel llm_eval_drift when the run
-- that shows it ends.
--
-- This file sorts before 99_eval_report.sql: the view reads the mean
-- score from llm.eval_variant_stats (98_eval_collect.sql), the same sums
-- llm.eval_report's mean_score is computed from, rather than the report.

CREATE TABLE llm.eval_watches (
	id				bigserial PRIMARY KEY,
	set_name		text NOT NULL REFERENCES llm.eval_sets,
	prompt			text NOT NULL,
	label			text NOT NULL,
	schedule		text NOT NULL,		-- pg_cron syntax, minutes (UTC with pg_cron 1.4)
	threshold		numeric NOT NULL CHECK (threshold >= 0 AND threshold < 1),
	scorer			jsonb NOT NULL DEFAULT '{"type": "exact"}' CHECK (jsonb_typeof(scorer) = 'object'),
	job_name		text NOT NULL,		-- the pg_cron job's name: 'llm-eval-watch-<id>'
	owner			name NOT NULL,
	login_role		name NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE llm.eval_watches IS
	'evaluation watches: a set re-run on a schedule against a prompt label''s current variant, with the drop in score that counts as drift';

-- Each run a watch queued, and where the label stood when it was queued:
-- runs queued under the same label move are comparable.
CREATE TABLE llm.eval_watch_runs (
	watch			bigint NOT NULL REFERENCES llm.eval_watches ON DELETE CASCADE,
	run				bigint NOT NULL REFERENCES llm.eval_runs ON DELETE CASCADE,
	label_move		bigint,				-- llm.prompt_label_history.id of the label's last move then
	variants		jsonb NOT NULL,		-- what the label pointed at then
	notified_at		timestamptz,		-- when its drift was announced on llm_eval_drift
	PRIMARY KEY (watch, run)
);
CREATE INDEX eval_watch_runs_run_idx ON llm.eval_watch_runs (run);
COMMENT ON TABLE llm.eval_watch_runs IS
	'the runs of each evaluation watch, with the label''s position when each was queued';

SELECT pg_catalog.pg_extension_config_dump('llm.eval_watches', '');
SELECT pg_catalog.pg_extension_config_dump('llm.eval_watches_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('llm.eval_watch_runs', '');

-- The rule of llm.eval_runs: own rows by acting and login role, and llm_admin.
ALTER TABLE llm.eval_watches ENABLE ROW LEVEL SECURITY;
CREATE POLICY eval_watches_own_rows ON llm.eval_watches FOR SELECT
	USING ((owner = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
ALTER TABLE llm.eval_watch_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY eval_watch_runs_own_rows ON llm.eval_watch_runs FOR SELECT
	USING (watch IN (SELECT w.id FROM llm.eval_watches w));
GRANT SELECT ON llm.eval_watches, llm.eval_watch_runs TO llm_user;

-- Per watch: the baseline (the first run queued after the label's last
-- move to have finished), the latest finished run queued since that move,
-- and the drop between their mean scores.  Runs are ordered by id (the
-- order they were queued in).  Runs queued before the move measured what
-- the label served before: they count for nothing here.
CREATE VIEW llm.eval_drift WITH (security_invoker = true) AS
SELECT w.id AS watch, w.set_name, w.prompt, w.label, w.schedule, w.threshold,
	   mv.changed_at AS label_moved_at,
	   b.run AS baseline_run, b.score AS baseline_score,
	   l.run AS latest_run, l.score AS latest_score, l.finished_at AS latest_finished_at,
	   b.score - l.score AS score_drop,
	   coalesce(b.score - l.score > w.threshold, false) AS drifted,
	   l.notified_at, n.runs, w.owner
  FROM llm.eval_watches w
  LEFT JOIN LATERAL (
		SELECT h.id, h.changed_at FROM llm.prompt_label_history h
		 WHERE h.name = w.prompt AND h.label = w.label
		 ORDER BY h.id DESC LIMIT 1) mv ON true
  LEFT JOIN LATERAL (
		SELECT wr.run, (s.score_sum / nullif(s.scored_cases, 0))::double precision AS score
		  FROM llm.eval_watch_runs wr
		  JOIN llm.eval_runs r ON r.id = wr.run AND r.state = 'done'
		  LEFT JOIN llm.eval_variant_stats s ON s.run = wr.run AND s.variant = w.label
		 WHERE wr.watch = w.id AND wr.label_move IS NOT DISTINCT FROM mv.id
		 ORDER BY wr.run LIMIT 1) b ON true
  LEFT JOIN LATERAL (
		SELECT wr.run, (s.score_sum / nullif(s.scored_cases, 0))::double precision AS score,
			   r.finished_at, wr.notified_at
		  FROM llm.eval_watch_runs wr
		  JOIN llm.eval_runs r ON r.id = wr.run AND r.state = 'done'
		  LEFT JOIN llm.eval_variant_stats s ON s.run = wr.run AND s.variant = w.label
		 WHERE wr.watch = w.id AND wr.label_move IS NOT DISTINCT FROM mv.id
		 ORDER BY wr.run DESC LIMIT 1) l ON true
  LEFT JOIN LATERAL (
		SELECT count(*) AS runs
		  FROM llm.eval_watch_runs wr
		  JOIN llm.eval_runs r ON r.id = wr.run AND r.state = 'done'
		 WHERE wr.watch = w.id AND wr.label_move IS NOT DISTINCT FROM mv.id) n ON true;
COMMENT ON VIEW llm.eval_drift IS
	'per evaluation watch: the score right after the label last moved, the latest score, the drop, and whether it exceeds the threshold';
GRANT SELECT ON llm.eval_drift TO llm_user;

-- A pg_cron schedule (five fields, minute granularity, as pg_cron 1.4
-- reads it), with its fields separated by one space; else 22023.  pg_cron
-- checks it again when it schedules the job; this check is what a watch
-- gets when pg_cron is not installed.
CREATE FUNCTION llm._eval_cron_schedule(schedule text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	fields text[] := regexp_split_to_array(btrim(lower(schedule)), '\s+');
	low integer[] := ARRAY[0, 0, 1, 1, 0];
	high integer[] := ARRAY[59, 23, 31, 12, 7];
	names text[] := ARRAY[NULL, NULL, NULL,
						  'jan feb mar apr may jun jul aug sep oct nov dec', 'sun mon tue wed thu fri sat'];
	item text;
	parts text[];
	value text;
	bad boolean := false;
BEGIN
	IF btrim(lower(schedule)) IN ('@yearly', '@annually', '@monthly', '@weekly', '@daily', '@hourly') THEN
		RETURN btrim(lower(schedule));
	END IF;
	IF cardinality(fields) <> 5 THEN
		bad := true;
	ELSE
		<<fields>>
		FOR i IN 1 .. 5 LOOP
			FOREACH item IN ARRAY string_to_array(fields[i], ',') LOOP
				parts := regexp_match(item, '^(\*|([0-9]+|[a-z]{3})(-([0-9]+|[a-z]{3}))?)(/([0-9]+))?$');
				IF parts IS NULL OR (parts[6] IS NOT NULL AND (length(parts[6]) > 3 OR parts[6]::integer < 1)) THEN
					bad := true;
					EXIT fields;
				END IF;
				FOREACH value IN ARRAY ARRAY[parts[2], parts[4]] LOOP
					CONTINUE WHEN value IS NULL;
					IF value ~ '^[0-9]+$' THEN
						bad := length(value) > 3 OR value::integer NOT BETWEEN low[i] AND high[i];
					ELSE
						bad := names[i] IS NULL OR NOT value = ANY (string_to_array(names[i], ' '));
					END IF;
					EXIT fields WHEN bad;
				END LOOP;
			END LOOP;
		END LOOP;
	END IF;
	IF bad THEN
		RAISE EXCEPTION 'invalid schedule "%"', schedule
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give a cron schedule: minute hour day-of-month month day-of-week, e.g. ''0 3 * * *'' for 03:00 every day (UTC with pg_cron 1.4, which has no seconds).';
	END IF;
	RETURN array_to_string(fields, ' ');
END
$$;
REVOKE ALL ON FUNCTION llm._eval_cron_schedule(text) FROM PUBLIC;

-- The watch, if caller may run, check or remove it; else 42704.
CREATE FUNCTION llm._eval_watch_of(caller name, login name, watch bigint)
RETURNS llm.eval_watches
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w llm.eval_watches;
BEGIN
	IF watch IS NULL THEN
		RAISE EXCEPTION 'the evaluation watch must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO w FROM llm.eval_watches e WHERE e.id = watch;
	IF NOT FOUND OR NOT llm._eval_owns(caller, login, w.owner, w.login_role) THEN
		RAISE EXCEPTION 'evaluation watch % does not exist', watch
			USING ERRCODE = 'undefined_object',
				  HINT = 'List yours with SELECT * FROM llm.eval_watches.';
	END IF;
	RETURN w;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_of(name, name, bigint) FROM PUBLIC;

-- Announces the watch's drift, once per run: when the latest finished run
-- since the label's last move dropped beyond the threshold and was not
-- announced yet.  The payload names the watch, the run and the drop, and
-- nothing else: NOTIFY has no privileges, every session that listens on
-- llm_eval_drift in the database receives it; the rest is in
-- llm.eval_drift, under row level security.  Whether the watch drifted.
CREATE FUNCTION llm._eval_watch_announce(watch_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	d record;
BEGIN
	SELECT * INTO d FROM llm.eval_drift e WHERE e.watch = watch_id;
	IF NOT FOUND OR NOT d.drifted THEN
		RETURN false;
	END IF;
	-- the row lock makes one of two sessions checking at once the announcer
	UPDATE llm.eval_watch_runs wr SET notified_at = now()
	 WHERE wr.watch = watch_id AND wr.run = d.latest_run AND wr.notified_at IS NULL;
	IF FOUND THEN
		PERFORM pg_notify('llm_eval_drift',
						  jsonb_build_object('watch', watch_id, 'run', d.latest_run,
											 'drop', round(d.score_drop::numeric, 6))::text);
	END IF;
	RETURN true;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_announce(bigint) FROM PUBLIC;

-- When a run ends done, its watches (if it is a watch's run) are checked:
-- the drift is announced as soon as the run that shows it is scored, by
-- whichever process ends the run (the scorer, the worker, llm_eval_wait).
-- A failed check must not undo the end of the run: it is a warning.
CREATE FUNCTION llm._eval_watch_run_ended()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	watch_id bigint;
BEGIN
	FOR watch_id IN SELECT wr.watch FROM llm.eval_watch_runs wr WHERE wr.run = NEW.id LOOP
		BEGIN
			PERFORM llm._eval_watch_announce(watch_id);
		EXCEPTION WHEN OTHERS THEN
			RAISE WARNING 'could not check evaluation watch % for drift: %', watch_id, SQLERRM
				USING HINT = format('SELECT llm_eval_watch_check(%s) checks it again.', watch_id);
		END;
	END LOOP;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_run_ended() FROM PUBLIC;
CREATE TRIGGER eval_runs_watch_ended AFTER UPDATE OF state ON llm.eval_runs
	FOR EACH ROW WHEN (NEW.state = 'done' AND OLD.state IS DISTINCT FROM 'done')
	EXECUTE FUNCTION llm._eval_watch_run_ended();

-- Records a watch for llm_eval_watch, which schedules it as the caller.
CREATE FUNCTION llm.llm_eval_watch_store(set text, label text, every text, threshold numeric,
										 prompt text, scorer jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;

CREATE FUNCTION llm._eval_watch_store(caller name, login name, set text, label text, every text,
									  threshold numeric, prompt text, scorer jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s llm.eval_sets;
	fn regprocedure;
	watch_id bigint;
BEGIN
	IF set IS NULL OR label IS NULL OR every IS NULL OR threshold IS NULL THEN
		RAISE EXCEPTION 'the set, label, schedule and threshold must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	s := llm._eval_set_of(caller, login, set);
	-- the label of a prompt: 'prompt:label', or the label with prompt => ...
	-- (neither name may hold a ":")
	IF prompt IS NULL THEN
		IF position(':' IN label) = 0 THEN
			RAISE EXCEPTION 'name the prompt of label "%"', label
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Give the label as ''prompt:label'', e.g. ''triage:production'', or add prompt => ''triage''.';
		END IF;
		prompt := split_part(label, ':', 1);
		label := substr(label, position(':' IN label) + 1);
	ELSIF position(':' IN label) > 0 THEN
		RAISE EXCEPTION 'give the prompt once: label "%" and prompt "%"', label, prompt
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT EXISTS (SELECT FROM llm.prompts p WHERE p.name = prompt) THEN
		RAISE EXCEPTION 'prompt "%" does not exist', prompt
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it with llm_prompt_create.';
	END IF;
	IF NOT EXISTS (SELECT FROM llm.prompt_labels l WHERE l.name = prompt AND l.label = _eval_watch_store.label) THEN
		RAISE EXCEPTION 'prompt "%" has no label "%"', prompt, label
			USING ERRCODE = 'undefined_object',
				  HINT = format('List them with SELECT label FROM llm.prompt_labels WHERE name = %L.', prompt);
	END IF;
	IF threshold = 'NaN' OR threshold < 0 OR threshold >= 1 THEN
		RAISE EXCEPTION 'invalid threshold %', threshold
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The threshold is the drop in mean score (0 to 1) that counts as drift, from 0 up to but not including 1: 0.05 is 5 points.';
	END IF;
	every := llm._eval_cron_schedule(every);
	-- the scorer is checked as llm_eval_run checks it, so that a mistake
	-- shows now rather than in the first scheduled run's error
	scorer := coalesce(scorer, '{"type": "exact"}');
	IF jsonb_typeof(scorer) <> 'object' OR jsonb_typeof(scorer -> 'type') IS DISTINCT FROM 'string' THEN
		RAISE EXCEPTION 'a scorer is a JSON object with a "type"' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF scorer ->> 'type' = 'function' THEN
		fn := to_regprocedure((scorer ->> 'function') || '(text, jsonb, jsonb)');
		IF fn IS NULL OR NOT has_function_privilege(caller, fn, 'EXECUTE') THEN
			RAISE EXCEPTION 'function %(text, jsonb, jsonb) does not exist', scorer ->> 'function'
				USING ERRCODE = 'undefined_function';
		END IF;
	ELSIF scorer ->> 'type' = 'judge' THEN
		IF NOT EXISTS (SELECT FROM llm.prompts p WHERE p.name = scorer ->> 'prompt') THEN
			RAISE EXCEPTION 'the judge scorer''s prompt "%" does not exist', scorer ->> 'prompt'
				USING ERRCODE = 'undefined_object';
		END IF;
	ELSE
		-- refuses an unknown scorer; with no output an embedding_similarity
		-- scorer checks its model and sends no request
		PERFORM @extschema@.llm_eval_score(scorer,
			CASE WHEN scorer ->> 'type' <> 'embedding_similarity' THEN 'x' END, '"x"', '{}');
	END IF;
	watch_id := nextval('llm.eval_watches_id_seq');
	INSERT INTO llm.eval_watches (id, set_name, prompt, label, schedule, threshold, scorer, job_name,
								  owner, login_role)
	VALUES (watch_id, s.name, prompt, label, every, threshold, scorer, 'llm-eval-watch-' || watch_id,
			caller, login);
	RETURN watch_id;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_store(name, name, text, text, text, numeric, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.llm_eval_watch_store(text, text, text, numeric, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.llm_eval_watch_store(text, text, text, numeric, text, jsonb) TO llm_user;

-- Records the watch (through the gate above), then schedules its job with
-- the caller's own rights: pg_cron runs a job as the role that scheduled
-- it, so a job scheduled by a SECURITY DEFINER body would run the
-- caller's watch as the extension's owner.  Without pg_cron, or without
-- the right to use it, the statement to run is returned as the recipe.
CREATE FUNCTION llm_eval_watch(set text, label text, every text, threshold numeric,
							   prompt text DEFAULT NULL, scorer jsonb DEFAULT '{"type": "exact"}',
							   OUT watch bigint, OUT job bigint, OUT recipe text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w llm.eval_watches;
BEGIN
	watch := llm.llm_eval_watch_store(set, label, every, threshold, prompt, scorer);
	SELECT * INTO w FROM llm.eval_watches e WHERE e.id = watch;
	recipe := format('SELECT cron.schedule(%L, %L, %L)', w.job_name, w.schedule,
					 format('SELECT %s.llm_eval_watch_run(%s)', '@extschema@', watch));
	IF NOT EXISTS (SELECT FROM pg_extension x WHERE x.extname = 'pg_cron') THEN
		RAISE NOTICE 'pg_cron is not installed in this database: watch % runs when llm_eval_watch_run(%) is called', watch, watch
			USING HINT = 'Install pg_cron here (the database of cron.database_name) and run the recipe: ' || recipe || ';';
	ELSIF NOT has_schema_privilege('cron', 'USAGE') THEN
		RAISE NOTICE 'role "%" may not schedule pg_cron jobs: watch % runs when llm_eval_watch_run(%) is called', current_user, watch, watch
			USING HINT = format('A superuser runs GRANT USAGE ON SCHEMA cron TO %I; then run the recipe as %I: %s;',
								current_user, current_user, recipe);
	ELSE
		EXECUTE recipe INTO job;
	END IF;
END
$$;
COMMENT ON FUNCTION llm_eval_watch(text, text, text, numeric, text, jsonb) IS
	'watch a prompt label''s score on an evaluation set: re-run it on a pg_cron schedule (the job, or the recipe to schedule it) and flag a drop beyond threshold';

-- One scheduled re-evaluation: queues the set against the label's
-- current variant (the label is resolved now, as llm_eval_run resolves
-- it), unless the watch's previous run is still running.  The run id, or
-- NULL when nothing was queued.
CREATE FUNCTION llm_eval_watch_run(watch bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_watch_run(bigint) IS
	'run an evaluation watch once (what its pg_cron job calls): the queued run''s id, NULL while the previous one still runs';

CREATE FUNCTION llm._eval_watch_run(caller name, login name, watch bigint)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w llm.eval_watches := llm._eval_watch_of(caller, login, watch);
	variants jsonb;
	move bigint;
	busy bigint;
	run_id bigint;
BEGIN
	-- a run that ended unannounced (its check failed) is announced now
	PERFORM llm._eval_watch_announce(w.id);
	SELECT wr.run INTO busy FROM llm.eval_watch_runs wr JOIN llm.eval_runs r ON r.id = wr.run
	 WHERE wr.watch = w.id AND r.state = 'running' ORDER BY wr.run DESC LIMIT 1;
	IF FOUND THEN
		RAISE NOTICE 'run % of evaluation watch % is still running: nothing queued', busy, w.id;
		RETURN NULL;
	END IF;
	-- the label cannot move until this run is queued: the move recorded is
	-- the one the run renders with
	SELECT l.variants INTO variants FROM llm.prompt_labels l
	 WHERE l.name = w.prompt AND l.label = w.label FOR SHARE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'prompt "%" has no label "%"', w.prompt, w.label
			USING ERRCODE = 'undefined_object';
	END IF;
	SELECT max(h.id) INTO move FROM llm.prompt_label_history h WHERE h.name = w.prompt AND h.label = w.label;
	run_id := llm._eval_run(caller, login, w.set_name,
							jsonb_build_array(jsonb_build_object('name', w.label, 'prompt', w.prompt,
																 'label', w.label)),
							1, w.scorer, NULL);
	INSERT INTO llm.eval_watch_runs (watch, run, label_move, variants) VALUES (w.id, run_id, move, variants);
	RETURN run_id;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_run(name, name, bigint) FROM PUBLIC;

CREATE FUNCTION llm_eval_watch_check(watch bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_eval_watch_check(bigint) IS
	'whether an evaluation watch''s latest score dropped beyond its threshold; announces it on llm_eval_drift if not yet done';

CREATE FUNCTION llm._eval_watch_check(caller name, login name, watch bigint)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN llm._eval_watch_announce((llm._eval_watch_of(caller, login, watch)).id);
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_check(name, name, bigint) FROM PUBLIC;

-- Removes a watch for llm_eval_unwatch: its pg_cron job's name.
CREATE FUNCTION llm.llm_eval_watch_drop(watch bigint)
RETURNS text
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;

CREATE FUNCTION llm._eval_watch_drop(caller name, login name, watch bigint)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w llm.eval_watches := llm._eval_watch_of(caller, login, watch);
BEGIN
	DELETE FROM llm.eval_watches e WHERE e.id = w.id;
	RETURN w.job_name;
END
$$;
REVOKE ALL ON FUNCTION llm._eval_watch_drop(name, name, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm.llm_eval_watch_drop(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm.llm_eval_watch_drop(bigint) TO llm_user;

-- Removes the watch (its runs stay), then its pg_cron job with the
-- caller's own rights, as it was scheduled.  A job the caller may not
-- remove (another role's: an llm_admin removing a user's watch) is named
-- in a warning; it then fails on every run, as the watch is gone.
CREATE FUNCTION llm_eval_unwatch(watch bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	job_name text := llm.llm_eval_watch_drop(watch);
	removed bigint := 0;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_extension x WHERE x.extname = 'pg_cron') THEN
		RETURN true;
	END IF;
	IF has_schema_privilege('cron', 'USAGE') THEN
		-- cron.job shows a role its own jobs (a superuser all of them)
		EXECUTE 'SELECT count(cron.unschedule(j.jobid)) FROM cron.job j WHERE j.jobname = $1'
			INTO removed USING job_name;
	END IF;
	IF removed = 0 THEN
		RAISE WARNING 'no pg_cron job "%" of role "%" was removed', job_name, current_user
			USING HINT = format('If the watch had a job, the role that scheduled it removes it with SELECT cron.unschedule(%L).',
								job_name);
	END IF;
	RETURN true;
END
$$;
COMMENT ON FUNCTION llm_eval_unwatch(bigint) IS
	'remove an evaluation watch and its pg_cron job (its runs stay)';

REVOKE ALL ON FUNCTION llm_eval_watch(text, text, text, numeric, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_watch_run(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_watch_check(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_eval_unwatch(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_eval_watch(text, text, text, numeric, text, jsonb) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_watch_run(bigint) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_watch_check(bigint) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_eval_unwatch(bigint) TO llm_user;
