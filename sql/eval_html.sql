-- llm_eval_report_html: a run as one self-contained HTML page.  The page
-- itself has latencies in it, so only checks of it are printed: what must
-- be there, what must not, how often.
SET client_min_messages = warning;
CREATE ROLE regress_html_alice LOGIN;
CREATE ROLE regress_html_bob LOGIN;
GRANT llm_user TO regress_html_alice, regress_html_bob;
SELECT llm_model_create('html-learner', 'fake', 'learner');
-- occurrences of needle in haystack
CREATE FUNCTION public.html_count(haystack text, needle text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
	SELECT (length(haystack) - length(replace(haystack, needle, ''))) / length(needle)
$$;
GRANT EXECUTE ON FUNCTION public.html_count(text, text) TO PUBLIC;
RESET client_min_messages;

-- the escaping helper: the five characters, and nothing else touched
SELECT llm._html_escape($$<a title="Tom & Jerry's">x</a> ünï$$) AS escaped;
SELECT llm._html_escape(NULL) IS NULL AS null_stays_null;

SET SESSION AUTHORIZATION regress_html_alice;
-- a prompt whose few-shot example makes the learner answer "A" to anything red
SELECT llm_prompt_create('html-shots', '{{input}}', system => 'Answer A or B.',
						 examples => '[{"input": {"input": "red green"}, "output": "A"}]',
						 model => 'html-learner') AS prompt_version;
SELECT llm_eval_set_create('html-colors');
-- case keys and inputs are user data: markup in them must come out as text
SELECT llm_eval_cases_add('html-colors', $$
	SELECT * FROM (VALUES ('k1', 'red apple', '"A"'::jsonb),
						  ('k2', 'blue sky', '"echo: blue sky"'),
						  ('<script>alert(1)</script>', '<script>alert("x")</script>',
						   '"echo: <script>alert(\"x\")</script>"'),
						  ('k4', 'it''s red', '"A"')) AS t(key, input, expected)$$) AS added;
-- base echoes; shots answers "A" to k1 and k4 and echoes the others;
-- broken fails every request
SELECT llm_eval_run('html-colors',
	'[{"name": "base", "model": "echo"},
	  {"name": "shots", "prompt": "html-shots", "version": 1},
	  {"name": "broken", "model": "fail-400"}]', repeats => 2) AS run \gset
SELECT llm_eval_wait(:run, '60 seconds') - 'run' AS waited;
SELECT llm_eval_report_html(:run) AS page \gset

-- the page's frame
SELECT left(:'page', 15) AS starts, right(:'page', 7) AS ends,
	   :'page' LIKE '%<meta charset="utf-8">%' AS utf8,
	   html_count(:'page', '<html') AS html, html_count(:'page', '</html>') AS html_end,
	   html_count(:'page', '<body>') AS body, html_count(:'page', '</body>') AS body_end,
	   html_count(:'page', '<table>') AS tables, html_count(:'page', '</table>') AS tables_end,
	   html_count(:'page', '<svg ') AS charts, html_count(:'page', '</svg>') AS charts_end;
SELECT (regexp_match(:'page', '<title>([^<]*)</title>'))[1] = 'Evaluation run ' || :run AS titled,
	   (regexp_match(:'page', '<h1>([^<]*)</h1>'))[1] = 'Evaluation run ' || :run AS headed,
	   :'page' LIKE '%Set <b>html-colors</b>, state <b>done</b>, variants: <b>base</b>, <b>shots</b>, <b>broken</b>.%'
	   AS described;
-- every variant: in the summary, in each chart, in the matrix's header, compared
SELECT v AS variant,
	   html_count(:'page', '<tr><th scope="row">' || v || '</th><td class="n">') AS summary_rows,
	   html_count(:'page', '<g><title>' || v || ': ') AS chart_bars,
	   html_count(:'page', '<th>' || v || '</th>') AS matrix_columns,
	   html_count(:'page', '<th scope="row">base</th><th scope="row">' || v || '</th>') AS compared_to_base
  FROM unnest(ARRAY['base', 'shots', 'broken']) v;
-- nothing that runs or is fetched: no script, no URL, no reference to a file
SELECT html_count(lower(:'page'), '<script') AS scripts,
	   html_count(:'page', 'http://') + html_count(:'page', 'https://') AS urls,
	   html_count(lower(:'page'), ' src=') + html_count(lower(:'page'), ' href=')
		 + html_count(lower(:'page'), 'url(') + html_count(lower(:'page'), '@import') AS references,
	   :'page' LIKE '%content="default-src ''none''; style-src ''unsafe-inline''"%' AS fetching_forbidden;
-- markup in a case key, an input echoed in the outputs (base and shots) and
-- an expected answer comes out as text; so does an apostrophe
SELECT html_count(:'page', '<th scope="row">&lt;script&gt;alert(1)&lt;/script&gt;</th>') AS case_key_escaped,
	   html_count(:'page', '<div class="o">echo: &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;') AS outputs_escaped,
	   html_count(:'page', 'echo: it&#39;s red') AS apostrophes_escaped;
-- the matrix: a row per case, highlighted where the variants' outputs differ
-- (k1 and k4: "A" against the echo); broken's errors are shown, differ from nothing;
-- an output shown once per cell however many repeats gave it
SELECT html_count(:'page', '<tr class="differ">') AS rows_differing,
	   :'page' LIKE '%<tr class="differ"><th scope="row">k1</th>%' AS k1_differs,
	   :'page' LIKE '%<tr><th scope="row">k2</th>%' AS k2_agrees,
	   :'page' LIKE '%<tr class="differ"><th scope="row">k4</th>%' AS k4_differs,
	   html_count(:'page', '<div class="e">2 errors: ') AS cells_with_errors,
	   html_count(:'page', '<div class="e">') AS error_lines,
	   html_count(:'page', '(&times;2)') AS outputs_twice,
	   :'page' LIKE '%All 4 cases are shown.%' AS all_shown;
-- figures: shots scores 1 on every case, base on k2 and the script case;
-- broken has none, drawn as n/a
SELECT :'page' LIKE '%<tr><th scope="row">shots</th><td class="n">4</td><td class="n">8</td><td class="n">0</td><td class="n">0</td><td class="n">1.000 [1.000, 1.000]</td>%' AS shots_summary,
	   :'page' LIKE '%<tr><th scope="row">base</th><td class="n">4</td><td class="n">8</td><td class="n">0</td><td class="n">0</td><td class="n">0.500 [%' AS base_summary,
	   :'page' LIKE '%<g><title>broken: n/a</title>%' AS broken_drawn_na,
	   html_count(:'page', '<rect class="bar"') AS bars,
	   html_count(:'page', '<path class="whisker"') AS whiskers,
	   :'page' LIKE '%<td class="n">0 / 2 / 2</td>%' AS base_loses_twice_to_shots;
-- the same run, the same page
SELECT md5(llm_eval_report_html(:run)) = md5(:'page') AS deterministic;
SELECT md5(:'page') AS run_md5 \gset
-- a page of an ordinary size: about 10 kB here
SELECT length(:'page') BETWEEN 5000 AND 30000 AS modest;

-- one variant: nothing to compare; the matrix stops at 500 cases
SELECT llm_eval_set_create('html-many');
SELECT llm_eval_cases_add('html-many', $$
	SELECT 'c' || lpad(i::text, 3, '0') AS key, 'question ' || i AS input,
		   to_jsonb('echo: question ' || i) AS expected
	  FROM generate_series(1, 503) i$$) AS added;
SELECT llm_eval_run('html-many', '[{"name": "only", "model": "echo"}]') AS many \gset
SELECT llm_eval_wait(:many, '120 seconds') ->> 'state' AS state;
SELECT llm_eval_report_html(:many) AS page \gset
SELECT :'page' LIKE '%One variant: nothing to compare.%' AS nothing_to_compare,
	   :'page' LIKE '%The first 500 cases of 503 by key are shown; 3 are left out.%' AS capped,
	   html_count(:'page', '<th scope="row">c') AS case_rows,
	   :'page' LIKE '%<th scope="row">c500</th>%' AS last_shown,
	   :'page' LIKE '%<th scope="row">c501</th>%' AS first_left_out,
	   html_count(:'page', '<tr class="differ">') AS rows_differing;

-- refusals
SELECT error_of($$SELECT llm_eval_report_html(NULL)$$);
SELECT error_of($$SELECT llm_eval_report_html(0)$$);
RESET SESSION AUTHORIZATION;
-- another role's run is no run at all
SET SESSION AUTHORIZATION regress_html_bob;
SELECT replace(error_of(format('SELECT llm_eval_report_html(%s)', :run)), 'run ' || :run, 'run <run>')
	   AS error_of;
RESET SESSION AUTHORIZATION;
-- a role that is no llm_user may not call it
SET client_min_messages = warning;
CREATE ROLE regress_html_nobody LOGIN;
RESET client_min_messages;
SET SESSION AUTHORIZATION regress_html_nobody;
SELECT error_of(format('SELECT llm_eval_report_html(%s)', :run));
RESET SESSION AUTHORIZATION;
-- a superuser sees every run, and gets the same page
SELECT md5(llm_eval_report_html(:run)) = :'run_md5' AS same_page_for_superuser;

SET client_min_messages = warning;
DELETE FROM llm.eval_runs WHERE set_name LIKE 'html-%';
DELETE FROM llm.eval_sets WHERE name LIKE 'html-%';
SELECT llm_model_drop('html-learner');
DROP FUNCTION public.html_count(text, text);
DROP OWNED BY regress_html_alice, regress_html_bob, regress_html_nobody;
DROP ROLE regress_html_alice, regress_html_bob, regress_html_nobody;
RESET client_min_messages;
