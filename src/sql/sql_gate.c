/*
 * sql_gate.c — the gate through which user-facing SQL functions reach their
 * privileged bodies with the caller's identity, and llm._login().
 *
 * A SECURITY DEFINER function cannot tell who called it: inside, current_user
 * is its owner.  Asking a setting instead (the role setting, or a setting the
 * worker fills in) is what let a callback reset its identity to the worker's
 * superuser.  So each user-facing function that must know its caller is
 * declared in SQL as a C function, llm_gate, that runs with the caller's own
 * rights, takes the two roles from the server's state (store/caller.c), and
 * calls the body: llm.<name without "llm_" prefix> in schema llm, with the
 * acting role and the login role as its first two arguments.  No role may
 * execute a body directly (fmgr does not check EXECUTE, the executor does),
 * so the roles a body receives cannot be forged.
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

/* The roles as values of type name, for the bodies. */
static Datum
role_name_datum(Oid role)
{
	char	   *name = GetUserNameFromId(role, false);

	return DirectFunctionCall1(namein, CStringGetDatum(name));
}

PG_FUNCTION_INFO_V1(llm_login);

/* llm._login(): the login role, for row level security policies. */
Datum
llm_login(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(role_name_datum(llm_login_role()));
}

typedef struct GateBody
{
	FmgrInfo	body;
	int			nargs;			/* the gate's own arguments */
} GateBody;

/* Finds the body of the gate function being called; kept in its FmgrInfo. */
static GateBody *
gate_body(FmgrInfo *flinfo)
{
	Oid			gate = flinfo->fn_oid;
	char	   *gate_name = get_func_name(gate);
	Oid		   *gate_types;
	Oid			body_types[FUNC_MAX_ARGS];
	int			nargs;
	Oid			body;
	GateBody   *result;

	(void) get_func_signature(gate, &gate_types, &nargs);
	if (gate_name == NULL || strncmp(gate_name, "llm_", 4) != 0 || nargs + 2 > FUNC_MAX_ARGS)
		elog(ERROR, "llm_gate cannot serve function %u", gate);
	body_types[0] = NAMEOID;
	body_types[1] = NAMEOID;
	memcpy(body_types + 2, gate_types, nargs * sizeof(Oid));
	body = LookupFuncName(list_make2(makeString("llm"), makeString(psprintf("_%s", gate_name + 4))),
						  nargs + 2, body_types, false);
	result = MemoryContextAllocZero(flinfo->fn_mcxt, sizeof(GateBody));
	fmgr_info_cxt(body, &result->body, flinfo->fn_mcxt);
	result->nargs = nargs;
	return result;
}

PG_FUNCTION_INFO_V1(llm_gate);

Datum
llm_gate(PG_FUNCTION_ARGS)
{
	GateBody   *gate = fcinfo->flinfo->fn_extra;
	LOCAL_FCINFO(body_fcinfo, FUNC_MAX_ARGS);
	Datum		result;

	if (gate == NULL)
		fcinfo->flinfo->fn_extra = gate = gate_body(fcinfo->flinfo);
	/* a set-returning body fills the gate's own result set */
	InitFunctionCallInfoData(*body_fcinfo, &gate->body, gate->nargs + 2,
							 PG_GET_COLLATION(), fcinfo->context, fcinfo->resultinfo);
	body_fcinfo->args[0].value = role_name_datum(GetUserId());
	body_fcinfo->args[0].isnull = false;
	body_fcinfo->args[1].value = role_name_datum(llm_login_role());
	body_fcinfo->args[1].isnull = false;
	for (int i = 0; i < gate->nargs; i++)
		body_fcinfo->args[i + 2] = fcinfo->args[i];
	result = FunctionCallInvoke(body_fcinfo);
	fcinfo->isnull = body_fcinfo->isnull;
	return result;
}
