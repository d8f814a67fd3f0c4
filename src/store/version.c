/*
 * version.c — the version of llmext installed in this database.
 *
 * A server may run a newer library than the objects of a database (the
 * library is installed, the server restarted, and ALTER EXTENSION llmext
 * UPDATE not yet run).  The worker's queries are written for the library's
 * version of the tables and functions, so it leaves the queue of such a
 * database alone until the update, instead of failing on every claim.
 */
#include "llmext.h"

#include "store/version.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

/* The installed version, palloc'd, or NULL when llmext is not installed. */
static char *
installed_version(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *version = NULL;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("llmext"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		datum = heap_getattr(tuple, Anum_pg_extension_extversion,
										 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = text_to_cstring(DatumGetTextPP(datum));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

bool
llm_schema_is_current(void)
{
	static bool logged = false;
	char	   *version;

	if (creating_extension)
		return false;
	version = installed_version();
	if (version == NULL)
		return false;
	if (strcmp(version, EXTVERSION) == 0)
	{
		logged = false;
		return true;
	}
	if (!logged)
		ereport(LOG,
				(errmsg("llmext in database \"%s\" is version %s, the library is version %s: queued requests wait",
						get_database_name(MyDatabaseId), version, EXTVERSION),
				 errhint("Run ALTER EXTENSION llmext UPDATE in that database.")));
	logged = true;
	return false;
}
