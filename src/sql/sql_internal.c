/*
 * sql_internal.c — the C functions behind llmext's internal SQL objects: the
 * trigger that keeps backends' catalog caches fresh, the check of a new
 * provider's target, and the wake-up of the worker at commit.
 */
#include "llmext.h"

#include "queue/queue.h"
#include "store/catalog.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"

PG_FUNCTION_INFO_V1(llm_check_provider_target_sql);

/* llm._check_provider_target(name, base_url, key_env), for llm_provider_create */
Datum
llm_check_provider_target_sql(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		elog(ERROR, "llm._check_provider_target: name and base_url must not be NULL");
	llm_check_provider_target(text_to_cstring(PG_GETARG_TEXT_PP(0)),
							  text_to_cstring(PG_GETARG_TEXT_PP(1)),
							  PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(llm_catalog_changed);

/* Statement-level trigger: tells every backend to forget cached copies of the table. */
Datum
llm_catalog_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "llm._catalog_changed must be called as a trigger");
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);	/* an AFTER trigger's result is ignored */
}

PG_FUNCTION_INFO_V1(llm_wake_at_commit);

/* llm._wake_at_commit(): called by llm._enqueue */
Datum
llm_wake_at_commit(PG_FUNCTION_ARGS)
{
	llm_queue_wake_at_commit();
	PG_RETURN_VOID();
}
