-- Training sets: immutable, versioned snapshots of chat examples rendered
-- from a user's query (through a stored prompt version, or as plain user
-- messages), the exact JSONL lines a fine-tuning job uploads.

CREATE TABLE llm.training_sets (
	name				text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
	version				integer NOT NULL CHECK (version > 0),
	query				text NOT NULL,
	prompt_name			text,
	prompt_version		integer,	-- the version the examples were rendered with
	prompt_label		text,		-- the label that chose it, if any
	holdout				numeric NOT NULL DEFAULT 0 CHECK (holdout >= 0 AND holdout < 1),
	examples			integer NOT NULL,	-- lines of the training file
	held_out			integer NOT NULL,	-- examples kept out of it
	duplicates			integer NOT NULL DEFAULT 0,
	estimated_tokens	bigint NOT NULL,	-- of the training file (see docs/fine-tuning.md)
	bytes				bigint NOT NULL,	-- of the training file, newlines included
	sha256				text NOT NULL,		-- hex SHA-256 of the training file's exact bytes
	created_by			name NOT NULL,
	login_role			name NOT NULL,
	created_at			timestamptz NOT NULL DEFAULT now(),
	note				text,
	PRIMARY KEY (name, version),
	CHECK ((prompt_name IS NULL) = (prompt_version IS NULL))
);
COMMENT ON TABLE llm.training_sets IS 'immutable snapshots of fine-tuning examples: one row per version';

-- One row per example, in the query's order.  The training file is the
-- lines of the rows not held out, in ord order, each followed by "\n".
CREATE TABLE llm.training_examples (
	set_name			text NOT NULL,
	set_version			integer NOT NULL,
	ord					integer NOT NULL,	-- 1-based, the query's order
	example_key			text NOT NULL,		-- the row's id, or a hash of its line
	held_out			boolean NOT NULL,
	line				text NOT NULL,		-- {"messages": [...]}, no newline
	tokens				integer NOT NULL,	-- estimated
	PRIMARY KEY (set_name, set_version, ord),
	FOREIGN KEY (set_name, set_version) REFERENCES llm.training_sets (name, version) ON DELETE CASCADE
);
COMMENT ON TABLE llm.training_examples IS 'the examples of each training set version, as JSONL lines; held-out rows are kept out of the training file';
