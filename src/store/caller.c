/*
 * caller.c — the caller's identity (see caller.h): the login role, and the
 * worker acting for a request's roles.  The SQL side (llm_gate, llm._login)
 * is sql/sql_gate.c.
 */
#include "llmext.h"

#include "store/caller.h"

#include "catalog/pg_type_d.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

/* Set only while the worker acts for a request: its login role. */
static Oid	acting_login = InvalidOid;

Oid
llm_login_role(void)
{
	return OidIsValid(acting_login) ? acting_login : GetSessionUserId();
}

void
llm_act_for(LlmActing *saved, Oid user, Oid login, int extra_sec_context)
{
	GetUserIdAndSecContext(&saved->saved_userid, &saved->saved_sec_context);
	saved->saved_login = acting_login;
	SetUserIdAndSecContext(user, saved->saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   extra_sec_context);
	acting_login = OidIsValid(login) ? login : user;
}

void
llm_act_done(const LlmActing *saved)
{
	SetUserIdAndSecContext(saved->saved_userid, saved->saved_sec_context);
	acting_login = saved->saved_login;
}

void
llm_act_reset(void)
{
	acting_login = InvalidOid;
}
