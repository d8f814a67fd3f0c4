/* Unit tests of template.c: the template language, its errors and limits. */
#include "unit.h"

#include <stdlib.h>
#include <time.h>

#include "core/template.h"

#define MB (1024 * 1024)

/*
 * Parses and renders; returns the text, or "ERROR: " and the message, in a
 * static buffer so that a check reads as one line.
 */
static const char *
render_max(const char *text, const char *vars_json, size_t max_output)
{
	static char result[8192];
	char		err[512];
	cJSON	   *vars = vars_json ? cJSON_Parse(vars_json) : NULL;
	LlmTemplate *tmpl;
	char	   *out;

	if (vars_json != NULL && vars == NULL)
		return "BAD TEST: vars are not JSON";
	strcpy(err, "(no message)");
	tmpl = llm_template_parse(text, err, sizeof(err));
	if (tmpl == NULL)
	{
		snprintf(result, sizeof(result), "ERROR: %s", err);
		cJSON_Delete(vars);
		return result;
	}
	out = llm_template_render(tmpl, vars, max_output, err, sizeof(err));
	if (out == NULL)
		snprintf(result, sizeof(result), "ERROR: %s", err);
	else
		snprintf(result, sizeof(result), "%s", out);
	cJSON_free(out);
	llm_template_free(tmpl);
	cJSON_Delete(vars);
	return result;
}

static const char *
render(const char *text, const char *vars_json)
{
	return render_max(text, vars_json, MB);
}

/* The parse error for text, or "parsed" */
static const char *
parse_error(const char *text)
{
	static char err[512];
	LlmTemplate *tmpl = llm_template_parse(text, err, sizeof(err));

	if (tmpl != NULL)
	{
		llm_template_free(tmpl);
		return "parsed";
	}
	return err;
}

static void
test_variables(void)
{
	CHECK_STR(render("", "{}"), "");
	CHECK_STR(render("plain text", "{}"), "plain text");
	CHECK_STR(render("Hello {{name}}!", "{\"name\":\"Ada\"}"), "Hello Ada!");
	CHECK_STR(render("{{ name }}|{{\tname\t}}|{{\n name \n}}", "{\"name\":\"x\"}"), "x|x|x");
	CHECK_STR(render("{{a}}{{b}}{{a}}", "{\"a\":\"1\",\"b\":\"2\"}"), "121");
	CHECK_STR(render("{{user.name.first}} {{user.age}}",
					 "{\"user\":{\"name\":{\"first\":\"Grace\"},\"age\":85}}"), "Grace 85");
	CHECK_STR(render("{{snake_case}} {{kebab-case}} {{x1}} {{_}}",
					 "{\"snake_case\":\"a\",\"kebab-case\":\"b\",\"x1\":\"c\",\"_\":\"d\"}"),
			  "a b c d");
	/* names are case-sensitive */
	CHECK_STR(render("{{Name}}", "{\"name\":\"x\",\"Name\":\"y\"}"), "y");
	/* a string is written as is: no quotes, no escaping */
	CHECK_STR(render("{{s}}", "{\"s\":\"<b>&\\\"quoted\\\"\\n\\\\</b>\"}"),
			  "<b>&\"quoted\"\n\\</b>");
	CHECK_STR(render("[{{s}}]", "{\"s\":\"\"}"), "[]");
	/* anything else as compact JSON */
	CHECK_STR(render("{{n}} {{f}} {{neg}}", "{\"n\":42,\"f\":1.5,\"neg\":-3}"), "42 1.5 -3");
	CHECK_STR(render("{{t}} {{f}} {{z}}", "{\"t\":true,\"f\":false,\"z\":null}"), "true false null");
	CHECK_STR(render("{{o}}", "{\"o\":{ \"a\" : [1, 2, {\"b\" : \"c\"}] }}"), "{\"a\":[1,2,{\"b\":\"c\"}]}");
	CHECK_STR(render("{{a}}", "{\"a\":[\"x\", \"y\"]}"), "[\"x\",\"y\"]");
	CHECK_STR(render("{{e}}{{o}}", "{\"e\":[],\"o\":{}}"), "[]{}");
	/* {{.}} at the top is the whole vars object */
	CHECK_STR(render("{{.}}", "{\"a\":1}"), "{\"a\":1}");
	/* lone braces are text */
	CHECK_STR(render("a } b }} c { d {x}", "{}"), "a } b }} c { d {x}");
	CHECK_STR(render("{x{{a}}}", "{\"a\":\"1\"}"), "{x1}");
}

static void
test_unicode(void)
{
	CHECK_STR(render("héllo {{w}} — ✓", "{\"w\":\"wörld 🌍\"}"), "héllo wörld 🌍 — ✓");
	CHECK_STR(render("{{k}}", "{\"k\":\"日本語\"}"), "日本語");
	/* non-string values keep their characters too */
	CHECK_STR(render("{{o}}", "{\"o\":{\"ключ\":\"значение\"}}"), "{\"ключ\":\"значение\"}");
	/* the column counts bytes: "é" is two */
	CHECK_STR(parse_error("é{{"), "unclosed tag at line 1, column 3");
	CHECK_STR(parse_error("{{é}}"), "invalid name \"é\" at line 1, column 1");
}

static void
test_sections(void)
{
	const char *people = "{\"people\":[{\"name\":\"Ada\"},{\"name\":\"Alan\"}],\"sep\":\", \"}";

	/* arrays: once per element, the element as the innermost context */
	CHECK_STR(render("{{#people}}{{name}};{{/people}}", people), "Ada;Alan;");
	CHECK_STR(render("{{#people}}{{name}}{{sep}}{{/people}}", people), "Ada, Alan, ");
	CHECK_STR(render("{{#list}}<{{.}}>{{/list}}", "{\"list\":[\"a\",1,true,null,{\"k\":2},[3]]}"),
			  "<a><1><true><null><{\"k\":2}><[3]>");
	CHECK_STR(render("a{{#e}}X{{/e}}b", "{\"e\":[]}"), "ab");
	/* false and null omit the block */
	CHECK_STR(render("a{{#f}}X{{/f}}b", "{\"f\":false}"), "ab");
	CHECK_STR(render("a{{#n}}X{{/n}}b", "{\"n\":null}"), "ab");
	/* true renders it once with the context unchanged */
	CHECK_STR(render("{{#t}}{{.}}{{/t}}", "{\"t\":true}"), "{\"t\":true}");
	CHECK_STR(render("{{#t}}[{{x}}]{{/t}}", "{\"t\":true,\"x\":\"X\"}"), "[X]");
	/* an object is pushed, and renders even when empty */
	CHECK_STR(render("{{#user}}{{name}} is {{age}}{{/user}}", "{\"user\":{\"name\":\"Ada\",\"age\":36}}"),
			  "Ada is 36");
	CHECK_STR(render("{{#o}}X{{.}}{{/o}}", "{\"o\":{}}"), "X{}");
	/* a string or a number: once, as {{.}} */
	CHECK_STR(render("{{#s}}<{{.}}>{{/s}}", "{\"s\":\"text\"}"), "<text>");
	CHECK_STR(render("{{#s}}<{{.}}>{{/s}}", "{\"s\":\"\"}"), "<>");
	CHECK_STR(render("{{#n}}<{{.}}>{{/n}}", "{\"n\":0}"), "<0>");
	/* whitespace in section tags */
	CHECK_STR(render("{{# people }}{{ name }}{{/ people }}", people), "AdaAlan");
	CHECK_STR(render("{{#\tt}}y{{/\nt }}", "{\"t\":true}"), "y");
	/* a dotted section name */
	CHECK_STR(render("{{#a.b}}{{.}}{{/a.b}}", "{\"a\":{\"b\":[1,2]}}"), "12");
	/* {{#.}} iterates over the current element */
	CHECK_STR(render("{{#rows}}[{{#.}}{{.}},{{/.}}]{{/rows}}", "{\"rows\":[[1,2],[3]]}"), "[1,2,][3,]");
	/* nested arrays, each level with its own element */
	CHECK_STR(render("{{#groups}}{{name}}:{{#items}} {{.}}{{/items}};{{/groups}}",
					 "{\"groups\":[{\"name\":\"g1\",\"items\":[1,2]},{\"name\":\"g2\",\"items\":[]}]}"),
			  "g1: 1 2;g2:;");
	/* a section may be used again after it closed */
	CHECK_STR(render("{{#t}}a{{/t}}{{#t}}b{{/t}}", "{\"t\":true}"), "ab");
}

static void
test_scoping(void)
{
	/* the element first, then outer contexts */
	CHECK_STR(render("{{#items}}{{name}}@{{place}} {{/items}}",
					 "{\"place\":\"home\",\"items\":[{\"name\":\"a\"},{\"name\":\"b\",\"place\":\"work\"}]}"),
			  "a@home b@work ");
	/* a scalar element has no fields: names go outwards */
	CHECK_STR(render("{{#xs}}{{p}}{{.}} {{/xs}}", "{\"p\":\"#\",\"xs\":[1,2]}"), "#1 #2 ");
	/* three levels deep, reaching the top */
	CHECK_STR(render("{{#a}}{{#b}}{{#c}}{{top}}{{mid}}{{low}}{{/c}}{{/b}}{{/a}}",
					 "{\"top\":\"T\",\"a\":{\"mid\":\"M\",\"b\":[{\"c\":{\"low\":\"L\"}}]}}"),
			  "TML");
	/* a dotted name's first segment is found through the scopes */
	CHECK_STR(render("{{#items}}{{user.name}}:{{id}} {{/items}}",
					 "{\"user\":{\"name\":\"u\"},\"items\":[{\"id\":1},{\"id\":2}]}"),
			  "u:1 u:2 ");
	/* ...but the rest must be below what it found: no fallback outwards */
	CHECK_STR(render("{{#items}}{{user.name}}{{/items}}",
					 "{\"user\":{\"name\":\"outer\"},\"items\":[{\"user\":{\"id\":1}}]}"),
			  "ERROR: missing template variable \"user.name\"");
	/* an inner name shadows an outer one */
	CHECK_STR(render("{{x}}{{#o}}{{x}}{{/o}}{{x}}", "{\"x\":1,\"o\":{\"x\":2}}"), "121");
	/* {{.}} in an object section is the object */
	CHECK_STR(render("{{#o}}{{.}}{{/o}}", "{\"o\":{\"k\":[1]}}"), "{\"k\":[1]}");
}

static void
test_inverted(void)
{
	CHECK_STR(render("{{^f}}none{{/f}}", "{\"f\":false}"), "none");
	CHECK_STR(render("{{^n}}none{{/n}}", "{\"n\":null}"), "none");
	CHECK_STR(render("{{^e}}none{{/e}}", "{\"e\":[]}"), "none");
	CHECK_STR(render("[{{^t}}none{{/t}}]", "{\"t\":true}"), "[]");
	CHECK_STR(render("[{{^a}}none{{/a}}]", "{\"a\":[0]}"), "[]");
	CHECK_STR(render("[{{^s}}none{{/s}}]", "{\"s\":\"\"}"), "[]");
	CHECK_STR(render("[{{^z}}none{{/z}}]", "{\"z\":0}"), "[]");
	CHECK_STR(render("[{{^o}}none{{/o}}]", "{\"o\":{}}"), "[]");
	/* the usual pairing; the context inside is unchanged */
	CHECK_STR(render("{{#items}}{{.}} {{/items}}{{^items}}no items for {{who}}{{/items}}",
					 "{\"items\":[],\"who\":\"you\"}"), "no items for you");
	CHECK_STR(render("{{#items}}{{.}} {{/items}}{{^items}}none{{/items}}",
					 "{\"items\":[1,2]}"), "1 2 ");
	/* inside a section, against the element */
	CHECK_STR(render("{{#xs}}{{^ok}}!{{/ok}}{{/xs}}", "{\"xs\":[{\"ok\":true},{\"ok\":false}]}"), "!");
}

static void
test_comments(void)
{
	CHECK_STR(render("a{{! a comment }}b", "{}"), "ab");
	CHECK_STR(render("a{{!}}b", "{}"), "ab");
	CHECK_STR(render("a{{!no space}}b{{ ! spaced }}c", "{}"), "abc");
	CHECK_STR(render("a{{! spans\nlines, has { braces } and {{ opens }}b", "{}"), "ab");
	/* names in comments are not variables */
	CHECK_STR(render("{{! {{missing }}ok", NULL), "ok");
}

static void
test_standalone_lines(void)
{
	const char *vars = "{\"items\":[{\"name\":\"a\"},{\"name\":\"b\"}],\"none\":[]}";

	CHECK_STR(render("Items:\n{{#items}}\n- {{name}}\n{{/items}}\nEnd\n", vars),
			  "Items:\n- a\n- b\nEnd\n");
	/* indented tags, trailing blanks, CRLF */
	CHECK_STR(render("Items:\r\n  {{#items}}  \r\n- {{name}}\r\n\t{{/items}}\r\nEnd", vars),
			  "Items:\r\n- a\r\n- b\r\nEnd");
	/* inverted and comment lines vanish too */
	CHECK_STR(render("A\n{{^none}}\nempty\n{{/none}}\n{{! note }}\nB", vars), "A\nempty\nB");
	/* a standalone tag at the very start and the very end */
	CHECK_STR(render("{{#items}}\n{{name}}\n{{/items}}", vars), "a\nb\n");
	/* not standalone: other text or a tag on the line */
	CHECK_STR(render("x {{#items}}{{name}}{{/items}} y\n", vars), "x ab y\n");
	CHECK_STR(render("{{#items}} {{name}}\n{{/items}}", vars), " a\n b\n");
	CHECK_STR(render("{{! c }}{{! d }}\nx", vars), "\nx");
	/* a variable alone on its line keeps the line */
	CHECK_STR(render("a\n{{none}}\nb", vars), "a\n[]\nb");
	CHECK_STR(render("a\n  {{! c }}  \n\nb", vars), "a\n\nb");
}

static void
test_literal_braces(void)
{
	CHECK_STR(render("\\{{name}}", "{}"), "{{name}}");
	CHECK_STR(render("say \\{{ and {{x}}", "{\"x\":\"X\"}"), "say {{ and X");
	CHECK_STR(render("{{x}}\\{{", "{\"x\":\"X\"}"), "X{{");
	CHECK_STR(render("\\{{{x}}}", "{}"), "{{{x}}}");
	/* after the escape, a real tag may follow at once */
	CHECK_STR(render("\\{{{{x}}", "{\"x\":\"X\"}"), "{{X");
	/* nothing else about backslashes is special */
	CHECK_STR(render("a\\b \\n \\} \\\\ \\}}", "{}"), "a\\b \\n \\} \\\\ \\}}");
	CHECK_STR(render("\\\\{{x}}", "{}"), "\\{{x}}");
	CHECK_STR(render("{{x}}\\", "{\"x\":\"X\"}"), "X\\");
	/* a value's braces are never parsed */
	CHECK_STR(render("{{x}}", "{\"x\":\"{{y}}\"}"), "{{y}}");
	/* an escaped line is not standalone */
	CHECK_STR(render("\\{{#x}}\n", "{}"), "{{#x}}\n");
}

static void
test_missing_variables(void)
{
	CHECK_STR(render("{{nope}}", "{}"), "ERROR: missing template variable \"nope\"");
	CHECK_STR(render("{{nope}}", NULL), "ERROR: missing template variable \"nope\"");
	CHECK_STR(render("{{a.b}}", "{\"a\":{}}"), "ERROR: missing template variable \"a.b\"");
	CHECK_STR(render("{{a.b.c}}", "{\"a\":{\"b\":\"str\"}}"), "ERROR: missing template variable \"a.b.c\"");
	CHECK_STR(render("{{a.b}}", "{\"a\":[{\"b\":1}]}"), "ERROR: missing template variable \"a.b\"");
	/* a null value is present */
	CHECK_STR(render("{{a}}", "{\"a\":null}"), "null");
	/* sections and inverted sections are strict too */
	CHECK_STR(render("{{#s}}x{{/s}}", "{}"), "ERROR: missing template variable \"s\"");
	CHECK_STR(render("{{^s}}x{{/s}}", "{}"), "ERROR: missing template variable \"s\"");
	/* inside a section: neither the element nor any outer context has it */
	CHECK_STR(render("{{#items}}{{name}}{{/items}}", "{\"items\":[{\"name\":\"a\"},{\"id\":2}]}"),
			  "ERROR: missing template variable \"name\"");
	CHECK_STR(render("{{#o}}{{#p}}{{q}}{{/p}}{{/o}}", "{\"o\":{\"p\":{}}}"),
			  "ERROR: missing template variable \"q\"");
	/* names are looked up when they are rendered: a skipped block is not */
	CHECK_STR(render("{{#f}}{{nope}}{{/f}}ok", "{\"f\":false}"), "ok");
	CHECK_STR(render("{{^t}}{{nope}}{{/t}}ok", "{\"t\":true}"), "ok");
	/* vars that are not an object: only {{.}} finds anything */
	CHECK_STR(render("{{.}}", "[1,2]"), "[1,2]");
	CHECK_STR(render("{{a}}", "[1,2]"), "ERROR: missing template variable \"a\"");
	/* NULL vars are an empty object */
	CHECK_STR(render("{{.}} text", NULL), "{} text");
}

static void
test_parse_errors(void)
{
	CHECK_STR(parse_error("Hello {{name"), "unclosed tag at line 1, column 7");
	CHECK_STR(parse_error("a\nbc\n  {{x}"), "unclosed tag at line 3, column 3");
	CHECK_STR(parse_error("{{#items}}x"), "unclosed section \"items\" at line 1, column 1");
	CHECK_STR(parse_error("a\n {{#a}}{{#b}}{{/b}}"), "unclosed section \"a\" at line 2, column 2");
	CHECK_STR(parse_error("{{#a}}{{#b}}{{/a}}{{/b}}"),
			  "close tag \"a\" does not match open section \"b\" at line 1, column 13");
	CHECK_STR(parse_error("{{#a}}\n{{/ b }}"), "close tag \"b\" does not match open section \"a\" at line 2, column 1");
	CHECK_STR(parse_error("text {{/a}}"), "close tag \"a\" has no open section at line 1, column 6");
	CHECK_STR(parse_error("{{#a}}{{/a}}{{/a}}"), "close tag \"a\" has no open section at line 1, column 13");
	CHECK_STR(parse_error("x{{}}"), "empty tag at line 1, column 2");
	CHECK_STR(parse_error("x{{ \t\n }}"), "empty tag at line 1, column 2");
	CHECK_STR(parse_error("{{#}}"), "missing name after \"{{#\" at line 1, column 1");
	CHECK_STR(parse_error("{{^ }}"), "missing name after \"{{^\" at line 1, column 1");
	CHECK_STR(parse_error("{{#a}}{{/}}"), "missing name after \"{{/\" at line 1, column 7");
	CHECK_STR(parse_error("{{a b}}"), "invalid name \"a b\" at line 1, column 1");
	CHECK_STR(parse_error("{{a..b}}"), "invalid name \"a..b\" at line 1, column 1");
	CHECK_STR(parse_error("{{.a}}"), "invalid name \".a\" at line 1, column 1");
	CHECK_STR(parse_error("{{a.}}"), "invalid name \"a.\" at line 1, column 1");
	CHECK_STR(parse_error("{{..}}"), "invalid name \"..\" at line 1, column 1");
	CHECK_STR(parse_error("{{a+b}}"), "invalid name \"a+b\" at line 1, column 1");
	CHECK_STR(parse_error("{{ a {{b}}"), "invalid name \"a {{b\" at line 1, column 1");
	CHECK_STR(parse_error("{{#a b}}{{/a b}}"), "invalid name \"a b\" at line 1, column 1");
	CHECK_STR(parse_error("{{aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!}}"),
			  "invalid name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" at line 1, column 1");
	CHECK_STR(parse_error("x {{>partial}}"), "unsupported tag \"{{>\" at line 1, column 3");
	CHECK_STR(parse_error("{{&x}}"), "unsupported tag \"{{&\" at line 1, column 1");
	CHECK_STR(parse_error("{{{x}}}"), "unsupported tag \"{{{\" at line 1, column 1");
	CHECK_STR(parse_error("{{=<% %>=}}"), "unsupported tag \"{{=\" at line 1, column 1");
	CHECK_STR(parse_error("{{<parent}}{{/parent}}"), "unsupported tag \"{{<\" at line 1, column 1");
	CHECK_STR(parse_error("{{$block}}{{/block}}"), "unsupported tag \"{{$\" at line 1, column 1");
	CHECK_STR(parse_error("{{ > x }}"), "unsupported tag \"{{>\" at line 1, column 1");
	/* the first error wins */
	CHECK_STR(parse_error("{{a b}} {{"), "invalid name \"a b\" at line 1, column 1");
	/* CRLF lines count as lines */
	CHECK_STR(parse_error("a\r\nb {{}}"), "empty tag at line 2, column 3");
	CHECK_STR(parse_error(NULL), "template text is null");
}

static void
test_nesting_limit(void)
{
	char		text[1024];
	char	   *o;
	int			depth;

	/* exactly LLM_TEMPLATE_MAX_DEPTH nested sections render */
	for (depth = LLM_TEMPLATE_MAX_DEPTH; depth <= LLM_TEMPLATE_MAX_DEPTH + 1; depth++)
	{
		o = text;
		for (int i = 0; i < depth; i++)
			o += sprintf(o, "{{#t}}");
		o += sprintf(o, "x");
		for (int i = 0; i < depth; i++)
			o += sprintf(o, "{{/t}}");
		if (depth == LLM_TEMPLATE_MAX_DEPTH)
			CHECK_STR(render(text, "{\"t\":true}"), "x");
		else
			CHECK_STR(parse_error(text), "sections nested deeper than 32 at line 1, column 193");
	}
	/* inverted sections count too; a deep object stack renders */
	o = text;
	for (int i = 0; i < LLM_TEMPLATE_MAX_DEPTH; i++)
		o += sprintf(o, i % 2 ? "{{^f}}" : "{{#o}}");
	o += sprintf(o, "{{v}}");
	for (int i = LLM_TEMPLATE_MAX_DEPTH - 1; i >= 0; i--)
		o += sprintf(o, i % 2 ? "{{/f}}" : "{{/o}}");
	CHECK_STR(render(text, "{\"o\":{\"f\":false},\"v\":\"deep\"}"), "deep");
	CHECK_STR(parse_error("{{#a}}{{^b}}{{#c}}{{/c}}{{/b}}{{/a}}"), "parsed");
}

static void
test_max_output(void)
{
	/* the limit is on bytes, inclusive */
	CHECK_STR(render_max("abcde", "{}", 5), "abcde");
	CHECK_STR(render_max("abcdef", "{}", 5), "ERROR: rendered text exceeds 5 bytes");
	CHECK_STR(render_max("", "{}", 0), "");
	CHECK_STR(render_max("{{x}}", "{\"x\":\"é\"}", 2), "é");
	CHECK_STR(render_max("{{x}}", "{\"x\":\"é\"}", 1), "ERROR: rendered text exceeds 1 bytes");
	CHECK_STR(render_max("{{o}}", "{\"o\":{\"k\":1}}", 6), "ERROR: rendered text exceeds 6 bytes");
	CHECK_STR(render_max("{{#xs}}ab{{/xs}}", "{\"xs\":[1,2,3]}", 6), "ababab");
	CHECK_STR(render_max("{{#xs}}ab{{/xs}}", "{\"xs\":[1,2,3]}", 5), "ERROR: rendered text exceeds 5 bytes");
}

/* A JSON array of n zeros. */
static char *
zeros(int n)
{
	char	   *json = malloc(2 * n + 3);
	char	   *o = json;

	*o++ = '[';
	for (int i = 0; i < n; i++)
	{
		*o++ = '0';
		*o++ = i + 1 < n ? ',' : ']';
	}
	if (n == 0)
		*o++ = ']';
	*o = '\0';
	return json;
}

static void
test_blowup(void)
{
	char		err[256];
	char	   *thousand = zeros(1000);
	char	   *hundred = zeros(100);
	char	   *vars_json = malloc(strlen(thousand) + strlen(hundred) + 32);
	cJSON	   *vars;
	LlmTemplate *tmpl;
	char	   *out;
	clock_t		start = clock();

	sprintf(vars_json, "{\"a\":%s,\"b\":%s,\"e\":\"\"}", thousand, hundred);
	vars = cJSON_Parse(vars_json);

	/* 1000^4 copies of "x": stopped at max_output */
	tmpl = llm_template_parse("{{#a}}{{#a}}{{#a}}{{#a}}x{{/a}}{{/a}}{{/a}}{{/a}}", err, sizeof(err));
	out = llm_template_render(tmpl, vars, 65536, err, sizeof(err));
	CHECK(out == NULL);
	CHECK_STR(err, "rendered text exceeds 65536 bytes");
	llm_template_free(tmpl);

	/* 1000^4 iterations that write nothing: stopped by the step limit */
	tmpl = llm_template_parse("{{#a}}{{#a}}{{#a}}{{#a}}{{e}}{{/a}}{{/a}}{{/a}}{{/a}}", err, sizeof(err));
	out = llm_template_render(tmpl, vars, 0, err, sizeof(err));
	CHECK(out == NULL);
	CHECK_STR(err, "rendering the template takes too many steps (nested sections over large arrays?)");
	llm_template_free(tmpl);

	tmpl = llm_template_parse("{{#a}}{{#a}}{{#a}}{{#a}}{{/a}}{{/a}}{{/a}}{{/a}}", err, sizeof(err));
	out = llm_template_render(tmpl, vars, 0, err, sizeof(err));
	CHECK(out == NULL);
	CHECK(strstr(err, "too many steps") != NULL);
	llm_template_free(tmpl);

	/* 100,000 "0," in one go: linear, quick */
	tmpl = llm_template_parse("{{#a}}{{#b}}{{.}},{{/b}}{{/a}}", err, sizeof(err));
	out = llm_template_render(tmpl, vars, MB, err, sizeof(err));
	CHECK(out != NULL && strlen(out) == 200000);
	CHECK(out != NULL && strncmp(out, "0,0,", 4) == 0);
	cJSON_free(out);
	llm_template_free(tmpl);

	/* all of the above well under the time a test deserves (valgrind too) */
	CHECK((double) (clock() - start) / CLOCKS_PER_SEC < 60);
	cJSON_Delete(vars);
	free(vars_json);
	free(hundred);
	free(thousand);
}

/* The ceilings of llm_template_parse_limited and the kinds of errors. */
static void
test_limits(void)
{
	char		err[256];
	LlmTemplateError kind;
	LlmTemplate *tmpl;
	cJSON	   *vars = cJSON_Parse("{\"a\":\"xxxx\"}");
	char	   *out;

	/* size: refused before parsing, at max_bytes + 1 */
	tmpl = llm_template_parse_limited("{{a}}{{a}}", 9, 100, &kind, err, sizeof(err));
	CHECK(tmpl == NULL && kind == LLM_TEMPLATE_TOO_LARGE);
	CHECK_STR(err, "the template is longer than 9 bytes");
	tmpl = llm_template_parse_limited("{{a}}{{a}}", 10, 100, &kind, err, sizeof(err));
	CHECK(tmpl != NULL && kind == LLM_TEMPLATE_OK);
	CHECK(tmpl != NULL && llm_template_nodes(tmpl) == 2);
	llm_template_free(tmpl);

	/* nodes: variables, sections and the text between them all count */
	tmpl = llm_template_parse_limited("x{{a}}y{{#a}}z{{/a}}", 100, 5, &kind, err, sizeof(err));
	CHECK(tmpl != NULL && llm_template_nodes(tmpl) == 5);
	llm_template_free(tmpl);
	tmpl = llm_template_parse_limited("x{{a}}y{{#a}}z{{/a}}", 100, 4, &kind, err, sizeof(err));
	CHECK(tmpl == NULL && kind == LLM_TEMPLATE_TOO_MANY_NODES);
	CHECK_STR(err, "the template has more than 4 parts (variables, sections and the text between them)");
	tmpl = llm_template_parse_limited("x{{a}}y", 100, 2, &kind, err, sizeof(err));
	CHECK(tmpl == NULL && kind == LLM_TEMPLATE_TOO_MANY_NODES);
	tmpl = llm_template_parse_limited("{{a}", 100, 2, &kind, err, sizeof(err));
	CHECK(tmpl == NULL && kind == LLM_TEMPLATE_SYNTAX);

	/* render kinds */
	tmpl = llm_template_parse_limited("{{a}}{{a}}", 100, 100, &kind, err, sizeof(err));
	out = llm_template_render_kind(tmpl, vars, 8, &kind, err, sizeof(err));
	CHECK(out != NULL && kind == LLM_TEMPLATE_OK);
	cJSON_free(out);
	out = llm_template_render_kind(tmpl, vars, 7, &kind, err, sizeof(err));
	CHECK(out == NULL && kind == LLM_TEMPLATE_OUTPUT_TOO_LARGE);
	out = llm_template_render_kind(tmpl, NULL, 7, &kind, err, sizeof(err));
	CHECK(out == NULL && kind == LLM_TEMPLATE_MISSING);
	llm_template_free(tmpl);
	cJSON_Delete(vars);
}

static void
test_reuse(void)
{
	char		err[256];
	LlmTemplate *tmpl = llm_template_parse("Hi {{name}}{{#x}}!{{/x}}", err, sizeof(err));
	cJSON	   *a = cJSON_Parse("{\"name\":\"A\",\"x\":true}");
	cJSON	   *b = cJSON_Parse("{\"name\":\"B\",\"x\":false}");
	char	   *out;

	out = llm_template_render(tmpl, a, MB, err, sizeof(err));
	CHECK_STR(out, "Hi A!");
	cJSON_free(out);
	out = llm_template_render(tmpl, b, MB, err, sizeof(err));
	CHECK_STR(out, "Hi B");
	cJSON_free(out);
	out = llm_template_render(tmpl, NULL, MB, err, sizeof(err));
	CHECK(out == NULL);
	CHECK_STR(err, "missing template variable \"name\"");
	out = llm_template_render(tmpl, a, MB, err, sizeof(err));
	CHECK_STR(out, "Hi A!");
	cJSON_free(out);
	cJSON_Delete(a);
	cJSON_Delete(b);
	llm_template_free(tmpl);
	llm_template_free(NULL);
}

static const char *
variables_of(const char *text)
{
	static char result[1024];
	char		err[256];
	LlmTemplate *tmpl = llm_template_parse(text, err, sizeof(err));
	cJSON	   *names;
	char	   *json;

	if (tmpl == NULL)
		return "parse error";
	names = llm_template_variables(tmpl);
	json = cJSON_PrintUnformatted(names);
	snprintf(result, sizeof(result), "%s", json);
	cJSON_free(json);
	cJSON_Delete(names);
	llm_template_free(tmpl);
	return result;
}

static void
test_variables_list(void)
{
	CHECK_STR(variables_of("no tags"), "[]");
	CHECK_STR(variables_of("{{b}} {{a}} {{b}} {{ a }}"), "[\"b\",\"a\"]");
	CHECK_STR(variables_of("{{user.name}} {{user}} {{user.name}}"), "[\"user.name\",\"user\"]");
	/* a section's name, not what is inside it */
	CHECK_STR(variables_of("{{#items}}{{name}}{{#sub}}{{x}}{{/sub}}{{/items}}{{after}}"),
			  "[\"items\",\"after\"]");
	/* inverted sections do not change the context */
	CHECK_STR(variables_of("{{^empty}}{{fallback}}{{/empty}}"), "[\"empty\",\"fallback\"]");
	/* {{.}} and comments are not variables */
	CHECK_STR(variables_of("{{.}}{{! {{x}} }}{{#.}}{{y}}{{/.}}{{z}}"), "[\"z\"]");
	CHECK_STR(variables_of("\\{{escaped}} {{real}}"), "[\"real\"]");
}

static void
test_error_buffers(void)
{
	char		err[12];
	char		tiny[1];
	LlmTemplate *tmpl;

	/* messages are cut to the buffer, never overrun it */
	CHECK(llm_template_parse("{{#a}}", err, sizeof(err)) == NULL);
	CHECK_STR(err, "unclosed se");
	CHECK(llm_template_parse("{{#a}}", tiny, sizeof(tiny)) == NULL);
	CHECK(tiny[0] == '\0');
	CHECK(llm_template_parse("{{#a}}", NULL, 0) == NULL);

	/* a cut never leaves half a UTF-8 character: "é" is 2 bytes */
	CHECK(llm_template_parse("{{ééé}}", err, sizeof(err)) == NULL);
	CHECK_STR(err, "invalid nam");
	{
		char		err16[17];

		CHECK(llm_template_parse("{{ééé}}", err16, sizeof(err16)) == NULL);
		/* "invalid name \"" is 14 bytes: room for é, not for the next */
		CHECK_STR(err16, "invalid name \"é");
	}
	{
		char		err16[16];

		/* room for one byte of é only: it goes */
		CHECK(llm_template_parse("{{ééé}}", err16, sizeof(err16)) == NULL);
		CHECK_STR(err16, "invalid name \"");
	}
	/* a long bad name is quoted in part, cut between characters */
	CHECK_STR(parse_error("{{aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaéé}}"),
			  "invalid name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" at line 1, column 1");

	tmpl = llm_template_parse("{{x}}", err, sizeof(err));
	CHECK(llm_template_render(tmpl, NULL, MB, NULL, 0) == NULL);
	llm_template_free(tmpl);
}

void
test_template(void)
{
	test_variables();
	test_unicode();
	test_sections();
	test_scoping();
	test_inverted();
	test_comments();
	test_standalone_lines();
	test_literal_braces();
	test_missing_variables();
	test_parse_errors();
	test_nesting_limit();
	test_max_output();
	test_blowup();
	test_limits();
	test_reuse();
	test_variables_list();
	test_error_buffers();
}
