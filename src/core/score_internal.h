/*
 * score_internal.h — the scorers of score.c, score_json.c and similarity.c,
 * for score.c's dispatch only.
 */
#ifndef LLMEXT_SCORE_INTERNAL_H
#define LLMEXT_SCORE_INTERNAL_H

#include "core/score.h"

/* Each scores a non-NULL output; false only when out of memory (err set). */
extern bool llm_score_json_valid(const LlmScorer *s, const char *output, LlmScore *out,
								 char *err, size_t errlen);
extern bool llm_score_json_schema(const LlmScorer *s, const char *output, LlmScore *out,
								  char *err, size_t errlen);
/* Whether a json_match field is a plain key or a well-formed JSON Pointer. */
extern bool llm_json_pointer_valid(const char *pointer);
extern bool llm_score_json_match(const LlmScorer *s, const char *output,
								 const cJSON *expected, LlmScore *out,
								 char *err, size_t errlen);
extern bool llm_score_similarity(const LlmScorer *s, const char *output,
								 const cJSON *expected, LlmScore *out,
								 char *err, size_t errlen);

#endif							/* LLMEXT_SCORE_INTERNAL_H */
