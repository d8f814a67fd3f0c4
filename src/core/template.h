/*
 * template.h — prompt templates in a small, strict subset of mustache.
 *
 * Pure code, like request.h: no PostgreSQL headers, and every allocation
 * goes through cJSON_malloc/cJSON_free.
 *
 * The language:
 *
 *	{{name}}		the value of variable name; {{a.b.c}} reaches into nested
 *					objects.  A JSON string is written as its text, with no
 *					quotes and no escaping; any other value (number, boolean,
 *					null, object, array) is written as compact JSON text.
 *	{{.}}			the current context: the element inside a section over an
 *					array, or the whole vars object at the top level.
 *	{{#name}}..{{/name}}
 *					a section.  Over a non-empty array, the block is rendered
 *					once per element, with the element pushed as the innermost
 *					context.  A false, null or empty array value omits it.
 *					true renders it once with the context unchanged; an object
 *					(even an empty one), a string or a number renders it once
 *					with the value pushed as the context.
 *	{{^name}}..{{/name}}
 *					an inverted section: rendered once when the value is
 *					false, null or an empty array, and omitted otherwise.
 *	{{! comment }}	dropped.
 *	\{{				a literal "{{".  That is the only escape: a backslash
 *					anywhere else is an ordinary character, and a lone "}}" is
 *					ordinary text.  (So a template cannot put a literal
 *					backslash just before a variable.)
 *
 * Whitespace is allowed inside a tag: {{ name }}, {{# items }}.  Names are
 * made of letters, digits, '_' and '-', joined by '.'.
 *
 * Lookup follows mustache's scoping: the first segment of a name is looked
 * up in the innermost context that is an object holding it, then outwards,
 * up to the vars object; the remaining segments must then exist below it.
 * A name found in no context is an error ("missing template variable"),
 * for sections and inverted sections too: templates are strict, so that a
 * typo never renders silently as nothing.
 *
 * As in mustache, a line holding nothing but whitespace and one section,
 * inverted section, close or comment tag is "standalone": the whole line,
 * newline included, is dropped from the output, so that
 *
 *	Items:
 *	{{#items}}
 *	- {{name}}
 *	{{/items}}
 *
 * renders one "- name" line per item with no blank lines in between.
 *
 * Unsupported mustache features are parse errors rather than surprises:
 * partials {{>x}}, unescaped {{&x}} and {{{x}}} (nothing is ever escaped
 * anyway), delimiter changes {{=<% %>=}} and inheritance {{<x}} {{$x}}.
 */
#ifndef LLMEXT_TEMPLATE_H
#define LLMEXT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

/* Sections nested deeper than this are a parse error. */
#define LLM_TEMPLATE_MAX_DEPTH 32

/*
 * Rendering takes at most this many steps (one per node visited and one per
 * array element) plus two per byte of max_output, which is more than any
 * render that writes something at every step needs.  Nested sections over
 * large arrays whose blocks write nothing thus cannot spin for hours
 * without ever reaching max_output.
 */
#define LLM_TEMPLATE_BASE_STEPS 1000000

typedef struct LlmTemplate LlmTemplate;

/*
 * Why parsing or rendering failed, so that the server can tell the user's
 * mistakes (a syntax error, a missing variable) from a ceiling reached.
 */
typedef enum LlmTemplateError
{
	LLM_TEMPLATE_OK,
	LLM_TEMPLATE_SYNTAX,		/* parse: the text is not a template */
	LLM_TEMPLATE_TOO_LARGE,		/* parse: more than max_bytes of text */
	LLM_TEMPLATE_TOO_MANY_NODES,	/* parse: more than max_nodes parts */
	LLM_TEMPLATE_MISSING,		/* render: a variable vars lacks */
	LLM_TEMPLATE_UNPRINTABLE,	/* render: a value cJSON cannot print */
	LLM_TEMPLATE_OUTPUT_TOO_LARGE,	/* render: more than max_output bytes */
	LLM_TEMPLATE_TOO_MANY_STEPS /* render: the step budget ran out */
} LlmTemplateError;

/*
 * A parsed template costs one node per variable, section, inverted section
 * and run of text between tags (plus the text itself, twice): max_nodes
 * bounds the memory a template can take whatever its text looks like.
 */

/*
 * Parses text into a template, to be rendered any number of times.  On a
 * syntax error returns NULL and writes "<what> at line L, column C" into err
 * (1-based; the column counts bytes).
 */
extern LlmTemplate *llm_template_parse(const char *text, char *err, size_t errlen);

/*
 * llm_template_parse with ceilings: a text longer than max_bytes is refused
 * before anything is allocated (LLM_TEMPLATE_TOO_LARGE), and parsing stops
 * at the node that would exceed max_nodes (LLM_TEMPLATE_TOO_MANY_NODES).
 * *kind says why NULL was returned (LLM_TEMPLATE_OK on success).
 */
extern LlmTemplate *llm_template_parse_limited(const char *text, size_t max_bytes,
											   size_t max_nodes, LlmTemplateError *kind,
											   char *err, size_t errlen);

/* How many nodes tmpl holds (see llm_template_parse_limited). */
extern size_t llm_template_nodes(const LlmTemplate *tmpl);

/*
 * Renders tmpl with vars (an object; NULL counts as an empty object).
 * Returns a cJSON_malloc'd string, or NULL with a sentence in err: a missing
 * variable, output longer than max_output bytes (the terminating NUL not
 * counted), or a render that needs more than LLM_TEMPLATE_BASE_STEPS +
 * 2 * max_output steps.
 */
extern char *llm_template_render(const LlmTemplate *tmpl, const cJSON *vars,
								 size_t max_output, char *err, size_t errlen);

/* llm_template_render, also saying in *kind why it failed. */
extern char *llm_template_render_kind(const LlmTemplate *tmpl, const cJSON *vars,
									  size_t max_output, LlmTemplateError *kind,
									  char *err, size_t errlen);

/*
 * The variables a caller has to supply: a new cJSON array of the distinct
 * paths (as written, e.g. "user.name") of the variable, section and inverted
 * section tags that are not inside any {{#section}}, in order of first use.
 * Names used inside a section are left out, since they may be relative to
 * its element; the section's own name is listed.  Inverted sections never
 * change the context, so tags inside them are listed.  {{.}} is never
 * listed.  The caller frees the array with cJSON_Delete.
 */
extern cJSON *llm_template_variables(const LlmTemplate *tmpl);

extern void llm_template_free(LlmTemplate *tmpl);

#endif							/* LLMEXT_TEMPLATE_H */
