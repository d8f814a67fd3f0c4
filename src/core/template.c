/*
 * template.c — parse a prompt template once into a flat node list, then
 * render it any number of times into a growable buffer.
 *
 * Pure code (see request.h).  The language is described in template.h.
 */
#include "core/template.h"

#include "core/request.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef enum NodeKind
{
	NODE_TEXT,
	NODE_VARIABLE,
	NODE_SECTION,
	NODE_INVERTED,
} NodeKind;

/*
 * A section's block is the run of nodes that follows it, up to its end
 * index, so the whole template is one array and rendering needs no tree.
 */
typedef struct TemplateNode
{
	NodeKind	kind;
	size_t		offset;			/* TEXT: where the text starts; others: the
								 * tag's "{{" */
	size_t		len;			/* TEXT: how many bytes */
	char	   *path;			/* the name as written: "a.b", or "." */
	char	   *keys;			/* path's segments, each NUL-terminated */
	int			nkeys;			/* 0 for "." */
	size_t		end;			/* sections: the index after the block */
} TemplateNode;

struct LlmTemplate
{
	char	   *text;			/* our copy of the template text */
	TemplateNode *nodes;
	size_t		nnodes;
	size_t		capacity;
	size_t		max_nodes;		/* add_node refuses to grow past this */
};

/* Longest piece of a bad name quoted back in an error message. */
#define QUOTE_MAX 40

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool
is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '_' || c == '-';
}


#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
static void parse_error(const char *text, size_t offset, char *err, size_t errlen,
						const char *format,...);

/* Writes "<what> at line L, column C" for the byte at offset of text. */
static void
parse_error(const char *text, size_t offset, char *err, size_t errlen,
			const char *format,...)
{
	va_list		args;
	size_t		line = 1;
	size_t		line_start = 0;
	size_t		used;

	if (err == NULL || errlen == 0)
		return;
	for (size_t i = 0; i < offset; i++)
	{
		if (text[i] == '\n')
		{
			line++;
			line_start = i + 1;
		}
	}
	va_start(args, format);
	vsnprintf(err, errlen, format, args);
	va_end(args);
	used = strlen(err);
	snprintf(err + used, errlen - used, " at line %zu, column %zu",
			 line, offset - line_start + 1);
	llm_trim_partial_utf8(err, errlen);
}

/*
 * Copies at most QUOTE_MAX bytes of s into buf, stopping at a character
 * boundary, with "..." when it had to cut: bad names are quoted back to the
 * user, and a name that swallowed half the template should not flood the
 * message.
 */
static const char *
quote(char *buf, const char *s, size_t len)
{
	size_t		n = len;

	if (n > QUOTE_MAX)
	{
		n = QUOTE_MAX;
		while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(buf, s, n);
	strcpy(buf + n, n < len ? "..." : "");
	return buf;
}

static bool
valid_name(const char *s, size_t len)
{
	size_t		segment = 0;

	if (len == 1 && s[0] == '.')
		return true;
	for (size_t i = 0; i < len; i++)
	{
		if (s[i] == '.')
		{
			if (segment == 0)
				return false;
			segment = 0;
		}
		else if (is_name_char(s[i]))
			segment++;
		else
			return false;
	}
	return segment > 0;
}

static TemplateNode *
add_node(LlmTemplate *tmpl, NodeKind kind, size_t offset)
{
	TemplateNode *node;

	if (tmpl->nnodes >= tmpl->max_nodes)
		return NULL;
	if (tmpl->nnodes == tmpl->capacity)
	{
		size_t		capacity = tmpl->capacity == 0 ? 16 : tmpl->capacity * 2;
		TemplateNode *nodes;

		/* no more room than the ceiling allows: the array is the big part */
		if (capacity > tmpl->max_nodes)
			capacity = tmpl->max_nodes;
		nodes = cJSON_malloc(capacity * sizeof(TemplateNode));

		if (tmpl->nnodes > 0)
			memcpy(nodes, tmpl->nodes, tmpl->nnodes * sizeof(TemplateNode));
		cJSON_free(tmpl->nodes);
		tmpl->nodes = nodes;
		tmpl->capacity = capacity;
	}
	node = &tmpl->nodes[tmpl->nnodes++];
	memset(node, 0, sizeof(*node));
	node->kind = kind;
	node->offset = offset;
	return node;
}

/* False when the node would pass max_nodes. */
static bool
add_text(LlmTemplate *tmpl, size_t start, size_t end)
{
	TemplateNode *node;

	if (end <= start)
		return true;
	node = add_node(tmpl, NODE_TEXT, start);
	if (node == NULL)
		return false;
	node->len = end - start;
	return true;
}

/* Gives node its name: path as written, keys split at the dots. */
static void
set_path(TemplateNode *node, const char *name, size_t len)
{
	node->path = cJSON_malloc(len + 1);
	memcpy(node->path, name, len);
	node->path[len] = '\0';
	if (len == 1 && name[0] == '.')
		return;
	node->keys = cJSON_malloc(len + 1);
	memcpy(node->keys, node->path, len + 1);
	node->nkeys = 1;
	for (size_t i = 0; i < len; i++)
	{
		if (node->keys[i] == '.')
		{
			node->keys[i] = '\0';
			node->nkeys++;
		}
	}
}

/*
 * The mustache rule for tags other than variables: when the rest of the
 * line around the tag is blank, the line vanishes from the output.  On
 * success returns true with *line_start where the line's leading blanks
 * begin and *next just after its newline (or at the end of the text).
 * seg is where the pending text began: a line that holds an earlier tag
 * starts before it, and is not standalone.
 */
static bool
standalone(const char *text, size_t seg, size_t tag, size_t tag_end,
		   size_t *line_start, size_t *next)
{
	size_t		start = tag;
	size_t		after = tag_end;

	while (start > seg && (text[start - 1] == ' ' || text[start - 1] == '\t'))
		start--;
	if (start != 0 && text[start - 1] != '\n')
		return false;
	while (text[after] == ' ' || text[after] == '\t')
		after++;
	if (text[after] == '\r' && text[after + 1] == '\n')
		after += 2;
	else if (text[after] == '\n')
		after++;
	else if (text[after] != '\0')
		return false;
	*line_start = start;
	*next = after;
	return true;
}

LlmTemplate *
llm_template_parse(const char *source, char *err, size_t errlen)
{
	LlmTemplateError kind;

	return llm_template_parse_limited(source, SIZE_MAX, SIZE_MAX, &kind, err, errlen);
}

size_t
llm_template_nodes(const LlmTemplate *tmpl)
{
	return tmpl->nnodes;
}

/*
 * The first "cc" at or after s, or NULL.  A loop rather than strstr: under
 * AddressSanitizer strstr measures the whole rest of the string on every
 * call, which made parsing a template of many tags quadratic there.
 */
static const char *
find_pair(const char *s, char c)
{
	for (; *s != '\0'; s++)
		if (s[0] == c && s[1] == c)
			return s;
	return NULL;
}

LlmTemplate *
llm_template_parse_limited(const char *source, size_t max_bytes, size_t max_nodes,
						   LlmTemplateError *kind, char *err, size_t errlen)
{
	LlmTemplate *tmpl;
	const char *text;
	size_t		source_len;
	size_t		open[LLM_TEMPLATE_MAX_DEPTH];	/* node index of each open
												 * section */
	int			depth = 0;
	size_t		pos = 0;		/* where to look for the next tag */
	size_t		seg = 0;		/* where the pending text began */
	char		quoted[QUOTE_MAX + 4];

	*kind = LLM_TEMPLATE_SYNTAX;
	if (source == NULL)
	{
		snprintf(err, errlen, "template text is null");
		return NULL;
	}
	/* checked before the copy: the text is the first thing a template costs */
	source_len = max_bytes >= SIZE_MAX / 2 ? strlen(source) : strnlen(source, max_bytes + 1);
	if (source_len > max_bytes)
	{
		*kind = LLM_TEMPLATE_TOO_LARGE;
		snprintf(err, errlen, "the template is longer than %zu bytes", max_bytes);
		return NULL;
	}
	tmpl = cJSON_malloc(sizeof(*tmpl));
	memset(tmpl, 0, sizeof(*tmpl));
	tmpl->max_nodes = max_nodes;
	tmpl->text = llm_strdup(source);
	text = tmpl->text;

	for (;;)
	{
		const char *found = find_pair(text + pos, '{');
		const char *close;
		size_t		tag;
		size_t		tag_end;
		size_t		b;
		size_t		e;
		char		sigil = '\0';
		size_t		line_start;
		size_t		next;

		if (found == NULL)
		{
			if (!add_text(tmpl, seg, source_len))
				goto too_many;
			break;
		}
		tag = found - text;

		/* \{{ is a literal "{{": end the text before the backslash */
		if (tag > seg && text[tag - 1] == '\\')
		{
			if (!add_text(tmpl, seg, tag - 1))
				goto too_many;
			seg = tag;
			pos = tag + 2;
			continue;
		}

		close = find_pair(text + tag + 2, '}');
		if (close == NULL)
		{
			parse_error(text, tag, err, errlen, "unclosed tag");
			goto fail;
		}
		tag_end = close - text + 2;
		b = tag + 2;
		e = close - text;
		while (b < e && is_space(text[b]))
			b++;
		while (e > b && is_space(text[e - 1]))
			e--;
		if (b == e)
		{
			parse_error(text, tag, err, errlen, "empty tag");
			goto fail;
		}

		if (strchr("!#^/", text[b]) != NULL)
		{
			sigil = text[b++];
			while (b < e && is_space(text[b]))
				b++;
		}
		else if (strchr(">&{=<$", text[b]) != NULL)
		{
			/* partials, unescaped output, delimiters, inheritance */
			parse_error(text, tag, err, errlen, "unsupported tag \"{{%c\"", text[b]);
			goto fail;
		}

		if (sigil != '!')
		{
			if (b == e)
			{
				parse_error(text, tag, err, errlen, "missing name after \"{{%c\"", sigil);
				goto fail;
			}
			if (!valid_name(text + b, e - b))
			{
				parse_error(text, tag, err, errlen, "invalid name \"%s\"",
							quote(quoted, text + b, e - b));
				goto fail;
			}
		}

		if (sigil == '\0')
		{
			/* a variable: never standalone */
			TemplateNode *node;

			if (!add_text(tmpl, seg, tag) ||
				(node = add_node(tmpl, NODE_VARIABLE, tag)) == NULL)
				goto too_many;
			set_path(node, text + b, e - b);
			seg = pos = tag_end;
			continue;
		}

		if (sigil == '/')
		{
			const TemplateNode *section;

			if (depth == 0)
			{
				parse_error(text, tag, err, errlen,
							"close tag \"%s\" has no open section",
							quote(quoted, text + b, e - b));
				goto fail;
			}
			section = &tmpl->nodes[open[depth - 1]];
			if (strlen(section->path) != e - b ||
				memcmp(section->path, text + b, e - b) != 0)
			{
				char		quoted_open[QUOTE_MAX + 4];

				parse_error(text, tag, err, errlen,
							"close tag \"%s\" does not match open section \"%s\"",
							quote(quoted, text + b, e - b),
							quote(quoted_open, section->path, strlen(section->path)));
				goto fail;
			}
		}
		else if ((sigil == '#' || sigil == '^') && depth == LLM_TEMPLATE_MAX_DEPTH)
		{
			parse_error(text, tag, err, errlen, "sections nested deeper than %d",
						LLM_TEMPLATE_MAX_DEPTH);
			goto fail;
		}

		if (standalone(text, seg, tag, tag_end, &line_start, &next))
		{
			if (!add_text(tmpl, seg, line_start))
				goto too_many;
			seg = pos = next;
		}
		else
		{
			if (!add_text(tmpl, seg, tag))
				goto too_many;
			seg = pos = tag_end;
		}

		if (sigil == '#' || sigil == '^')
		{
			TemplateNode *node = add_node(tmpl, sigil == '#' ? NODE_SECTION : NODE_INVERTED,
										  tag);

			if (node == NULL)
				goto too_many;
			open[depth++] = tmpl->nnodes - 1;
			set_path(node, text + b, e - b);
		}
		else if (sigil == '/')
			tmpl->nodes[open[--depth]].end = tmpl->nnodes;
	}

	if (depth > 0)
	{
		const TemplateNode *section = &tmpl->nodes[open[depth - 1]];

		parse_error(text, section->offset, err, errlen, "unclosed section \"%s\"",
					quote(quoted, section->path, strlen(section->path)));
		goto fail;
	}
	*kind = LLM_TEMPLATE_OK;
	return tmpl;

too_many:
	*kind = LLM_TEMPLATE_TOO_MANY_NODES;
	snprintf(err, errlen,
			 "the template has more than %zu parts (variables, sections and the text between them)",
			 max_nodes);
fail:
	llm_template_free(tmpl);
	return NULL;
}

void
llm_template_free(LlmTemplate *tmpl)
{
	if (tmpl == NULL)
		return;
	for (size_t i = 0; i < tmpl->nnodes; i++)
	{
		cJSON_free(tmpl->nodes[i].path);
		cJSON_free(tmpl->nodes[i].keys);
	}
	cJSON_free(tmpl->nodes);
	cJSON_free(tmpl->text);
	cJSON_free(tmpl);
}

cJSON *
llm_template_variables(const LlmTemplate *tmpl)
{
	cJSON	   *names = cJSON_CreateArray();
	size_t		i = 0;

	while (i < tmpl->nnodes)
	{
		const TemplateNode *node = &tmpl->nodes[i];

		if (node->kind != NODE_TEXT && node->nkeys > 0)
		{
			const cJSON *seen;
			bool		found = false;

			cJSON_ArrayForEach(seen, names)
			{
				if (strcmp(seen->valuestring, node->path) == 0)
				{
					found = true;
					break;
				}
			}
			if (!found)
				cJSON_AddItemToArray(names, cJSON_CreateString(node->path));
		}
		/* skip a section's block: its names may be relative to an element */
		i = node->kind == NODE_SECTION ? node->end : i + 1;
	}
	return names;
}

typedef struct Renderer
{
	const LlmTemplate *tmpl;
	/* the vars object, then one context per enclosing section at most */
	const cJSON *scopes[LLM_TEMPLATE_MAX_DEPTH + 1];
	int			nscopes;
	char	   *out;
	size_t		len;
	size_t		capacity;
	size_t		max_output;
	size_t		steps_left;
	LlmTemplateError kind;		/* why rendering stopped */
	char	   *err;
	size_t		errlen;
} Renderer;

/* Appends to the output, doubling the buffer so rendering stays linear. */
static bool
emit(Renderer *r, const char *data, size_t len)
{
	if (len > r->max_output - r->len || r->len + len == SIZE_MAX)
	{
		r->kind = LLM_TEMPLATE_OUTPUT_TOO_LARGE;
		snprintf(r->err, r->errlen, "rendered text exceeds %zu bytes", r->max_output);
		return false;
	}
	if (r->len + len >= r->capacity)
	{
		size_t		capacity = r->capacity;
		char	   *out;

		while (capacity <= r->len + len)
			capacity = capacity > SIZE_MAX / 2 ? r->len + len + 1 : capacity * 2;
		out = cJSON_malloc(capacity);
		memcpy(out, r->out, r->len);
		cJSON_free(r->out);
		r->out = out;
		r->capacity = capacity;
	}
	memcpy(r->out + r->len, data, len);
	r->len += len;
	return true;
}

static bool
take_step(Renderer *r)
{
	if (r->steps_left == 0)
	{
		r->kind = LLM_TEMPLATE_TOO_MANY_STEPS;
		snprintf(r->err, r->errlen,
				 "rendering the template takes too many steps (nested sections over large arrays?)");
		return false;
	}
	r->steps_left--;
	return true;
}

/*
 * Mustache scoping: the first segment is looked up from the innermost
 * context outwards, the rest strictly below what it found.  NULL when
 * missing.
 */
static const cJSON *
lookup(const Renderer *r, const TemplateNode *node)
{
	const char *key = node->keys;
	const cJSON *value = NULL;

	if (node->nkeys == 0)
		return r->scopes[r->nscopes - 1];
	for (int i = r->nscopes - 1; i >= 0 && value == NULL; i--)
		if (cJSON_IsObject(r->scopes[i]))
			value = cJSON_GetObjectItemCaseSensitive(r->scopes[i], key);
	for (int k = 1; k < node->nkeys && value != NULL; k++)
	{
		key += strlen(key) + 1;
		value = cJSON_IsObject(value)
			? cJSON_GetObjectItemCaseSensitive(value, key) : NULL;
	}
	return value;
}

static bool
emit_value(Renderer *r, const TemplateNode *node, const cJSON *value)
{
	char	   *json;
	bool		ok;

	if (cJSON_IsString(value))
	{
		const char *s = value->valuestring ? value->valuestring : "";

		return emit(r, s, strlen(s));
	}
	json = cJSON_PrintUnformatted(value);
	if (json == NULL)
	{
		r->kind = LLM_TEMPLATE_UNPRINTABLE;
		snprintf(r->err, r->errlen, "template variable \"%s\" cannot be written as JSON",
				 node->path);
		llm_trim_partial_utf8(r->err, r->errlen);
		return false;
	}
	ok = emit(r, json, strlen(json));
	cJSON_free(json);
	return ok;
}

static bool
is_falsy(const cJSON *value)
{
	return cJSON_IsFalse(value) || cJSON_IsNull(value) ||
		(cJSON_IsArray(value) && value->child == NULL);
}

static bool render_block(Renderer *r, size_t from, size_t to);

/* Renders the block of nodes from..to once with value as the context. */
static bool
render_with(Renderer *r, const cJSON *value, size_t from, size_t to)
{
	bool		ok;

	/* the parser's depth limit keeps this in bounds */
	if (r->nscopes == (int) (sizeof(r->scopes) / sizeof(r->scopes[0])))
	{
		r->kind = LLM_TEMPLATE_SYNTAX;
		snprintf(r->err, r->errlen, "sections nested deeper than %d", LLM_TEMPLATE_MAX_DEPTH);
		return false;
	}
	r->scopes[r->nscopes++] = value;
	ok = render_block(r, from, to);
	r->nscopes--;
	return ok;
}

static bool
render_section(Renderer *r, const TemplateNode *node, const cJSON *value,
			   size_t from)
{
	if (is_falsy(value))
		return true;
	if (cJSON_IsTrue(value))
		return render_block(r, from, node->end);
	if (cJSON_IsArray(value))
	{
		const cJSON *element;

		cJSON_ArrayForEach(element, value)
		{
			if (!take_step(r) || !render_with(r, element, from, node->end))
				return false;
		}
		return true;
	}
	return render_with(r, value, from, node->end);
}

static bool
render_block(Renderer *r, size_t from, size_t to)
{
	size_t		i = from;

	while (i < to)
	{
		const TemplateNode *node = &r->tmpl->nodes[i];
		const cJSON *value;

		if (!take_step(r))
			return false;
		if (node->kind == NODE_TEXT)
		{
			if (!emit(r, r->tmpl->text + node->offset, node->len))
				return false;
			i++;
			continue;
		}
		value = lookup(r, node);
		if (value == NULL)
		{
			r->kind = LLM_TEMPLATE_MISSING;
			snprintf(r->err, r->errlen, "missing template variable \"%s\"", node->path);
			llm_trim_partial_utf8(r->err, r->errlen);
			return false;
		}
		switch (node->kind)
		{
			case NODE_VARIABLE:
				if (!emit_value(r, node, value))
					return false;
				i++;
				break;
			case NODE_SECTION:
				if (!render_section(r, node, value, i + 1))
					return false;
				i = node->end;
				break;
			case NODE_INVERTED:
				if (is_falsy(value) && !render_block(r, i + 1, node->end))
					return false;
				i = node->end;
				break;
			case NODE_TEXT:
				break;			/* handled above */
		}
	}
	return true;
}

char *
llm_template_render(const LlmTemplate *tmpl, const cJSON *vars,
					size_t max_output, char *err, size_t errlen)
{
	LlmTemplateError kind;

	return llm_template_render_kind(tmpl, vars, max_output, &kind, err, errlen);
}

char *
llm_template_render_kind(const LlmTemplate *tmpl, const cJSON *vars,
						 size_t max_output, LlmTemplateError *kind,
						 char *err, size_t errlen)
{
	Renderer	r;
	cJSON		empty;

	memset(&r, 0, sizeof(r));
	if (vars == NULL)
	{
		memset(&empty, 0, sizeof(empty));
		empty.type = cJSON_Object;
		vars = &empty;
	}
	r.tmpl = tmpl;
	r.scopes[r.nscopes++] = vars;
	r.max_output = max_output;
	r.steps_left = max_output > (SIZE_MAX - LLM_TEMPLATE_BASE_STEPS) / 2
		? SIZE_MAX : LLM_TEMPLATE_BASE_STEPS + 2 * max_output;
	r.err = err;
	r.errlen = errlen;
	r.capacity = 256;
	r.out = cJSON_malloc(r.capacity);

	if (!render_block(&r, 0, tmpl->nnodes))
	{
		cJSON_free(r.out);
		*kind = r.kind;
		return NULL;
	}
	*kind = LLM_TEMPLATE_OK;
	r.out[r.len] = '\0';
	return r.out;
}
