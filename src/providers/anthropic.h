/*
 * anthropic.h — the Anthropic Messages API wire format.  Pure code, like
 * request.h.
 */
#ifndef LLMEXT_ANTHROPIC_H
#define LLMEXT_ANTHROPIC_H

#include "core/request.h"

/* The API version every request names (the anthropic-version header). */
#define ANTHROPIC_VERSION "2023-06-01"

/* max_tokens when neither the call's options nor the model's params set one. */
#define ANTHROPIC_DEFAULT_MAX_TOKENS 1024

/* The tool a response schema is forced through; its input is the answer. */
#define ANTHROPIC_RESPOND_TOOL "respond"

/* Body of POST {base_url}/messages; params merged and free of reserved keys. */
extern char *anthropic_chat_request(const char *remote_model, const cJSON *messages,
									const cJSON *params);

/*
 * Parses a 2xx body into result; false, with a sentence in err, for a body
 * that is not JSON or has no content array.
 */
extern bool anthropic_parse_chat_response(const char *body, size_t len,
										  LlmChatResult *result,
										  char *err, size_t errlen);

/* The message of {"type": "error", "error": {"type", "message"}}, or NULL. */
extern char *anthropic_error_message(const char *body, size_t len);

extern void anthropic_add_json_output(cJSON *params, const char *name, const cJSON *schema);
extern double anthropic_max_output_tokens(const cJSON *params);

#endif							/* LLMEXT_ANTHROPIC_H */
