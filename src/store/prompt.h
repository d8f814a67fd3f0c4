/*
 * prompt.h — stored prompts: choosing a version, rendering its request.
 */
#ifndef LLMEXT_PROMPT_H
#define LLMEXT_PROMPT_H

#include "postgres.h"

#include "core/request.h"

typedef struct LlmRenderedPrompt
{
	char	   *name;
	int			version;
	char	   *label;			/* the label that chose the version, or NULL */
	char	   *model;			/* call's > variant's > version's; NULL: llmext.default_model */
	cJSON	   *messages;
	cJSON	   *params;			/* the version's parameters, response_format included */
	cJSON	   *response_schema;	/* or NULL */
	cJSON	   *vars;			/* the variables it was rendered with (a copy), or NULL */
} LlmRenderedPrompt;

/*
 * Chooses the version (explicit version; else the label, by default
 * production, sticky by ab_key or random by weight; else the latest) and
 * renders its messages with vars.  Raises an ERROR for an unknown prompt,
 * version or label, and for a variable the template needs but vars lacks.
 */
extern LlmRenderedPrompt *llm_prompt_render(const char *name, const cJSON *vars,
											const char *call_model, const int *version,
											const char *label, const char *ab_key);

/* The request llm_render shows. */
extern cJSON *llm_rendered_prompt_json(const LlmRenderedPrompt *prompt);

#endif							/* LLMEXT_PROMPT_H */
