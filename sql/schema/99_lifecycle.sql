-- The life cycle of a prompt and a tuned model after evaluation: whether a
-- fine-tuned model pays for its training (llm_breakeven), and moving a
-- label to a better variant only on the evidence of an evaluation run
-- (llm_prompt_promote).

-- The label history records promotions, and refused promotions, with their
-- evidence.  Written as ALTERs so that a fresh install and an upgrade run
-- the same statements.
ALTER TABLE llm.prompt_label_history ADD COLUMN evidence jsonb;
COMMENT ON COLUMN llm.prompt_label_history.evidence IS
	'for promote and promote_refused: the run, the paired test, the costs and the reasons (llm_prompt_promote)';
ALTER TABLE llm.prompt_label_history DROP CONSTRAINT prompt_label_history_action_check,
	ADD CONSTRAINT prompt_label_history_action_check
		CHECK (action IN ('deploy', 'split', 'rollback', 'promote', 'promote_refused'));

-- What a variant of an evaluation run ran: its stored prompt, version and
-- model (zero rows when the run has no such variant).  A variant that named
-- a version ran that version, with its own model or the version's; one
-- that named a label (or neither) ran what its requests recorded, when that
-- is one version and one model.  Read with the caller's rights.
CREATE FUNCTION llm._eval_variant_target(run bigint, variant text)
RETURNS TABLE (prompt text, version integer, model text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH picked AS (
		SELECT x.value AS spec
		  FROM llm.eval_runs r, jsonb_array_elements(r.variants) x
		 WHERE r.id = _eval_variant_target.run AND x.value ->> 'name' = _eval_variant_target.variant
		 LIMIT 1),
	asked AS (
		SELECT k.spec ->> 'prompt' AS prompt,
			   CASE WHEN k.spec ? 'prompt' THEN
					coalesce((k.spec ->> 'version')::integer,
							 (SELECT min(q.prompt_version) FROM llm.eval_results res
								JOIN llm.requests q ON q.id = res.request_id
							   WHERE res.run = _eval_variant_target.run
								 AND res.variant = _eval_variant_target.variant
							  HAVING count(DISTINCT q.prompt_version) = 1)) END AS version,
			   k.spec
		  FROM picked k)
	SELECT a.prompt, a.version,
		   coalesce(a.spec ->> 'model',
					CASE WHEN a.spec ? 'version'
						 THEN (SELECT p.model FROM llm.prompts p
								WHERE p.name = a.prompt AND p.version = a.version)
						 ELSE (SELECT min(q.model) FROM llm.eval_results res
								 JOIN llm.requests q ON q.id = res.request_id
								WHERE res.run = _eval_variant_target.run
								  AND res.variant = _eval_variant_target.variant
							   HAVING count(DISTINCT q.model) = 1) END)
	  FROM asked a
$$;
REVOKE ALL ON FUNCTION llm._eval_variant_target(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._eval_variant_target(bigint, text) TO llm_user;

-- Break-even of a fine-tuned model against a baseline.
--
-- Per call, for each side v: n = answered calls, C = everything they cost
-- (failed attempts included), E = what the failed ones cost, in and out =
-- mean input and output tokens of an answered call.  cost_per_call = C / n.
-- The saving (baseline b minus tuned t) is split in three parts that sum to
-- it exactly:
--	 from_tokens  = ((in_b - in_t) * input_price_b + (out_b - out_t) * output_price_b) / 1e6
--	 from_retries = E_b / n_b - E_t / n_t
--	 from_prices  = saving - from_tokens - from_retries
-- When every answered call cost its tokens at its model's prices,
-- from_prices is in_t * (input_price_b - input_price_t) + out_t *
-- (output_price_b - output_price_t), over 1e6; cached-input discounts and
-- prices changed since the calls land there too.
-- Break-even: n calls pay for the training when n * saving >= training
-- cost, so ceil(training / saving) with a positive saving, 0 when the
-- training cost nothing, and never (NULL) otherwise.
--
-- SECURITY INVOKER: the ledger, jobs and runs are read with the caller's
-- row level security.
CREATE FUNCTION llm_breakeven(tuned text, baseline text, run bigint DEFAULT NULL,
							  calls_per_day numeric DEFAULT NULL)
RETURNS TABLE (source text, tuned_model text, baseline_model text, training_job bigint,
			   training_cost_usd numeric, tuned_calls bigint, baseline_calls bigint,
			   tuned_cost_per_call numeric, baseline_cost_per_call numeric, saving_per_call numeric,
			   breakeven_calls numeric, never boolean, breakeven_days numeric,
			   saving_from_tokens numeric, saving_from_prices numeric, saving_from_retries numeric,
			   tuned_input_tokens_per_call numeric, baseline_input_tokens_per_call numeric,
			   tuned_output_tokens_per_call numeric, baseline_output_tokens_per_call numeric)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t_model text;
	b_model text;
	t_price llm.models;
	b_price llm.models;
	job_id bigint;
	job_ref text;
	job_cost numeric;
	train numeric;
	-- per side: answered calls, total cost, cost of failures, token sums
	t_n bigint; t_c numeric; t_e numeric; t_in numeric; t_out numeric;
	b_n bigint; b_c numeric; b_e numeric; b_in numeric; b_out numeric;
	t_cpc numeric; b_cpc numeric;
	saving numeric;
	part_tokens numeric;
	part_retries numeric;
	calls numeric;
	side text;
BEGIN
	IF tuned IS NULL OR baseline IS NULL THEN
		RAISE EXCEPTION 'the tuned and the baseline must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF calls_per_day IS NOT NULL AND calls_per_day <= 0 THEN
		RAISE EXCEPTION 'calls_per_day must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s.', calls_per_day);
	END IF;

	IF run IS NOT NULL THEN
		IF NOT EXISTS (SELECT FROM llm.eval_runs r WHERE r.id = llm_breakeven.run) THEN
			RAISE EXCEPTION 'evaluation run % does not exist', run
				USING ERRCODE = 'undefined_object',
					  HINT = 'SELECT id, set_name FROM llm.eval_runs lists the runs you can read.';
		END IF;
		FOREACH side IN ARRAY ARRAY[tuned, baseline] LOOP
			IF NOT EXISTS (SELECT FROM llm._eval_variant_target(run, side)) THEN
				RAISE EXCEPTION 'evaluation run % has no variant "%"', run, side
					USING ERRCODE = 'undefined_object',
						  HINT = format('Its variants: %s.',
										(SELECT string_agg(x.value ->> 'name', ', ')
										   FROM llm.eval_runs r, jsonb_array_elements(r.variants) x
										  WHERE r.id = llm_breakeven.run));
			END IF;
		END LOOP;
		t_model := (SELECT x.model FROM llm._eval_variant_target(run, tuned) x);
		b_model := (SELECT x.model FROM llm._eval_variant_target(run, baseline) x);
		IF t_model IS NULL OR b_model IS NULL THEN
			RAISE EXCEPTION 'the model variant "%" ran is not known',
							CASE WHEN t_model IS NULL THEN tuned ELSE baseline END
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'It named a label, and its requests are gone or ran more than one model.';
		END IF;
		-- answered: with an output; a failed request's cost counts as a retry's
		SELECT count(*) FILTER (WHERE res.output IS NOT NULL),
			   coalesce(sum(res.cost_usd), 0),
			   coalesce(sum(res.cost_usd) FILTER (WHERE res.output IS NULL), 0),
			   coalesce(sum(res.input_tokens) FILTER (WHERE res.output IS NOT NULL), 0),
			   coalesce(sum(res.output_tokens) FILTER (WHERE res.output IS NOT NULL), 0)
		  INTO t_n, t_c, t_e, t_in, t_out
		  FROM llm.eval_results res WHERE res.run = llm_breakeven.run AND res.variant = tuned;
		SELECT count(*) FILTER (WHERE res.output IS NOT NULL),
			   coalesce(sum(res.cost_usd), 0),
			   coalesce(sum(res.cost_usd) FILTER (WHERE res.output IS NULL), 0),
			   coalesce(sum(res.input_tokens) FILTER (WHERE res.output IS NOT NULL), 0),
			   coalesce(sum(res.output_tokens) FILTER (WHERE res.output IS NOT NULL), 0)
		  INTO b_n, b_c, b_e, b_in, b_out
		  FROM llm.eval_results res WHERE res.run = llm_breakeven.run AND res.variant = baseline;
	ELSE
		t_model := tuned;
		b_model := baseline;
		FOREACH side IN ARRAY ARRAY[tuned, baseline] LOOP
			IF NOT EXISTS (SELECT FROM llm.models m WHERE m.name = side) THEN
				RAISE EXCEPTION 'model "%" does not exist', side
					USING ERRCODE = 'undefined_object',
						  HINT = 'Without a run, tuned and baseline are model names: SELECT name FROM llm.models lists them.';
			END IF;
		END LOOP;
		-- the last 30 days of calls to each model; training rows (source
		-- finetune, booked on the base model) and cache hits are not calls
		-- of the model
		SELECT count(*) FILTER (WHERE c.outcome = 'ok'),
			   coalesce(sum(c.cost_usd), 0),
			   coalesce(sum(c.cost_usd) FILTER (WHERE c.outcome <> 'ok'), 0),
			   coalesce(sum(c.input_tokens) FILTER (WHERE c.outcome = 'ok'), 0),
			   coalesce(sum(c.output_tokens) FILTER (WHERE c.outcome = 'ok'), 0)
		  INTO t_n, t_c, t_e, t_in, t_out
		  FROM llm.calls c
		 WHERE c.model = tuned AND c.created_at >= now() - interval '30 days'
		   AND NOT c.cache_hit AND c.source <> 'finetune';
		SELECT count(*) FILTER (WHERE c.outcome = 'ok'),
			   coalesce(sum(c.cost_usd), 0),
			   coalesce(sum(c.cost_usd) FILTER (WHERE c.outcome <> 'ok'), 0),
			   coalesce(sum(c.input_tokens) FILTER (WHERE c.outcome = 'ok'), 0),
			   coalesce(sum(c.output_tokens) FILTER (WHERE c.outcome = 'ok'), 0)
		  INTO b_n, b_c, b_e, b_in, b_out
		  FROM llm.calls c
		 WHERE c.model = baseline AND c.created_at >= now() - interval '30 days'
		   AND NOT c.cache_hit AND c.source <> 'finetune';
	END IF;
	IF t_n = 0 OR b_n = 0 THEN
		RAISE EXCEPTION '% "%" has no answered call to measure',
						CASE WHEN run IS NULL THEN 'model' ELSE 'variant' END,
						CASE WHEN t_n = 0 THEN tuned ELSE baseline END
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = CASE WHEN run IS NULL
								THEN 'No successful call of it in the last 30 days of the ledger that you can read.'
								ELSE format('No result of it in run %s has an output.', run) END,
				  HINT = 'Measure it in an evaluation run, or after some calls.';
	END IF;

	-- the training cost: what the ledger booked for the tuned model's job
	SELECT * INTO t_price FROM llm.models m WHERE m.name = t_model;
	SELECT * INTO b_price FROM llm.models m WHERE m.name = b_model;
	job_id := t_price.finetune_job;
	IF job_id IS NULL THEN
		RAISE EXCEPTION 'model "%" was not fine-tuned by llmext: its training cost is not on record', t_model
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = CASE WHEN t_price.kind = 'fine_tuned'
								THEN 'It was registered with llm_model_create, without a fine-tuning job.'
								ELSE 'It is a base model.' END,
				  HINT = 'Compare per-call costs with llm_eval_compare, or llm.usage_by_model.';
	END IF;
	SELECT j.provider_job_id, j.cost_usd INTO job_ref, job_cost FROM llm.finetune_jobs j WHERE j.id = job_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'permission denied to read the training cost of model "%"', t_model
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Fine-tuning job %s belongs to another role.', job_id),
				  HINT = 'Its submitter or an llm_admin can compute the break-even.';
	END IF;
	-- the worker books the cost once, with the provider's job id; the job's
	-- own figure stands in when the ledger has no row of it
	SELECT sum(c.cost_usd) INTO train FROM llm.calls c
	 WHERE c.source = 'finetune' AND c.request_id = job_ref;
	train := coalesce(train, job_cost, 0);

	t_cpc := trim_scale(round(t_c / t_n, 12));
	b_cpc := trim_scale(round(b_c / b_n, 12));
	saving := trim_scale(b_cpc - t_cpc);
	part_tokens := trim_scale(round(((b_in / b_n - t_in / t_n) * b_price.input_price
									 + (b_out / b_n - t_out / t_n) * b_price.output_price) / 1000000, 12));
	part_retries := trim_scale(round(b_e / b_n - t_e / t_n, 12));
	calls := CASE WHEN train = 0 THEN 0
				  WHEN saving > 0 THEN ceil(train / saving) END;

	RETURN QUERY SELECT
		CASE WHEN run IS NULL THEN 'ledger' ELSE 'run' END, t_model, b_model, job_id,
		train, t_n, b_n, t_cpc, b_cpc, saving,
		calls, calls IS NULL,
		trim_scale(round(calls / calls_per_day, 2)),
		part_tokens, trim_scale(saving - part_tokens - part_retries), part_retries,
		trim_scale(round(t_in / t_n, 6)), trim_scale(round(b_in / b_n, 6)),
		trim_scale(round(t_out / t_n, 6)), trim_scale(round(b_out / b_n, 6));
END
$$;
COMMENT ON FUNCTION llm_breakeven(text, text, bigint, numeric) IS
	'whether a fine-tuned model pays for its training: per-call costs (from a run or the last 30 days of the ledger), the saving split into tokens, prices and retries, the calls and days to break even';
REVOKE ALL ON FUNCTION llm_breakeven(text, text, bigint, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_breakeven(text, text, bigint, numeric) TO llm_user;

-- Promotion gated by evidence: the gate (llm_gate) calls
-- llm._prompt_promote with the caller's roles.
CREATE FUNCTION llm_prompt_promote(name text, label text, run bigint, candidate text,
								   min_gain numeric DEFAULT 0, alpha numeric DEFAULT 0.05,
								   max_cost_ratio numeric DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_gate'
LANGUAGE C VOLATILE;

-- The candidate beats the variant serving the label now when, paired per
-- case in the run (llm_eval_compare(run, candidate, current)), mean_diff >=
-- min_gain, it won more cases than it lost, and the sign test's p < alpha;
-- and, with max_cost_ratio, its cost per case is at most max_cost_ratio
-- times the current one's (llm.eval_report).  Otherwise the label stays and
-- the reasons are returned.  Either way the decision and its evidence are a
-- row of the label history: 'promote' (undone by llm_prompt_rollback like
-- a deploy) or 'promote_refused'.
CREATE FUNCTION llm._prompt_promote(caller name, login name, name text, label text, run bigint,
									candidate text, min_gain numeric, alpha numeric,
									max_cost_ratio numeric)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	serving jsonb;
	served_version integer;
	served_model text;
	run_row llm.eval_runs;
	cand record;
	cur_name text;
	cur record;
	cmp record;
	test jsonb;
	cand_cost numeric;
	cur_cost numeric;
	pending bigint;
	reasons text[] := '{}';
	proof jsonb;
	promoted boolean;
	new_variants jsonb;
BEGIN
	IF name IS NULL OR label IS NULL OR run IS NULL OR candidate IS NULL
	   OR min_gain IS NULL OR alpha IS NULL THEN
		RAISE EXCEPTION 'name, label, run, candidate, min_gain and alpha must not be NULL'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Leave max_cost_ratio NULL to promote whatever the candidate costs.';
	END IF;
	IF alpha <= 0 OR alpha >= 1 THEN
		RAISE EXCEPTION 'alpha must be between 0 and 1'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s.', alpha),
				  HINT = 'It is the largest p-value of the sign test that counts as significant, such as 0.05.';
	END IF;
	-- a negative gain would promote a worse variant; scores are 0..1
	IF min_gain < 0 OR min_gain > 1 THEN
		RAISE EXCEPTION 'min_gain must be from 0 to 1'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s.', min_gain),
				  HINT = 'It is the least mean score difference (scores are 0 to 1) the candidate must win by.';
	END IF;
	IF max_cost_ratio IS NOT NULL AND max_cost_ratio <= 0 THEN
		RAISE EXCEPTION 'max_cost_ratio must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s.', max_cost_ratio),
				  HINT = 'For example 1.2: the candidate may cost 20 % more per case than the current variant.';
	END IF;
	IF NOT EXISTS (SELECT FROM llm.prompts p WHERE p.name = _prompt_promote.name) THEN
		RAISE EXCEPTION 'prompt "%" does not exist', name
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it with llm_prompt_create.';
	END IF;
	-- the decision and the move see the same label
	SELECT l.variants INTO serving FROM llm.prompt_labels l
	 WHERE l.name = _prompt_promote.name AND l.label = _prompt_promote.label FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'prompt "%" has no label "%"', name, label
			USING ERRCODE = 'undefined_object',
				  HINT = 'A promotion moves a label that serves a variant now: deploy one first with llm_prompt_deploy.';
	END IF;
	SELECT * INTO run_row FROM llm.eval_runs r WHERE r.id = _prompt_promote.run;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'evaluation run % does not exist', run
			USING ERRCODE = 'undefined_object',
				  HINT = 'SELECT id, set_name, variants FROM llm.eval_runs lists the runs.';
	END IF;
	SELECT * INTO cand FROM llm._eval_variant_target(run, candidate);
	IF NOT FOUND THEN
		RAISE EXCEPTION 'evaluation run % has no variant "%"', run, candidate
			USING ERRCODE = 'undefined_object',
				  HINT = format('Its variants: %s.',
								(SELECT string_agg(x.value ->> 'name', ', ')
								   FROM jsonb_array_elements(run_row.variants) x));
	END IF;
	IF cand.prompt IS DISTINCT FROM name THEN
		RAISE EXCEPTION 'variant "%" of run % is not a version of prompt "%"', candidate, run, name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = CASE WHEN cand.prompt IS NULL THEN 'It is a model with a plain system prompt.'
								ELSE format('It ran prompt "%s".', cand.prompt) END,
				  HINT = 'A label can only be moved to a stored version of its own prompt.';
	END IF;
	IF cand.version IS NULL OR cand.model IS NULL THEN
		RAISE EXCEPTION 'the version and model variant "%" of run % ran are not known', candidate, run
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'It named a label, and its requests are gone or ran more than one version or model.',
				  HINT = 'Evaluate variants that name a version.';
	END IF;

	-- the evidence: which variant serves the label now, and the paired test
	IF jsonb_array_length(serving) > 1 THEN
		reasons := reasons || format('label "%s" is split between %s variants: a promotion replaces one variant',
									 label, jsonb_array_length(serving));
	ELSE
		served_version := (serving -> 0 ->> 'version')::integer;
		served_model := coalesce(serving -> 0 ->> 'model',
								 (SELECT p.model FROM llm.prompts p
								   WHERE p.name = _prompt_promote.name AND p.version = served_version));
		IF served_version = cand.version AND served_model IS NOT DISTINCT FROM cand.model THEN
			reasons := reasons || format('label "%s" already serves version %s with model %s',
										 label, served_version, coalesce(served_model, 'NULL'));
		ELSE
			-- the first variant of the run (in its order) that ran the same
			SELECT x.value ->> 'name' INTO cur_name
			  FROM jsonb_array_elements(run_row.variants) WITH ORDINALITY x(value, i),
				   LATERAL llm._eval_variant_target(run, x.value ->> 'name') t
			 WHERE t.prompt = _prompt_promote.name AND t.version = served_version
			   AND t.model IS NOT DISTINCT FROM served_model
			 ORDER BY x.i LIMIT 1;
			IF cur_name IS NULL THEN
				reasons := reasons || format('run %s has no variant of what label "%s" serves now (version %s with model %s)',
											 run, label, served_version, coalesce(served_model, 'NULL'));
			END IF;
		END IF;
	END IF;
	IF cur_name IS NOT NULL THEN
		SELECT coalesce(sum(s.pending), 0) INTO pending FROM llm.eval_variant_stats s
		 WHERE s.run = _prompt_promote.run AND s.variant IN (candidate, cur_name);
		IF pending > 0 THEN
			reasons := reasons || format('run %s still waits for %s of the results of these variants', run, pending);
		END IF;
		SELECT * INTO cmp FROM @extschema@.llm_eval_compare(run, candidate, cur_name);
		test := jsonb_build_object(
			'method', 'paired sign test', 'cases', cmp.cases, 'wins', cmp.wins, 'ties', cmp.ties,
			'losses', cmp.losses, 'mean_diff', cmp.mean_diff, 'diff_low', cmp.diff_low,
			'diff_high', cmp.diff_high, 'sign_test_p', cmp.sign_test_p,
			'candidate_only_passed', cmp.a_only_passed, 'current_only_passed', cmp.b_only_passed,
			'mcnemar_p', cmp.mcnemar_p);
		IF coalesce(cmp.cases, 0) = 0 THEN
			reasons := reasons || format('no case of run %s was scored for both variants', run);
		ELSE
			IF cmp.mean_diff < min_gain THEN
				reasons := reasons || format('the mean score gain %s is below min_gain %s',
											 trim_scale(round(cmp.mean_diff::numeric, 6)), min_gain);
			END IF;
			IF cmp.wins <= cmp.losses OR cmp.sign_test_p >= alpha THEN
				reasons := reasons || format('not significant: %s wins, %s losses, sign test p = %s, not below alpha %s',
											 cmp.wins, cmp.losses, trim_scale(round(cmp.sign_test_p::numeric, 6)), alpha);
			END IF;
		END IF;
		SELECT e.cost_per_case INTO cand_cost FROM llm.eval_report e
		 WHERE e.run = _prompt_promote.run AND e.variant = candidate;
		SELECT e.cost_per_case INTO cur_cost FROM llm.eval_report e
		 WHERE e.run = _prompt_promote.run AND e.variant = cur_name;
		IF max_cost_ratio IS NOT NULL THEN
			IF cand_cost IS NULL OR cur_cost IS NULL THEN
				reasons := reasons || format('the cost per case of %s was not measured',
											 CASE WHEN cand_cost IS NULL THEN 'the candidate' ELSE 'the current variant' END);
			-- multiplied, not divided: a current variant that cost nothing
			-- admits only a candidate that costs nothing
			ELSIF cand_cost > max_cost_ratio * cur_cost THEN
				reasons := reasons || format('it costs %s USD per case, %s times the current variant''s %s: more than max_cost_ratio %s',
											 trim_scale(round(cand_cost, 12)),
											 coalesce(trim_scale(round(cand_cost / nullif(cur_cost, 0), 6))::text, 'infinitely many'),
											 trim_scale(round(cur_cost, 12)), max_cost_ratio);
			END IF;
		END IF;
	END IF;

	promoted := cardinality(reasons) = 0;
	proof := jsonb_build_object(
		'run', run, 'set', run_row.set_name,
		'candidate', jsonb_build_object('variant', candidate, 'version', cand.version, 'model', cand.model),
		'current', CASE WHEN jsonb_array_length(serving) = 1 THEN
						jsonb_build_object('variant', cur_name, 'version', served_version, 'model', served_model) END,
		'test', test,
		'cost', CASE WHEN cur_name IS NOT NULL THEN jsonb_build_object(
					'candidate_per_case', trim_scale(round(cand_cost, 12)),
					'current_per_case', trim_scale(round(cur_cost, 12)),
					'ratio', trim_scale(round(cand_cost / nullif(cur_cost, 0), 6))) END,
		'criteria', jsonb_build_object('min_gain', min_gain, 'alpha', alpha, 'max_cost_ratio', max_cost_ratio),
		'reasons', to_jsonb(reasons));

	IF promoted THEN
		new_variants := jsonb_build_array(jsonb_build_object(
			'version', cand.version,
			'model', (SELECT x.value ->> 'model' FROM jsonb_array_elements(run_row.variants) x
					   WHERE x.value ->> 'name' = candidate LIMIT 1),
			'weight', 1));
		-- a variant that named a label or no model ran a model found above:
		-- the label keeps to it explicitly unless it is the version's own
		IF new_variants -> 0 ->> 'model' IS NULL
		   AND cand.model IS DISTINCT FROM (SELECT p.model FROM llm.prompts p
											 WHERE p.name = _prompt_promote.name AND p.version = cand.version) THEN
			new_variants := jsonb_set(new_variants, '{0,model}', to_jsonb(cand.model));
		END IF;
		PERFORM llm._prompt_move_label(caller, name, label, new_variants, 'promote');
	ELSE
		INSERT INTO llm.prompt_label_history (name, label, action, from_variants, to_variants, changed_by)
		VALUES (name, label, 'promote_refused', serving, serving, caller);
	END IF;
	-- the row just written, by this session
	UPDATE llm.prompt_label_history h SET evidence = proof
	 WHERE h.id = currval('llm.prompt_label_history_id_seq');
	RETURN jsonb_build_object('promoted', promoted, 'name', name, 'label', label,
							  'from', serving, 'to', coalesce(new_variants, serving),
							  'reasons', to_jsonb(reasons), 'evidence', proof);
END
$$;
COMMENT ON FUNCTION llm_prompt_promote(text, text, bigint, text, numeric, numeric, numeric) IS
	'move a label to a variant of an evaluation run only if it beats the current one by min_gain (sign test under alpha) at most max_cost_ratio times the cost: the decision and its evidence, recorded in the label history';
REVOKE ALL ON FUNCTION llm._prompt_promote(name, name, text, text, bigint, text, numeric, numeric, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_prompt_promote(text, text, bigint, text, numeric, numeric, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_prompt_promote(text, text, bigint, text, numeric, numeric, numeric) TO llm_admin;
