/*
 * provider.h — the interface every provider kind implements: a table of
 * routines, one per kind (llm.providers.kind), as pgvector has one per index
 * access method.  Code above src/providers/ asks llm_provider_routine() for
 * the kind of a model's provider and calls through the table; it never tests
 * a kind nor calls a kind's functions by name.
 *
 * Pure code (see core/request.h): strings and trees returned are
 * cJSON_malloc'd (palloc'd in the server).
 */
#ifndef LLMEXT_PROVIDER_H
#define LLMEXT_PROVIDER_H

#include "core/request.h"

typedef struct LlmProviderRoutine
{
	const char *kind;			/* as in llm.providers.kind */
	/* What base_url must point at, for hints: "an OpenAI-compatible API ..." */
	const char *api_description;
	/* The chat path below base_url, unless the provider's chat_path option says otherwise. */
	const char *chat_path;

	/*
	 * The header line that carries key: in header_name (a provider's
	 * auth_header option), or NULL for the kind's own.
	 */
	char	   *(*auth_header) (const char *header_name, const char *key);

	/* The body of a chat request; params are merged and free of reserved keys. */
	char	   *(*chat_request) (const char *remote_model, const cJSON *messages,
								 const cJSON *params);

	/* Parses a 2xx chat body into result; false with a sentence in err. */
	bool		(*parse_chat_response) (const char *body, size_t len, LlmChatResult *result,
										char *err, size_t errlen);

	/* The message of an error body, or NULL when it has none recognisable. */
	char	   *(*error_message) (const char *body, size_t len);

	/* The request parameter that asks for output as JSON following schema. */
	void		(*add_json_output) (cJSON *params, const char *name, const cJSON *schema);
	/* Whether params already ask for a format of output (then it is kept). */
	bool		(*has_output_format) (const cJSON *params);

	/* The most output tokens params ask for, or -1 when they set no limit. */
	double		(*max_output_tokens) (const cJSON *params);
} LlmProviderRoutine;

/* The kinds llmext implements, one file each under providers/. */
extern const LlmProviderRoutine openai_routine;	/* openai.c */

/* The routines of kind, or NULL when llmext does not implement it. */
extern const LlmProviderRoutine *llm_provider_routine(const char *kind);

/* The kind a prompt's output format is written for when no model is known yet. */
#define LLM_DEFAULT_PROVIDER_KIND "openai"

#endif							/* LLMEXT_PROVIDER_H */
