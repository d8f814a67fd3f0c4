-- Fine-tuning jobs, run by the background worker at the provider, with what
-- the provider reported (events, checkpoints).  A job that succeeds
-- registers its model in llm.models with lineage.

-- llm_finetune may launch fine-tuning jobs (which spend money at the
-- provider); granted to nobody by default.  It is an llm_user too (its jobs'
-- training sets are made with llm_user's functions).  llm_admin may launch
-- jobs as well.
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'llm_finetune') THEN
		CREATE ROLE llm_finetune NOLOGIN;
	END IF;
	IF NOT pg_catalog.pg_has_role('llm_finetune', 'llm_user', 'MEMBER') THEN
		GRANT llm_user TO llm_finetune;
	END IF;
END
$$;

CREATE TABLE llm.finetune_jobs (
	id					bigserial PRIMARY KEY,
	name				text NOT NULL,		-- the model family: support -> support-v1, support-v2
	submitted_by		name NOT NULL,
	login_role			name NOT NULL,
	base_model			text NOT NULL REFERENCES llm.models (name),
	provider			text NOT NULL,
	training_set		text NOT NULL,
	training_version	integer NOT NULL,
	validation_set		text,
	validation_version	integer,
	method				text NOT NULL DEFAULT 'supervised' CHECK (method IN ('supervised', 'dpo')),
	hyperparameters		jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(hyperparameters) = 'object'),
	suffix				text,
	seed				integer,
	-- llmext's state: queued (waiting for the worker), uploading, creating
	-- (the create request may have reached the provider: recovery looks the
	-- job up by its metadata before creating another), running (polling),
	-- cancelling (a cancel to send), and the final succeeded, failed, cancelled
	state				text NOT NULL DEFAULT 'queued'
						CHECK (state IN ('queued', 'uploading', 'creating', 'running', 'cancelling',
										 'succeeded', 'failed', 'cancelled')),
	provider_status		text,				-- the provider's own status, whatever it is
	training_file_id	text,
	validation_file_id	text,
	provider_job_id		text UNIQUE,
	fine_tuned_model	text,				-- the provider's id of the trained model
	model				text REFERENCES llm.models (name),	-- registered on success
	estimated_tokens	bigint,
	estimated_cost_usd	numeric,
	trained_tokens		bigint,
	cost_usd			numeric,
	error				text,
	attempts			integer NOT NULL DEFAULT 0,	-- failed provider requests in a row
	next_poll_at		timestamptz NOT NULL DEFAULT now(),
	created_at			timestamptz NOT NULL DEFAULT now(),
	started_at			timestamptz,
	finished_at			timestamptz,
	updated_at			timestamptz NOT NULL DEFAULT now(),
	FOREIGN KEY (training_set, training_version) REFERENCES llm.training_sets (name, version),
	FOREIGN KEY (validation_set, validation_version) REFERENCES llm.training_sets (name, version)
);
CREATE INDEX finetune_jobs_due_idx ON llm.finetune_jobs (next_poll_at)
	WHERE state IN ('queued', 'uploading', 'creating', 'running', 'cancelling');
COMMENT ON TABLE llm.finetune_jobs IS 'fine-tuning jobs: what was asked, where it stands at the provider, what it cost and made';

ALTER TABLE llm.models ADD CONSTRAINT models_finetune_job_fkey
	FOREIGN KEY (finetune_job) REFERENCES llm.finetune_jobs (id);

CREATE TABLE llm.finetune_events (
	job					bigint NOT NULL REFERENCES llm.finetune_jobs ON DELETE CASCADE,
	event_id			text NOT NULL,		-- the provider's
	created_at			timestamptz NOT NULL,
	level				text,
	type				text,
	message				text,
	data				jsonb,
	PRIMARY KEY (job, event_id)
);
COMMENT ON TABLE llm.finetune_events IS 'the events a provider reported for a fine-tuning job';

CREATE TABLE llm.finetune_checkpoints (
	job					bigint NOT NULL REFERENCES llm.finetune_jobs ON DELETE CASCADE,
	checkpoint_id		text NOT NULL,		-- the provider's
	created_at			timestamptz NOT NULL,
	step				integer,
	model_checkpoint	text,				-- a callable model id at that step, when offered
	train_loss			double precision,
	valid_loss			double precision,
	train_mean_token_accuracy double precision,
	valid_mean_token_accuracy double precision,
	metrics				jsonb,				-- everything the provider sent
	PRIMARY KEY (job, checkpoint_id)
);
COMMENT ON TABLE llm.finetune_checkpoints IS 'checkpoints of a fine-tuning job with their metrics';

COMMENT ON COLUMN llm.finetune_jobs.name IS 'the model family: a success registers <name>-v<N>';
COMMENT ON COLUMN llm.finetune_jobs.estimated_cost_usd IS 'estimated trained tokens times the base model''s training price, when the job was made';
COMMENT ON COLUMN llm.finetune_jobs.cost_usd IS 'trained tokens (as the provider reported) times the base model''s training price';

SELECT pg_catalog.pg_extension_config_dump('llm.finetune_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('llm.finetune_jobs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('llm.finetune_events', '');
SELECT pg_catalog.pg_extension_config_dump('llm.finetune_checkpoints', '');

-- Jobs, their events and checkpoints: the ledger's rule (own rows, by
-- acting and login role) and llm_admin, also after SET ROLE.
ALTER TABLE llm.finetune_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY finetune_jobs_own_rows ON llm.finetune_jobs FOR SELECT
	USING ((submitted_by = current_user
			AND (login_role = (SELECT llm._login()) OR current_user = (SELECT llm._login())))
		   OR pg_catalog.pg_has_role(current_user, 'llm_admin', 'MEMBER'));
ALTER TABLE llm.finetune_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY finetune_events_own_rows ON llm.finetune_events FOR SELECT
	USING (EXISTS (SELECT FROM llm.finetune_jobs j WHERE j.id = job));
ALTER TABLE llm.finetune_checkpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY finetune_checkpoints_own_rows ON llm.finetune_checkpoints FOR SELECT
	USING (EXISTS (SELECT FROM llm.finetune_jobs j WHERE j.id = job));
GRANT SELECT ON llm.finetune_jobs, llm.finetune_events, llm.finetune_checkpoints TO llm_user;

-- The progress of each job: where it stands, the last thing the provider
-- said, the share of steps done (from the latest event or checkpoint that
-- tells), the cost estimated and spent, the model it made.
CREATE VIEW llm.finetunes WITH (security_invoker = true) AS
SELECT j.id, j.name, j.submitted_by, j.base_model, j.training_set, j.training_version, j.method,
	   j.state, j.provider_status,
	   CASE WHEN j.state = 'succeeded' THEN 1::numeric
			WHEN p.total_steps > 0 THEN round(least(p.step::numeric / p.total_steps, 1), 4) END AS progress,
	   p.step, p.total_steps,
	   e.message AS last_event, e.created_at AS last_event_at,
	   j.estimated_tokens, j.estimated_cost_usd, j.trained_tokens, j.cost_usd,
	   j.fine_tuned_model, j.model, j.error,
	   j.created_at, j.started_at, j.finished_at
  FROM llm.finetune_jobs j
  LEFT JOIN LATERAL (
	SELECT x.message, x.created_at FROM llm.finetune_events x
	 WHERE x.job = j.id ORDER BY x.created_at DESC, x.event_id DESC LIMIT 1) e ON true
  LEFT JOIN LATERAL (
	SELECT s.step, s.total_steps FROM (
		SELECT (x.data ->> 'step')::bigint AS step, (x.data ->> 'total_steps')::bigint AS total_steps,
			   x.created_at
		  FROM llm.finetune_events x
		 WHERE x.job = j.id AND jsonb_typeof(x.data -> 'step') = 'number'
		UNION ALL
		SELECT c.step, (c.metrics ->> 'total_steps')::bigint, c.created_at
		  FROM llm.finetune_checkpoints c
		 WHERE c.job = j.id AND c.step IS NOT NULL) s
	 ORDER BY s.created_at DESC, s.step DESC LIMIT 1) p ON true;
COMMENT ON VIEW llm.finetunes IS 'one row per fine-tuning job: state, progress, last event, estimated and actual cost, resulting model';
GRANT SELECT ON llm.finetunes TO llm_user;

-- Whether role who, logged in as login, owns job row j (or is llm_admin).
CREATE FUNCTION llm._finetune_owns(who name, login name, submitted_by name, login_role name)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (submitted_by = who AND (login_role = login OR who = login))
		OR pg_has_role(who, 'llm_admin', 'MEMBER')
$$;
REVOKE ALL ON FUNCTION llm._finetune_owns(name, name, name, name) FROM PUBLIC;

-- Checks a job's hyperparameters: known keys, sensible values ("auto" for
-- the provider's choice).
CREATE FUNCTION llm._finetune_check_hyperparameters(method text, hyperparameters jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	v jsonb;
BEGIN
	IF jsonb_typeof(hyperparameters) <> 'object' THEN
		RAISE EXCEPTION 'hyperparameters must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example ''{"n_epochs": 3}''.';
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(hyperparameters) LOOP
		IF k NOT IN ('n_epochs', 'batch_size', 'learning_rate_multiplier', 'beta')
		   OR (k = 'beta' AND method <> 'dpo') THEN
			RAISE EXCEPTION 'unknown hyperparameter "%" for method %', k, method
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Known: n_epochs, batch_size, learning_rate_multiplier, and beta for dpo.';
		END IF;
		IF v = '"auto"' THEN
			CONTINUE;
		END IF;
		IF jsonb_typeof(v) <> 'number'
		   OR (k IN ('n_epochs', 'batch_size') AND (v::text::numeric <> trunc(v::text::numeric) OR v::text::numeric < 1))
		   OR (k = 'n_epochs' AND v::text::numeric > 50)
		   OR (k IN ('learning_rate_multiplier', 'beta') AND v::text::numeric <= 0) THEN
			RAISE EXCEPTION 'invalid value % of hyperparameter "%"', v, k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = CASE WHEN k = 'n_epochs' THEN 'Use a whole number from 1 to 50, or "auto".'
								  WHEN k = 'batch_size' THEN 'Use a whole number of at least 1, or "auto".'
								  ELSE 'Use a positive number, or "auto".' END;
		END IF;
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION llm._finetune_check_hyperparameters(text, jsonb) FROM PUBLIC;

CREATE FUNCTION llm_finetune_create(name text, base_model text, training_set text,
									training_version integer DEFAULT NULL, validation_set text DEFAULT NULL,
									method text DEFAULT 'supervised', hyperparameters jsonb DEFAULT NULL,
									suffix text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_finetune_create(text, text, text, integer, text, text, jsonb, text) IS
	'queue a fine-tuning job of a base model on a training set: its id (the worker runs it; llm_finetune or llm_admin)';

CREATE FUNCTION llm._finetune_create(caller name, login name, name text, base_model text, training_set text,
									 training_version integer, validation_set text, method text,
									 hyperparameters jsonb, suffix text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	base record;
	set_row record;
	validation_version integer;
	requested_version integer := training_version;
	epochs integer;
	estimate record;
	b record;
	too_long record;
	job bigint;
BEGIN
	IF NOT pg_has_role(caller, 'llm_finetune', 'MEMBER') AND NOT pg_has_role(caller, 'llm_admin', 'MEMBER') THEN
		RAISE EXCEPTION 'permission denied to fine-tune models'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Role "%s" is neither in llm_finetune nor in llm_admin.', caller),
				  HINT = 'An administrator can GRANT llm_finetune TO the role.';
	END IF;
	IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid fine-tuning job name "%"', coalesce(name, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use up to 63 letters, digits, "_", "." or "-", starting with a letter or digit: the models it makes are <name>-v1, <name>-v2 and so on.';
	END IF;
	SELECT * INTO base FROM llm.models m WHERE m.name = _finetune_create.base_model;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model "%" does not exist', coalesce(base_model, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'List the models with SELECT name FROM llm.models.';
	END IF;
	IF base.kind <> 'base' THEN
		RAISE EXCEPTION 'model "%" is not a base model', base_model
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is fine-tuned from "%s".', base.base_model),
				  HINT = 'Fine-tune its base model on a larger training set instead.';
	END IF;
	IF training_set IS NULL THEN
		RAISE EXCEPTION 'training_set must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT max(s.version) INTO training_version FROM llm.training_sets s
	 WHERE s.name = _finetune_create.training_set
	   AND (_finetune_create.training_version IS NULL OR s.version = _finetune_create.training_version)
	   AND llm._training_set_readable(caller, login, s.name, s.version);
	IF training_version IS NULL THEN
		RAISE EXCEPTION 'training set "%" does not exist', training_set
			USING ERRCODE = 'undefined_object',
				  DETAIL = CASE WHEN requested_version IS NOT NULL
								THEN format('No version %s of it that you can read.', requested_version)
								ELSE 'No version of it that you can read.' END,
				  HINT = 'SELECT name, version FROM llm.training_sets lists the sets you can read.';
	END IF;
	SELECT * INTO set_row FROM llm.training_sets s
	 WHERE s.name = _finetune_create.training_set AND s.version = _finetune_create.training_version;
	IF jsonb_typeof(base.limits -> 'max_training_example_tokens') = 'number' THEN
		-- the model's own limit on one example (a training set is checked
		-- against llmext's general one when it is made)
		SELECT e.ord, e.example_key, e.tokens INTO too_long FROM llm.training_examples e
		 WHERE e.set_name = _finetune_create.training_set AND e.set_version = _finetune_create.training_version
		   AND NOT e.held_out AND e.tokens > (base.limits ->> 'max_training_example_tokens')::bigint
		 ORDER BY e.ord LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'example % (id %) of training set "%" version % is too long for model "%"',
							too_long.ord, too_long.example_key, training_set, training_version, base.name
				USING ERRCODE = 'program_limit_exceeded',
					  DETAIL = format('It has about %s tokens; the model''s max_training_example_tokens is %s.',
									  too_long.tokens, base.limits ->> 'max_training_example_tokens'),
					  HINT = 'Make a version of the set without it, or fine-tune a model that takes longer examples.';
		END IF;
	END IF;
	IF validation_set IS NOT NULL THEN
		SELECT max(s.version) INTO validation_version FROM llm.training_sets s
		 WHERE s.name = _finetune_create.validation_set
		   AND llm._training_set_readable(caller, login, s.name, s.version);
		IF validation_version IS NULL THEN
			RAISE EXCEPTION 'training set "%" does not exist', validation_set
				USING ERRCODE = 'undefined_object',
					  HINT = 'The validation set is the latest version of a training set you can read.';
		END IF;
	END IF;
	method := coalesce(method, 'supervised');
	IF method NOT IN ('supervised', 'dpo') THEN
		RAISE EXCEPTION 'invalid fine-tuning method "%"', method
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use ''supervised'' or ''dpo''.';
	END IF;
	hyperparameters := coalesce(hyperparameters, '{}');
	PERFORM llm._finetune_check_hyperparameters(method, hyperparameters);
	IF suffix IS NOT NULL AND suffix !~ '^[A-Za-z0-9_-]{1,64}$' THEN
		RAISE EXCEPTION 'invalid suffix "%"', suffix
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use 1 to 64 letters, digits, "_" or "-".';
	END IF;

	-- the estimated cost is held to the caller's budgets before anything is
	-- queued (the actual cost reaches the ledger when the job ends)
	epochs := CASE WHEN jsonb_typeof(hyperparameters -> 'n_epochs') = 'number'
				   THEN (hyperparameters ->> 'n_epochs')::integer
				   ELSE llm._training_limit('default_epochs')::integer END;
	estimate := llm._training_cost(set_row.estimated_tokens, epochs, base.training_price);
	IF estimate.cost_usd IS NOT NULL THEN
		FOR b IN SELECT * FROM llm._budget_spend(caller, login, '[]', 0) LOOP
			IF b.spent_usd + estimate.cost_usd > b.limit_usd THEN
				RAISE EXCEPTION 'the estimated cost of the job (% USD) exceeds the % budget of % (% USD left)',
								estimate.cost_usd, b.period,
								CASE WHEN b.role IS NULL THEN 'everyone' ELSE format('role "%s"', b.role) END,
								trim_scale(round(greatest(b.limit_usd - b.spent_usd, 0), 10))
					USING ERRCODE = 'LL402',
						  DETAIL = format('The limit is %s USD and %s USD has been spent this %s; the job would train about %s tokens.',
										  b.limit_usd, trim_scale(round(b.spent_usd, 10)), b.period, estimate.trained_tokens),
						  HINT = 'Train on fewer examples or epochs, or an llm_admin can raise the budget with llm_budget_set.';
			END IF;
		END LOOP;
	END IF;

	INSERT INTO llm.finetune_jobs (name, submitted_by, login_role, base_model, provider, training_set,
								   training_version, validation_set, validation_version, method,
								   hyperparameters, suffix, estimated_tokens, estimated_cost_usd)
	VALUES (name, caller, login, base.name, base.provider, training_set, training_version,
			validation_set, validation_version, method, hyperparameters, suffix,
			estimate.trained_tokens, estimate.cost_usd)
	RETURNING id INTO job;
	PERFORM llm._wake_at_commit();
	RETURN job;
END
$$;
REVOKE ALL ON FUNCTION llm._finetune_create(name, name, text, text, text, integer, text, text, jsonb, text) FROM PUBLIC;

CREATE FUNCTION llm_finetune_cancel(job bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION llm_finetune_cancel(bigint) IS
	'cancel a fine-tuning job: a queued one at once, a started one through the worker; whether anything changed';

CREATE FUNCTION llm._finetune_cancel(caller name, login name, job bigint)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j record;
BEGIN
	SELECT * INTO j FROM llm.finetune_jobs f WHERE f.id = _finetune_cancel.job FOR UPDATE;
	IF NOT FOUND OR NOT llm._finetune_owns(caller, login, j.submitted_by, j.login_role) THEN
		-- someone else's job is as good as absent
		RAISE EXCEPTION 'fine-tuning job % does not exist', coalesce(job::text, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'SELECT id, name, state FROM llm.finetunes lists yours.';
	END IF;
	IF j.state = 'queued' THEN
		UPDATE llm.finetune_jobs f
		   SET state = 'cancelled', finished_at = now(), updated_at = now()
		 WHERE f.id = j.id;
		RETURN true;
	ELSIF j.state IN ('uploading', 'creating', 'running') THEN
		UPDATE llm.finetune_jobs f
		   SET state = 'cancelling', next_poll_at = now(), updated_at = now()
		 WHERE f.id = j.id;
		PERFORM llm._wake_at_commit();
		RETURN true;
	END IF;
	RETURN false;
END
$$;
REVOKE ALL ON FUNCTION llm._finetune_cancel(name, name, bigint) FROM PUBLIC;

-- A job's state as JSON (row level security applies: own jobs, or all for
-- llm_admin).
CREATE FUNCTION llm_finetune_status(job bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	f record;
BEGIN
	SELECT * INTO f FROM llm.finetunes v WHERE v.id = llm_finetune_status.job;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'fine-tuning job % does not exist', coalesce(job::text, 'NULL')
			USING ERRCODE = 'undefined_object',
				  HINT = 'SELECT id, name, state FROM llm.finetunes lists yours.';
	END IF;
	RETURN jsonb_build_object(
		'id', f.id, 'name', f.name, 'state', f.state, 'provider_status', f.provider_status,
		'progress', f.progress, 'step', f.step, 'total_steps', f.total_steps,
		'last_event', f.last_event, 'last_event_at', f.last_event_at,
		'estimated_tokens', f.estimated_tokens, 'estimated_cost_usd', f.estimated_cost_usd,
		'trained_tokens', f.trained_tokens, 'cost_usd', f.cost_usd,
		'fine_tuned_model', f.fine_tuned_model, 'model', f.model, 'error', f.error,
		'created_at', f.created_at, 'started_at', f.started_at, 'finished_at', f.finished_at);
END
$$;
COMMENT ON FUNCTION llm_finetune_status(bigint) IS
	'a fine-tuning job''s state, progress, last event, estimated and actual cost, resulting model and error';

-- Called by the worker when the provider reports success: registers the
-- tuned model as <job name>-v<N> with its lineage and prices, and finishes
-- the job, in the caller's transaction.  Called again for a job already
-- registered, it returns the same model.  Executable by no role.
CREATE FUNCTION llm._finetune_register(job bigint, fine_tuned_model text, trained_tokens bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j record;
	base record;
	set_row record;
	n integer;
	model_name text;
BEGIN
	SELECT * INTO j FROM llm.finetune_jobs f WHERE f.id = _finetune_register.job FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'fine-tuning job % does not exist', coalesce(job::text, 'NULL')
			USING ERRCODE = 'undefined_object';
	END IF;
	IF j.model IS NOT NULL THEN
		RETURN j.model;
	END IF;
	IF fine_tuned_model IS NULL OR fine_tuned_model = '' THEN
		RAISE EXCEPTION 'fine-tuning job %: the provider named no model', job
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT * INTO base FROM llm.models m WHERE m.name = j.base_model;
	SELECT * INTO set_row FROM llm.training_sets s WHERE s.name = j.training_set AND s.version = j.training_version;
	PERFORM pg_advisory_xact_lock(hashtext('llmext finetune ' || j.name));
	SELECT count(*) + 1 INTO n FROM llm.models m JOIN llm.finetune_jobs f ON f.id = m.finetune_job
	 WHERE f.name = j.name;
	model_name := j.name || '-v' || n;
	WHILE EXISTS (SELECT FROM llm.models m WHERE m.name = model_name) LOOP
		n := n + 1;
		model_name := j.name || '-v' || n;
	END LOOP;
	INSERT INTO llm.models (name, provider, remote_model, kind, base_model, input_price, output_price,
							cached_input_price, params, training_set, training_version,
							prompt_name, prompt_version, finetune_job, batch_price_ratio)
	VALUES (model_name, base.provider, fine_tuned_model, 'fine_tuned', base.name,
			coalesce(base.tuned_input_price, base.input_price),
			coalesce(base.tuned_output_price, base.output_price),
			coalesce(base.tuned_cached_input_price,
					 CASE WHEN base.tuned_input_price IS NULL THEN base.cached_input_price END),
			base.params, j.training_set, j.training_version,
			set_row.prompt_name, set_row.prompt_version, j.id, base.batch_price_ratio);
	UPDATE llm.finetune_jobs f
	   SET state = 'succeeded', fine_tuned_model = _finetune_register.fine_tuned_model,
		   model = model_name, trained_tokens = _finetune_register.trained_tokens,
		   cost_usd = trim_scale(round(_finetune_register.trained_tokens * base.training_price / 1000000, 10)),
		   error = NULL, finished_at = now(), updated_at = now()
	 WHERE f.id = j.id;
	RETURN model_name;
END
$$;
REVOKE ALL ON FUNCTION llm._finetune_register(bigint, text, bigint) FROM PUBLIC;

REVOKE ALL ON FUNCTION llm_finetune_create(text, text, text, integer, text, text, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_finetune_cancel(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_finetune_status(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_finetune_create(text, text, text, integer, text, text, jsonb, text) TO llm_finetune, llm_admin;
GRANT EXECUTE ON FUNCTION llm_finetune_cancel(bigint) TO llm_user;
GRANT EXECUTE ON FUNCTION llm_finetune_status(bigint) TO llm_user;
