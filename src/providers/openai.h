/*
 * openai.h — the OpenAI chat completions wire format, which every
 * OpenAI-compatible server (OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp)
 * speaks.  Pure code, like request.h.
 */
#ifndef LLMEXT_OPENAI_H
#define LLMEXT_OPENAI_H

#include "core/request.h"

/*
 * Body of POST {base_url}/chat/completions.  params are already merged and
 * free of reserved keys.  Returns a cJSON_malloc'd string.
 */
extern char *openai_chat_request(const char *remote_model, const cJSON *messages,
								 const cJSON *params);

/*
 * Parses a 2xx body into result.  Returns false, with a sentence in err, for
 * a body that is not JSON or lacks choices[0].message.
 */
extern bool openai_parse_chat_response(const char *body, size_t len,
									   LlmChatResult *result,
									   char *err, size_t errlen);

/*
 * Extracts the message of an error body ({"error": {"message", "type",
 * "param", "code"}}; Ollama omits param and code).  Returns a cJSON_malloc'd
 * sentence, or NULL when the body has no recognisable error.
 */
extern char *openai_error_message(const char *body, size_t len);

#endif							/* LLMEXT_OPENAI_H */
