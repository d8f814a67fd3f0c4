/*
 * subxact.h — the error of a failed internal subtransaction.
 */
#ifndef LLMEXT_SUBXACT_H
#define LLMEXT_SUBXACT_H

#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"

/*
 * In the PG_CATCH of a BeginInternalSubTransaction: copies the error into
 * context, clears it, and rolls the subtransaction back (first: an outer
 * handler must find its own).  context is current on return.
 */
static inline ErrorData *
llm_subxact_error(MemoryContext context)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(context);
	edata = CopyErrorData();
	FlushErrorState();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(context);
	return edata;
}

#endif							/* LLMEXT_SUBXACT_H */
