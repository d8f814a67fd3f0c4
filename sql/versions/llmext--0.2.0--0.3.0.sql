-- llmext 0.2.0 -> 0.3.0: fine-tuning.
--
-- Training sets (llm.training_sets, llm.training_examples), fine-tuning jobs
-- run by the worker (llm.finetune_jobs, llm.finetune_events,
-- llm.finetune_checkpoints), tuning prices and lineage on llm.models.

\echo Use "ALTER EXTENSION llmext UPDATE TO '0.3.0'" to load this file. \quit

ALTER TABLE llm.models
	ADD COLUMN training_price numeric CHECK (training_price >= 0),
	ADD COLUMN tuned_input_price numeric CHECK (tuned_input_price >= 0),
	ADD COLUMN tuned_cached_input_price numeric CHECK (tuned_cached_input_price >= 0),
	ADD COLUMN tuned_output_price numeric CHECK (tuned_output_price >= 0),
	ADD COLUMN training_set text,
	ADD COLUMN training_version integer,
	ADD COLUMN prompt_name text,
	ADD COLUMN prompt_version integer,
	ADD COLUMN finetune_job bigint,
	ADD CHECK ((training_set IS NULL) = (training_version IS NULL));
