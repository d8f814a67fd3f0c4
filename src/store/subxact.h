/*
 * subxact.h — the error of a failed internal subtransaction.
 */
#ifndef LLMEXT_SUBXACT_H
#define LLMEXT_SUBXACT_H

#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

/*
 * In the PG_CATCH of a BeginInternalSubTransaction: copies the error into
 * context, clears it, and rolls the subtransaction back (first: an outer
 * handler must find its own).  context and owner (the resource owner that
 * was current at BeginInternalSubTransaction) are current on return: the
 * rollback leaves the parent transaction's owner current, which need not be
 * the caller's (a portal's, say), as PL/pgSQL's exception blocks know.
 */
static inline ErrorData *
llm_subxact_error(MemoryContext context, ResourceOwner owner)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(context);
	edata = CopyErrorData();
	FlushErrorState();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(context);
	CurrentResourceOwner = owner;
	return edata;
}

#endif							/* LLMEXT_SUBXACT_H */
