/*
 * score.h — the evaluation scorers: one model output scored against the
 * expected answer of a case.
 *
 * Pure code, like request.h: no PostgreSQL headers; every allocation goes
 * through cJSON_malloc/cJSON_free.  A scorer is a JSON object
 * {"type": ..., options...}; unknown options are ignored (the evaluation
 * stores its own keys beside them), options of the wrong type are refused.
 *
 * Two kinds of trouble are kept apart:
 *  - the scorer is wrong (unknown type, an option of the wrong type, an
 *    unsupported schema): llm_score returns false with a sentence in err,
 *    and SQL raises 22023;
 *  - the case cannot be scored (no output, no expected answer, an expected
 *    answer of the wrong shape): the score and passed are unknown
 *    (has_score false) and reason says why.
 *
 * Every score is in [0, 1]; passed is score >= "threshold" (a number in
 * [0, 1], default 1, for similarity and embedding_similarity 0.8).  Reason is empty when the output
 * passed, otherwise it says why not (the first difference, missing text,
 * field or schema violation), cut at a character boundary.
 *
 * Text comparisons are by bytes of UTF-8.  Case folding (normalized,
 * contains) and punctuation removal (normalized) apply to ASCII only: other
 * characters are compared as they are, with no Unicode case folding or
 * normalisation (NFC "é" and NFD "é" differ).
 */
#ifndef LLMEXT_SCORE_H
#define LLMEXT_SCORE_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

/* The longest reason, with its NUL. */
#define LLM_SCORE_REASON_LEN 256

/* similarity compares at most this many code points of each text. */
#define LLM_SIMILARITY_MAX_CHARS 4000

/* For error hints: the types llm_eval_score scores. */
#define LLM_SCORER_TYPE_LIST \
	"exact, normalized, contains, regex, json_valid, json_schema, json_match, numeric, similarity, " \
	"embedding_similarity"

typedef enum LlmScorerType
{
	LLM_SCORER_EXACT,
	LLM_SCORER_NORMALIZED,
	LLM_SCORER_CONTAINS,
	LLM_SCORER_REGEX,			/* scored by the server (sql_eval.c), not here */
	LLM_SCORER_JSON_VALID,
	LLM_SCORER_JSON_SCHEMA,
	LLM_SCORER_JSON_MATCH,
	LLM_SCORER_NUMERIC,
	LLM_SCORER_SIMILARITY,
	LLM_SCORER_EMBEDDING_SIMILARITY,	/* embedded by the server (sql_eval.c) */
	LLM_SCORER_JUDGE,			/* run by llm_eval_run */
	LLM_SCORER_FUNCTION			/* run by llm_eval_run */
} LlmScorerType;

/* A checked scorer; its pointers point into the scorer JSON. */
typedef struct LlmScorer
{
	LlmScorerType type;
	const char *name;			/* the type's name */
	double		threshold;
	bool		case_sensitive; /* contains ("case_sensitive", default false) */
	bool		extract;		/* numeric: the first number of the text ("extract") */
	double		tolerance;		/* numeric: absolute ("tolerance", default 0) */
	double		relative;		/* numeric: relative to expected ("relative", default 0) */
	const char *json_type;		/* json_valid "type": NULL for any */
	const cJSON *schema;		/* json_schema "schema" */
	const cJSON *fields;		/* json_match "fields": NULL for all of expected's keys */
	const char *pattern;		/* regex "pattern": NULL for the expected text */
	bool		ignore_case;	/* regex "flags": "i" */
	bool		normalize;		/* similarity "normalize": compare normalized texts */
	const char *model;			/* embedding_similarity "model": the embedding model */
} LlmScorer;

typedef struct LlmScore
{
	bool		has_score;		/* false: score and passed are unknown (NULL) */
	double		score;
	bool		passed;
	char		reason[LLM_SCORE_REASON_LEN];	/* "" for none */
} LlmScore;

/*
 * Checks a scorer's JSON and fills out.  False with a sentence in err when
 * it is not an object, has no known "type", or an option has the wrong type
 * or value.
 */
extern bool llm_scorer_parse(const cJSON *scorer, LlmScorer *out, char *err, size_t errlen);

/*
 * Scores output (NULL: there was none) against expected (NULL: none).
 * vars are the case's variables, unused by the built-in scorers so far.
 * False with a sentence in err for a bad scorer, for the regex scorer (the
 * server's regular expressions score it), for embedding_similarity (the
 * server embeds the texts), for judge and function scorers
 * (the evaluation runs them), and when out of memory.
 */
extern bool llm_score(const cJSON *scorer, const char *output, const cJSON *expected,
					  const cJSON *vars, LlmScore *out, char *err, size_t errlen);
extern bool llm_score_parsed(const LlmScorer *scorer, const char *output,
							 const cJSON *expected, const cJSON *vars,
							 LlmScore *out, char *err, size_t errlen);

/*
 * Sets out's score, passed (score >= the scorer's threshold) and reason (a
 * printf format; NULL or "" for none).
 */
extern void llm_score_set(LlmScore *out, const LlmScorer *scorer, double score,
						  const char *reason_fmt,...)
			__attribute__((format(printf, 4, 5)));
/* Sets out to unknown (no score, no passed) with a reason. */
extern void llm_score_unknown(LlmScore *out, const char *reason);

/*
 * The expected answer as text: a JSON string's own text, anything else its
 * compact JSON text.  cJSON_malloc'd; NULL when out of memory.
 */
extern char *llm_score_expected_text(const cJSON *expected);

/*
 * Writes at most max bytes of text into buf (size > max + 3), cut at a UTF-8
 * character boundary, with "..." when cut.  Returns buf.
 */
extern char *llm_score_excerpt(char *buf, const char *text, size_t max);

/*
 * The normalized form of a text: ASCII letters lower-cased, ASCII
 * punctuation removed, runs of ASCII white space made one space, leading
 * and trailing space dropped.  Other bytes are kept.  cJSON_malloc'd.
 */
extern char *llm_score_normalize(const char *text);

/*
 * Parses a number: the whole text, less surrounding white space (extract
 * false), or the first number in it (extract true).  A number is
 * [+-]digits[.digits][(e|E)[+-]digits] or [+-].digits..., decimal only (no
 * hex, inf, nan, thousands separators); it must be finite.
 */
extern bool llm_score_parse_number(const char *text, bool extract, double *value);

/*
 * JSON equality by value: numbers numerically, strings by bytes, arrays
 * element by element in order, objects by the same keys (in any order)
 * with equal values.
 */
extern bool llm_json_equal(const cJSON *a, const cJSON *b);

/*
 * 1 - d / max(len a, len b), d the Levenshtein distance in code points
 * (an invalid UTF-8 byte counts as one), each text cut to
 * LLM_SIMILARITY_MAX_CHARS code points first; 1 for two empty texts.
 * Negative when out of memory.
 */
extern double llm_similarity(const char *a, const char *b);

/*
 * The cosine of the angle between two vectors of n numbers, in [-1, 1]
 * (accumulated in double); 0 when either is all zeros or holds a number
 * that is not finite.
 */
extern double llm_cosine_similarity(const float *a, const float *b, int n);

/*
 * The embedding_similarity scorer once the server has the two vectors (the
 * output's and the expected text's, n numbers each): the cosine, clamped
 * to [0, 1], against the threshold.
 */
extern void llm_score_embedding(const LlmScorer *s, const float *output_vector,
								const float *expected_vector, int n, LlmScore *out);

#endif							/* LLMEXT_SCORE_H */
