/*
 * llmext.h — settings and error codes shared by the server-side files.
 */
#ifndef LLMEXT_H
#define LLMEXT_H

#include "postgres.h"

/* The SQL needs PostgreSQL 15 (security_invoker views), and the C its shmem_request_hook. */
#if PG_VERSION_NUM < 150000
#error "llmext needs PostgreSQL 15 or later"
#endif

/* GUCs (see llmext.c) */
extern char *llm_default_model;
extern int	llm_request_timeout_ms;
extern int	llm_connect_timeout_ms;
extern int	llm_max_response_bytes;
extern int	llm_callback_timeout_ms;
extern int	llm_call_io_days;
extern char *llm_key_env_allowed;
extern char *llm_allowed_hosts;

/*
 * Ceilings on what one backend holds in memory, settable by superusers only
 * (docs/security.md, "Bounded memory").
 */
extern int	llm_max_response_bytes_limit;
extern int	llm_max_template_bytes;
extern int	llm_max_template_nodes;
extern int	llm_max_rendered_bytes;
extern int	llm_max_request_bytes;
extern int	llm_max_batch_concurrency;

/* The response size in force: llmext.max_response_bytes within its ceiling. */
static inline int
llm_effective_max_response_bytes(void)
{
	return Min(llm_max_response_bytes, llm_max_response_bytes_limit);
}

/*
 * SQLSTATEs of provider failures, class LL (implementation-defined).  The
 * last three characters follow the HTTP status where there is one, so
 * EXCEPTION WHEN SQLSTATE 'LL429' reads naturally in PL/pgSQL.
 */
#define ERRCODE_LLM_PROVIDER_ERROR		MAKE_SQLSTATE('L','L','0','0','0')
#define ERRCODE_LLM_CONNECTION_FAILURE	MAKE_SQLSTATE('L','L','0','0','1')
#define ERRCODE_LLM_INVALID_RESPONSE	MAKE_SQLSTATE('L','L','0','0','2')
#define ERRCODE_LLM_RESPONSE_TOO_LARGE	MAKE_SQLSTATE('L','L','0','0','3')
#define ERRCODE_LLM_INVALID_OUTPUT		MAKE_SQLSTATE('L','L','0','0','4')
#define ERRCODE_LLM_BAD_REQUEST			MAKE_SQLSTATE('L','L','4','0','0')
#define ERRCODE_LLM_AUTHENTICATION		MAKE_SQLSTATE('L','L','4','0','1')
#define ERRCODE_LLM_BUDGET_EXCEEDED		MAKE_SQLSTATE('L','L','4','0','2')
#define ERRCODE_LLM_NOT_FOUND			MAKE_SQLSTATE('L','L','4','0','4')
#define ERRCODE_LLM_TIMEOUT				MAKE_SQLSTATE('L','L','4','0','8')
#define ERRCODE_LLM_RATE_LIMITED		MAKE_SQLSTATE('L','L','4','2','9')
#define ERRCODE_LLM_SERVER_ERROR		MAKE_SQLSTATE('L','L','5','0','0')

#endif							/* LLMEXT_H */
