/*
 * owner_query.h — a prepared query run with the rights of the extension's
 * owner.
 *
 * Keys, the cache and the ledger are readable only by the owner, yet any
 * llm_user's call needs them.  Such queries switch to the owner for their
 * duration only, and name every object and operator with its schema, so
 * that nothing the caller controls (search_path, a planted operator) runs
 * with the owner's rights.
 */
#ifndef LLMEXT_OWNER_QUERY_H
#define LLMEXT_OWNER_QUERY_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "executor/spi.h"

#define LLM_OWNER_QUERY_MAX_ARGS 4

typedef struct LlmOwnerQuery
{
	const char *sql;
	int			nargs;
	Oid			argtypes[LLM_OWNER_QUERY_MAX_ARGS];
	SPIPlanPtr	plan;			/* prepared on first use, then kept */
} LlmOwnerQuery;

/* Reads a result row; runs in the caller's memory context. */
typedef void (*LlmRowReader) (HeapTuple tuple, TupleDesc desc, void *arg);

/*
 * The role that owns llmext's tables (the one that created the extension):
 * internal queries that touch keys, the cache or the ledger run as it.
 */
extern Oid	llm_extension_owner(void);

/*
 * Runs query with args (nulls as for SPI_execute_plan, or NULL) as the
 * extension's owner, and hands the first row, if any, to reader.  Returns
 * the number of rows processed.
 */
extern uint64 llm_owner_query(LlmOwnerQuery *query, Datum *args, const char *nulls,
							  bool read_only, LlmRowReader reader, void *arg);

#endif							/* LLMEXT_OWNER_QUERY_H */
