/*
 * owner_query.c — queries with the extension owner's rights (see
 * owner_query.h).
 */
#include "store/owner_query.h"
#include "store/spi_check.h"

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/* The owner of llm.provider_keys: the role that created the extension. */
Oid
llm_extension_owner(void)
{
	Oid			namespace = get_namespace_oid("llm", true);
	Oid			relid = OidIsValid(namespace) ? get_relname_relid("provider_keys", namespace) : InvalidOid;
	HeapTuple	tuple;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"llmext\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION llmext.")));
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

uint64
llm_owner_query(LlmOwnerQuery *query, Datum *args, const char *nulls, bool read_only,
				LlmRowReader reader, void *arg)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			owner = llm_extension_owner();
	Oid			saved_userid;
	int			saved_sec_context;
	uint64		processed = 0;

	GetUserIdAndSecContext(&saved_userid, &saved_sec_context);
	SetUserIdAndSecContext(owner, saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		int			rc;

		llm_spi_connect();
		if (query->plan == NULL)
		{
			SPIPlanPtr	plan = SPI_prepare(query->sql, query->nargs, query->argtypes);

			if (plan == NULL)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			SPI_keepplan(plan);
			query->plan = plan;
		}
		rc = SPI_execute_plan(query->plan, args, nulls, read_only, reader ? 1 : 0);
		/* (without a reader the rows are only counted: a LIMIT belongs in the query) */
		if (rc < 0)
			elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
		processed = SPI_processed;
		if (reader != NULL && SPI_processed > 0)
		{
			MemoryContext spi = MemoryContextSwitchTo(caller);

			reader(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, arg);
			MemoryContextSwitchTo(spi);
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_userid, saved_sec_context);
	}
	PG_END_TRY();
	return processed;
}
