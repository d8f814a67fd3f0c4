/*
 * unit.h — a minimal test harness for the pure core: CHECK records a
 * failure and carries on; main prints "N passed, M failed".
 */
#ifndef LLMEXT_UNIT_H
#define LLMEXT_UNIT_H

#include <stdio.h>
#include <string.h>

extern int	unit_passed;
extern int	unit_failed;

#define CHECK(cond) \
	do { \
		if (cond) \
			unit_passed++; \
		else \
		{ \
			unit_failed++; \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
		} \
	} while (0)

#define CHECK_STR(actual, expected) \
	do { \
		const char *a_ = (actual); \
		const char *e_ = (expected); \
		if (a_ != NULL && e_ != NULL && strcmp(a_, e_) == 0) \
			unit_passed++; \
		else \
		{ \
			unit_failed++; \
			fprintf(stderr, "%s:%d: expected \"%s\", got \"%s\"\n", __FILE__, __LINE__, \
					e_ ? e_ : "(null)", a_ ? a_ : "(null)"); \
		} \
	} while (0)

extern void test_request(void);
extern void test_openai(void);
extern void test_anthropic(void);
extern void test_finetune(void);
extern void test_batch(void);
extern void test_cachekey(void);
extern void test_retry(void);
extern void test_bucket(void);
extern void test_template(void);
extern void test_jsonschema(void);
extern void test_secrets(void);
extern void test_score(void);
extern void test_stats(void);
extern void test_embed(void);

#endif
