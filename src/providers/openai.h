/*
 * openai.h — the OpenAI chat completions wire format, which every
 * OpenAI-compatible server (OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp)
 * speaks.  Pure code, like request.h.
 */
#ifndef LLMEXT_OPENAI_H
#define LLMEXT_OPENAI_H

#include "core/request.h"
#include "providers/provider.h"

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

/* Embeddings (openai_embed.c): see LlmProviderRoutine. */
extern char *openai_embed_request(const char *remote_model, const cJSON *inputs,
								  const cJSON *params);
extern bool openai_parse_embed_response(const char *body, size_t len, int ninputs,
										LlmEmbedResult *result, char *err, size_t errlen);

/* Fine-tuning (openai_finetune.c): see LlmProviderRoutine. */
extern char *openai_finetune_request(const LlmFinetuneSpec *spec);
extern char *openai_finetune_list_query(const char *job_tag, const char *after);
extern char *openai_parse_file(const char *body, size_t len, char *err, size_t errlen);
extern bool openai_parse_finetune_job(const char *body, size_t len, LlmFinetuneJob *job,
									  char *err, size_t errlen);
extern bool openai_parse_finetune_list(const char *body, size_t len, LlmFinetuneListKind kind,
									   LlmFinetuneList *list, char *err, size_t errlen);

/*
 * Percent-encodes s (all but RFC 3986's unreserved characters) at out + *len
 * for a query string, and moves *len on; out must have room for
 * 3 * strlen(s) + 1 more bytes.
 */
extern void openai_append_encoded(char *out, size_t *len, const char *s);

/* Batch mode (openai_batch.c): see LlmProviderRoutine. */
extern char *openai_batch_line(const char *custom_id, const char *url, const char *body);
extern char *openai_batch_request(const char *input_file_id, const char *endpoint,
								  const char *batch_tag, const char *database_tag);
extern char *openai_batch_list_query(const char *after);
extern bool openai_parse_batch(const char *body, size_t len, LlmProviderBatch *batch,
							   char *err, size_t errlen);
extern bool openai_parse_batch_list(const char *body, size_t len, LlmProviderBatchList *list,
									char *err, size_t errlen);
extern bool openai_parse_batch_line(const char *line, size_t len, LlmBatchLine *out,
									char *err, size_t errlen);

/*
 * Members of a provider's JSON object, shared by the fine-tuning and batch
 * parsers (openai_finetune.c): a string (a copy, or NULL when absent or not
 * a string), and a whole number >= 0 (-1 when absent, null or not a count;
 * at most 2^53).
 */
extern char *openai_string_member(const cJSON *object, const char *key);
extern int64_t openai_count_member(const cJSON *object, const char *key);

#endif							/* LLMEXT_OPENAI_H */
