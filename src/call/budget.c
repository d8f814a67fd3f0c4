/*
 * budget.c — the budget check before each provider request (see budget.h).
 */
#include "llmext.h"

#include "call/budget.h"

#include "call/failure.h"
#include "store/caller.h"
#include "store/catalog.h"
#include "store/ledger.h"
#include "store/owner_query.h"

#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"

typedef struct SpentBudget
{
	char	   *role;			/* NULL: everyone's budget */
	char	   *period;
	char	   *limit_usd;
	char	   *spent_usd;
	char	   *period_end;
} SpentBudget;

static LlmOwnerQuery spent_query = {
	.sql =
	"SELECT role, period, limit_usd,"
	"       pg_catalog.trim_scale(pg_catalog.round(spent_usd, 10)),"
	"       pg_catalog.to_char(pg_catalog.timezone('UTC', period_end),"
	"                          'YYYY-MM-DD HH24:MI \"UTC\"')"
	"  FROM llm._budget_spend($1::pg_catalog.name,"
	"                         $2::pg_catalog.name,"
	"                         $3::pg_catalog.jsonb,"
	"                         $4::pg_catalog.numeric)"
	" WHERE spent_usd OPERATOR(pg_catalog.>=) limit_usd"
	" LIMIT 1",
	.nargs = 4,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID, TEXTOID},
};

static void
read_spent(HeapTuple tuple, TupleDesc desc, void *arg)
{
	SpentBudget *spent = palloc(sizeof(SpentBudget));

	spent->role = SPI_getvalue(tuple, desc, 1);
	spent->period = SPI_getvalue(tuple, desc, 2);
	spent->limit_usd = SPI_getvalue(tuple, desc, 3);
	spent->spent_usd = SPI_getvalue(tuple, desc, 4);
	spent->period_end = SPI_getvalue(tuple, desc, 5);
	*(SpentBudget **) arg = spent;
}

/*
 * Whether any budget exists, known per backend: most installations have
 * none, and then no call should pay for a query.  A change to llm.budgets
 * (llm._catalog_changed) makes every backend ask again.
 */
static int	budgets_exist = -1;	/* -1: unknown */
static Oid	budgets_relid = InvalidOid;

static void
forget_budgets(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == budgets_relid)
		budgets_exist = -1;
}

static LlmOwnerQuery any_budget_query = {
	.sql = "SELECT 1 FROM llm.budgets LIMIT 1",
	.nargs = 0,
};

static bool
any_budget(void)
{
	static bool callback_registered = false;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_budgets, (Datum) 0);
		callback_registered = true;
	}
	if (budgets_exist < 0)
	{
		budgets_relid = get_relname_relid("budgets", get_namespace_oid("llm", false));
		budgets_exist = llm_owner_query(&any_budget_query, NULL, NULL, true, NULL, NULL) > 0;
	}
	return budgets_exist > 0;
}

/*
 * The first spent budget that applies to this call, if any: a budget of a
 * role that the acting role or the login role counts for (so SET ROLE
 * escapes none), or everyone's.
 */
static SpentBudget *
find_spent_budget(void)
{
	SpentBudget *spent = NULL;
	Oid			login = llm_login_role();
	LlmPendingSpend *own;
	int			npairs;
	double		all;
	StringInfoData pending;
	Datum		args[4];

	npairs = llm_pending_spend(GetUserId(), login, &own, &all);
	/* [{"role": ..., "login": ..., "cost": ...}] for llm._budget_spend */
	initStringInfo(&pending);
	appendStringInfoChar(&pending, '[');
	for (int i = 0; i < npairs; i++)
	{
		char	   *role = GetUserNameFromId(own[i].roleid, true);
		char	   *login_name = GetUserNameFromId(own[i].loginid, true);

		if (role == NULL || login_name == NULL)
			continue;
		if (pending.len > 1)
			appendStringInfoChar(&pending, ',');
		appendStringInfoString(&pending, "{\"role\":");
		escape_json(&pending, role);
		appendStringInfoString(&pending, ",\"login\":");
		escape_json(&pending, login_name);
		appendStringInfo(&pending, ",\"cost\":%.10f}", own[i].cost_usd);
	}
	appendStringInfoChar(&pending, ']');
	args[0] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	args[1] = CStringGetTextDatum(GetUserNameFromId(login, false));
	args[2] = CStringGetTextDatum(pending.data);
	args[3] = CStringGetTextDatum(psprintf("%.10f", all));
	llm_owner_query(&spent_query, args, NULL, true, read_spent, &spent);
	return spent;
}

LlmFailure *
llm_budget_check(void)
{
	SpentBudget *spent;
	LlmFailure *failure;

	if (!any_budget())
		return NULL;
	spent = find_spent_budget();
	if (spent == NULL)
		return NULL;
	failure = palloc(sizeof(LlmFailure));
	failure->sqlstate = ERRCODE_LLM_BUDGET_EXCEEDED;
	failure->message = spent->role
		? psprintf("the %s budget of role \"%s\" is spent", spent->period, spent->role)
		: psprintf("the shared %s budget is spent", spent->period);
	failure->detail = psprintf("The limit is %s USD and %s USD has been spent this %s.",
							   spent->limit_usd, spent->spent_usd, spent->period);
	failure->hint = psprintf("The budget renews at %s; an llm_admin can raise it with llm_budget_set.",
							 spent->period_end);
	return failure;
}
