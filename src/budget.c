/*
 * budget.c — the budget check before each provider request (see budget.h).
 */
#include "llmext.h"

#include "budget.h"

#include "catalog.h"
#include "failure.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "owner_query.h"
#include "ledger.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "catalog/namespace.h"

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
	"                         $2::pg_catalog.numeric,"
	"                         $3::pg_catalog.numeric)"
	" WHERE spent_usd OPERATOR(pg_catalog.>=) limit_usd"
	" LIMIT 1",
	.nargs = 3,
	.argtypes = {TEXTOID, TEXTOID, TEXTOID},
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

/* The first budget of the current role (or everyone's) that is spent, if any. */
static SpentBudget *
find_spent_budget(void)
{
	SpentBudget *spent = NULL;
	double		own;
	double		all;
	Datum		args[3];

	llm_pending_spend(GetUserId(), &own, &all);
	args[0] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	args[1] = CStringGetTextDatum(psprintf("%.10f", own));
	args[2] = CStringGetTextDatum(psprintf("%.10f", all));
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
