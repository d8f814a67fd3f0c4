-- Fine-tuning jobs, run by the background worker at the provider, with what
-- the provider reported (events, checkpoints).  A job that succeeds
-- registers its model in llm.models with lineage.

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
