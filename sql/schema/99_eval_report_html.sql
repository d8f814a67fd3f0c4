-- Evaluation, fourth part: a run as one self-contained HTML page, for
-- people who would rather look than read.  Everything on the page comes
-- from the report's own sources (llm.eval_report, llm_eval_compare,
-- llm.eval_case_stats, llm.eval_results), read with the caller's rights:
-- row level security decides which runs a caller can draw.

-- Text made safe for HTML, in element content and in quoted attribute
-- values alike: every value that goes into a page passes through it.
CREATE FUNCTION llm._html_escape(value text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT replace(replace(replace(replace(replace(value,
		'&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;'), '''', '&#39;')
$$;
COMMENT ON FUNCTION llm._html_escape(text) IS
	'text escaped for HTML: & < > " and '' as character references';
REVOKE ALL ON FUNCTION llm._html_escape(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm._html_escape(text) TO llm_user;

-- The page: a title, a summary table per variant, three bar charts in
-- inline SVG, the paired comparison of the first variant against each
-- other one, and the matrix of cases x variants.  Variants come in the
-- order the run names them (so the first is the one the run was given
-- first: usually the baseline), cases in byte order of their keys (COLLATE
-- "C": the same page whatever the database's collation).  No script, no
-- link, no font or image from elsewhere, and a Content-Security-Policy
-- that forbids fetching anything, should a value ever slip through.  No
-- clock is read: the same run gives the same page.
CREATE FUNCTION llm_eval_report_html(run bigint)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	-- the matrix shows at most this many cases: a page a browser opens at once
	max_cases constant integer := 500;
	-- the longest output, expected answer or error shown in a cell
	max_chars constant integer := 200;
	-- the distinct outputs shown per cell (repeats that differ)
	max_outputs constant integer := 3;
	-- the charts: labels left of bar_x, bars up to bar_w long, a row per variant
	bar_x constant integer := 170;
	bar_w constant integer := 330;
	row_h constant integer := 26;
	na constant text := '<span class="na">n/a</span>';
	css constant text := '
body { font: 14px/1.45 system-ui, sans-serif; color: #222; margin: 24px; max-width: 1400px; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 16px; margin: 28px 0 6px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
thead th { background: #f3f3f3; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.na { color: #888; }
.note { color: #555; font-size: 13px; }
figure { display: inline-block; margin: 4px 24px 4px 0; vertical-align: top; }
figcaption { font-weight: 600; }
svg text { font: 12px sans-serif; fill: #222; }
svg .bar { fill: #4a78b5; }
svg .whisker { stroke: #111; stroke-width: 1.5; }
svg .axis { stroke: #999; }
tr.differ th, tr.differ td { background: #fff3cd; }
.o { font-family: monospace; font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere; max-width: 380px; margin-top: 2px; }
.e { color: #a00; font-size: 12px; overflow-wrap: anywhere; max-width: 380px; }
.s { font-weight: 600; }
';
	r llm.eval_runs;
	names text[];
	n integer;
	score double precision[];
	score_low double precision[];
	score_high double precision[];
	cost double precision[];
	p95 double precision[];
	score_txt text[];
	cost_txt text[];
	p95_txt text[];
	vals double precision[];
	txts text[];
	top double precision;
	total_cases bigint;
	c record;
	page text;
	part text;
BEGIN
	IF run IS NULL THEN
		RAISE EXCEPTION 'the evaluation run must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- row level security: another role's run looks like no run at all
	SELECT * INTO r FROM llm.eval_runs e WHERE e.id = llm_eval_report_html.run;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'evaluation run % does not exist', run
			USING ERRCODE = 'undefined_object',
				  HINT = 'You see only your own runs: SELECT id FROM llm.eval_runs lists them.';
	END IF;
	names := ARRAY(SELECT v.value ->> 'name'
					 FROM jsonb_array_elements(r.variants) WITH ORDINALITY AS v(value, ord)
					ORDER BY v.ord);
	n := cardinality(names);

	-- the report's figures per variant, in the run's order (NULL: none)
	SELECT array_agg(rep.mean_score ORDER BY v.ord),
		   array_agg(rep.score_low ORDER BY v.ord),
		   array_agg(rep.score_high ORDER BY v.ord),
		   array_agg(rep.cost_per_1000_cases::double precision ORDER BY v.ord),
		   array_agg(rep.latency_p95_ms ORDER BY v.ord),
		   array_agg(round(rep.mean_score::numeric, 3)::text ORDER BY v.ord),
		   array_agg('$' || CASE WHEN rep.cost_per_1000_cases >= 100 THEN round(rep.cost_per_1000_cases)
								 WHEN rep.cost_per_1000_cases >= 1 THEN round(rep.cost_per_1000_cases, 2)
								 ELSE round(rep.cost_per_1000_cases, 4) END ORDER BY v.ord),
		   array_agg(round(rep.latency_p95_ms::numeric)::text || ' ms' ORDER BY v.ord)
	  INTO score, score_low, score_high, cost, p95, score_txt, cost_txt, p95_txt
	  FROM unnest(names) WITH ORDINALITY AS v(name, ord)
	  LEFT JOIN llm.eval_report rep ON rep.run = r.id AND rep.variant = v.name;

	page := format(
'<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src ''none''; style-src ''unsafe-inline''">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Evaluation run %s</title>
<style>%s</style>
</head>
<body>
<h1>Evaluation run %s</h1>
<p>Set <b>%s</b>, state <b>%s</b>, variants: %s.<br>
%s cases &times; %s variants &times; %s repeats: %s requests; scorer <b>%s</b>.</p>
',
		r.id, css, r.id, llm._html_escape(r.set_name), llm._html_escape(r.state),
		(SELECT string_agg('<b>' || llm._html_escape(v) || '</b>', ', ' ORDER BY o)
		   FROM unnest(names) WITH ORDINALITY AS x(v, o)),
		r.cases, n, r.repeats, r.requests, llm._html_escape(r.scorer ->> 'type'));

	-- the summary table
	SELECT string_agg(format(
'<tr><th scope="row">%s</th><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td></tr>',
			llm._html_escape(v.name),
			coalesce(rep.cases::text, na), coalesce(rep.results::text, na),
			coalesce(rep.errors::text, na), coalesce(rep.pending::text, na),
			coalesce(score_txt[v.ord]
					 || coalesce(' [' || round(rep.score_low::numeric, 3) || ', '
								 || round(rep.score_high::numeric, 3) || ']', ''), na),
			coalesce(round(rep.pass_rate * 100, 1) || ' %', na),
			coalesce(round(rep.consistency::numeric * 100, 1) || ' %', na),
			coalesce(round(rep.json_valid_rate * 100, 1) || ' %', na),
			coalesce(p95_txt[v.ord], na), coalesce(cost_txt[v.ord], na)), E'\n' ORDER BY v.ord)
	  INTO part
	  FROM unnest(names) WITH ORDINALITY AS v(name, ord)
	  LEFT JOIN llm.eval_report rep ON rep.run = r.id AND rep.variant = v.name;
	page := page || '<h2>Summary</h2>
<table>
<thead><tr><th>variant</th><th>cases</th><th>results</th><th>errors</th><th>pending</th><th>mean score [95% interval]</th><th>pass rate</th><th>consistency</th><th>JSON valid</th><th>p95 latency</th><th>cost per 1,000 cases</th></tr></thead>
<tbody>
' || coalesce(part, '') || '
</tbody>
</table>
<p class="note">Mean score: over cases of each case''s mean over its repeats, with a 95% Student''s t interval. Consistency: the share of cases whose repeats all gave the same output. Cost: USD per 1,000 answered requests.</p>
';

	-- three bar charts: the score on its own scale (0 to 1) with the
	-- interval as a whisker; cost and latency scaled to the largest value
	page := page || '<h2>By variant</h2>
';
	FOR k IN 1..3 LOOP
		vals := CASE k WHEN 1 THEN score WHEN 2 THEN cost ELSE p95 END;
		txts := CASE k WHEN 1 THEN score_txt WHEN 2 THEN cost_txt ELSE p95_txt END;
		top := CASE WHEN k = 1 THEN 1 ELSE (SELECT max(x) FROM unnest(vals) x) END;
		SELECT string_agg(format(
'<g><title>%s: %s</title><text x="0" y="%s">%s</text>%s%s<text x="%s" y="%s">%s</text></g>',
				llm._html_escape(names[i]), coalesce(txts[i], 'n/a'),
				y + 13,
				llm._html_escape(CASE WHEN length(names[i]) > 24 THEN left(names[i], 23) || '~' ELSE names[i] END),
				CASE WHEN vals[i] IS NOT NULL
					 THEN format('<rect class="bar" x="%s" y="%s" width="%s" height="18"/>', bar_x, y, w) END,
				CASE WHEN wl IS NOT NULL
					 THEN format('<path class="whisker" d="M%s %sH%sM%s %sV%sM%s %sV%s"/>',
								 bar_x + wl, y + 9, bar_x + wh, bar_x + wl, y + 4, y + 14,
								 bar_x + wh, y + 4, y + 14) END,
				bar_x + greatest(w, coalesce(wh, 0)) + 6, y + 13,
				coalesce(txts[i], 'n/a')), E'\n' ORDER BY i)
		  INTO part
		  FROM generate_subscripts(names, 1) AS i,
			   LATERAL (SELECT 8 + (i - 1) * row_h AS y,
							   CASE WHEN vals[i] IS NULL OR NOT top > 0 THEN 0
									ELSE round((least(greatest(vals[i] / top, 0), 1) * bar_w)::numeric, 1) END AS w,
							   CASE WHEN k = 1 AND score_low[i] IS NOT NULL AND score_high[i] IS NOT NULL
									THEN round((least(greatest(score_low[i], 0), 1) * bar_w)::numeric, 1) END AS wl,
							   CASE WHEN k = 1 AND score_low[i] IS NOT NULL AND score_high[i] IS NOT NULL
									THEN round((least(greatest(score_high[i], 0), 1) * bar_w)::numeric, 1) END AS wh) g;
		page := page || format(
'<figure><figcaption>%s</figcaption>
<svg width="%s" height="%s" viewBox="0 0 %s %s" role="img" aria-label="%s">
<line class="axis" x1="%s" y1="4" x2="%s" y2="%s"/>
%s
<text x="%s" y="%s">0</text><text x="%s" y="%s" text-anchor="end">%s</text>
</svg></figure>
',
			CASE k WHEN 1 THEN 'Mean score, 95% interval' WHEN 2 THEN 'Cost per 1,000 cases (USD)'
				   ELSE 'p95 latency' END,
			bar_x + bar_w + 90, n * row_h + 30, bar_x + bar_w + 90, n * row_h + 30,
			CASE k WHEN 1 THEN 'mean score by variant' WHEN 2 THEN 'cost per 1,000 cases by variant'
				   ELSE 'p95 latency by variant' END,
			bar_x, bar_x, n * row_h + 8,
			coalesce(part, ''),
			bar_x - 3, n * row_h + 24, bar_x + bar_w, n * row_h + 24,
			CASE WHEN k = 1 THEN '1'
				 WHEN top IS NULL THEN 'n/a'
				 WHEN k = 2 THEN '$' || CASE WHEN top >= 100 THEN round(top::numeric)
											 WHEN top >= 1 THEN round(top::numeric, 2)
											 ELSE round(top::numeric, 4) END
				 ELSE round(top::numeric) || ' ms' END);
	END LOOP;

	-- the paired comparison: the first variant against each other one
	page := page || '<h2>Paired comparison</h2>
';
	IF n < 2 THEN
		page := page || '<p>One variant: nothing to compare.</p>
';
	ELSE
		part := '';
		FOR i IN 2..n LOOP
			IF NOT EXISTS (SELECT FROM llm.eval_variant_stats s
							WHERE s.run = r.id AND s.variant IN (names[1], names[i]) AND s.results > 0
						   HAVING count(*) = 2) THEN
				part := part || format('<tr><th scope="row">%s</th><th scope="row">%s</th><td colspan="6">no results to compare</td></tr>
', llm._html_escape(names[1]), llm._html_escape(names[i]));
				CONTINUE;
			END IF;
			SELECT * INTO c FROM @extschema@.llm_eval_compare(r.id, names[1], names[i]);
			part := part || format(
'<tr><th scope="row">%s</th><th scope="row">%s</th><td class="n">%s</td><td class="n">%s / %s / %s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s / %s</td><td class="n">%s</td></tr>
',
				llm._html_escape(names[1]), llm._html_escape(names[i]), c.cases,
				coalesce(c.wins::text, na), coalesce(c.ties::text, na), coalesce(c.losses::text, na),
				coalesce(round(c.mean_diff::numeric, 3)
						 || coalesce(' [' || round(c.diff_low::numeric, 3) || ', '
									 || round(c.diff_high::numeric, 3) || ']', ''), na),
				coalesce(CASE WHEN c.sign_test_p < 0.001 THEN '&lt; 0.001'
							  ELSE round(c.sign_test_p::numeric, 3)::text END, na),
				coalesce(c.a_only_passed::text, na), coalesce(c.b_only_passed::text, na),
				coalesce(CASE WHEN c.mcnemar_p < 0.001 THEN '&lt; 0.001'
							  ELSE round(c.mcnemar_p::numeric, 3)::text END, na));
		END LOOP;
		page := page || '<table>
<thead><tr><th>a</th><th>b</th><th>paired cases</th><th>a wins / ties / a loses</th><th>mean score a &minus; b [95% interval]</th><th>sign test p</th><th>passed by a only / b only</th><th>McNemar p</th></tr></thead>
<tbody>
' || part || '</tbody>
</table>
<p class="note">Per case, the mean score over its repeats. The interval is a bootstrap one; a case passes when at least half its repeats passed.</p>
';
	END IF;

	-- the matrix: cases x variants, the rows where variants' outputs differ
	-- highlighted (errors are no output: they are shown, but differ from nothing)
	SELECT count(DISTINCT cs.case_key) INTO total_cases FROM llm.eval_case_stats cs WHERE cs.run = r.id;
	WITH shown AS (
		SELECT cs.case_key FROM llm.eval_case_stats cs WHERE cs.run = r.id
		 GROUP BY cs.case_key ORDER BY cs.case_key COLLATE "C" LIMIT max_cases),
	outputs AS (
		-- each distinct output of a cell, numbered in the order of its first repeat
		SELECT o.*, row_number() OVER (PARTITION BY o.case_key, o.variant
									   ORDER BY o.first, o.output COLLATE "C") AS nth
		  FROM (SELECT res.case_key, res.variant, res.output, min(res.repeat) AS first, count(*) AS times
				  FROM llm.eval_results res JOIN shown s ON s.case_key = res.case_key
				 WHERE res.run = r.id AND res.output IS NOT NULL
				 GROUP BY res.case_key, res.variant, res.output) o),
	cell_outputs AS (
		SELECT o.case_key, o.variant,
			   string_agg(format('<div class="o">%s%s</div>',
								 CASE WHEN length(o.output) > max_chars
									  THEN llm._html_escape(left(o.output, max_chars)) || '&hellip;'
									  ELSE llm._html_escape(o.output) END,
								 CASE WHEN o.times > 1 THEN ' <span class="na">(&times;' || o.times || ')</span>' END),
						  '' ORDER BY o.nth) FILTER (WHERE o.nth <= max_outputs)
			   || CASE WHEN count(*) > max_outputs
					   THEN '<div class="na">and ' || count(*) - max_outputs || ' other outputs</div>'
					   ELSE '' END AS html,
			   array_agg(o.output ORDER BY o.output COLLATE "C") AS output_set
		  FROM outputs o
		 GROUP BY o.case_key, o.variant),
	cell_errors AS (
		SELECT res.case_key, res.variant, count(*) AS errors, min(res.error COLLATE "C") AS error
		  FROM llm.eval_results res JOIN shown s ON s.case_key = res.case_key
		 WHERE res.run = r.id AND res.error IS NOT NULL
		 GROUP BY res.case_key, res.variant),
	cells AS (
		SELECT s.case_key, v.ord, co.output_set,
			   CASE WHEN cs.case_key IS NULL THEN '<td class="na">no results</td>'
					ELSE '<td><span class="s">'
						 || coalesce(round(cs.mean_score, 3)::text, na) || '</span>'
						 || coalesce(co.html, '')
						 || CASE WHEN ce.errors > 0
								 THEN format('<div class="e">%s: %s</div>',
											 CASE WHEN ce.errors = 1 THEN 'error' ELSE ce.errors || ' errors' END,
											 CASE WHEN length(ce.error) > max_chars
												  THEN llm._html_escape(left(ce.error, max_chars)) || '&hellip;'
												  ELSE llm._html_escape(ce.error) END)
								 ELSE '' END
						 || '</td>' END AS html
		  FROM shown s
		 CROSS JOIN unnest(names) WITH ORDINALITY AS v(name, ord)
		  LEFT JOIN llm.eval_case_stats cs
				 ON cs.run = r.id AND cs.variant = v.name AND cs.case_key = s.case_key
		  LEFT JOIN cell_outputs co ON co.case_key = s.case_key AND co.variant = v.name
		  LEFT JOIN cell_errors ce ON ce.case_key = s.case_key AND ce.variant = v.name),
	case_rows AS (
		SELECT x.case_key, count(DISTINCT x.output_set) > 1 AS differ,
			   string_agg(x.html, '' ORDER BY x.ord) AS html
		  FROM cells x
		 GROUP BY x.case_key)
	SELECT string_agg(format('<tr%s><th scope="row">%s</th><td>%s</td>%s</tr>',
							 CASE WHEN cr.differ THEN ' class="differ"' END,
							 llm._html_escape(cr.case_key),
							 coalesce('<div class="o">'
									  || CASE WHEN length(e.shown) > max_chars
											  THEN llm._html_escape(left(e.shown, max_chars)) || '&hellip;'
											  ELSE llm._html_escape(e.shown) END || '</div>', na),
							 cr.html),
					  E'\n' ORDER BY cr.case_key COLLATE "C")
	  INTO part
	  FROM case_rows cr
	  LEFT JOIN llm.eval_cases ec ON ec.set_name = r.set_name AND ec.case_key = cr.case_key
	  LEFT JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(ec.expected) = 'string' THEN ec.expected #>> '{}'
									 ELSE ec.expected::text END AS shown) e ON true;

	page := page || '<h2>Cases</h2>
';
	IF total_cases = 0 THEN
		page := page || '<p>No results yet.</p>
';
	ELSE
		page := page || format('<p class="note">%s Highlighted: cases whose variants gave different outputs. A cell shows the case''s mean score over its repeats, its distinct outputs and its errors.</p>
<table>
<thead><tr><th>case</th><th>expected</th>%s</tr></thead>
<tbody>
%s
</tbody>
</table>
',
			CASE WHEN total_cases > max_cases
				 THEN format('The first %s cases of %s by key are shown; %s are left out.',
							 max_cases, total_cases, total_cases - max_cases)
				 ELSE format('All %s cases are shown.', total_cases) END,
			(SELECT string_agg('<th>' || llm._html_escape(v) || '</th>', '' ORDER BY o)
			   FROM unnest(names) WITH ORDINALITY AS x(v, o)),
			part);
	END IF;
	RETURN page || '<p class="note">Made by llm_eval_report_html: everything is on this page, nothing is fetched from elsewhere.</p>
</body>
</html>';
END
$$;
COMMENT ON FUNCTION llm_eval_report_html(bigint) IS
	'an evaluation run as one self-contained HTML page: summary, charts, paired comparison, cases x variants';
REVOKE ALL ON FUNCTION llm_eval_report_html(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llm_eval_report_html(bigint) TO llm_user;
