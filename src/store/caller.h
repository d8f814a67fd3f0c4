/*
 * caller.h — who is calling llmext: the acting role and the login role.
 *
 * Every call, request, prompt version and ledger row records two roles:
 * the acting role (current_user where the user-facing function was called,
 * as for any privilege check) and the login role (the session's user).
 * While the background worker works for a queued request, both are the
 * request's.  Neither is ever read from a setting that user code can change.
 */
#ifndef LLMEXT_CALLER_H
#define LLMEXT_CALLER_H

#include "postgres.h"

/* The login role of the current call: the session user, or the request's in the worker. */
extern Oid	llm_login_role(void);

/* What llm_act_for replaced, for llm_act_done. */
typedef struct LlmActing
{
	Oid			saved_userid;
	int			saved_sec_context;
	Oid			saved_login;
} LlmActing;

/*
 * Makes the worker act for a request's roles (user as current_user, login as
 * the login role) with extra security-context flags, until llm_act_done.
 */
extern void llm_act_for(LlmActing *saved, Oid user, Oid login, int extra_sec_context);
extern void llm_act_done(const LlmActing *saved);
/* After an error: the worker acts for nobody (the abort restored the user). */
extern void llm_act_reset(void);

#endif							/* LLMEXT_CALLER_H */
