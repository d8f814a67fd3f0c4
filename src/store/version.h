/*
 * version.h — whether this database's llmext objects are the ones this
 * library was built for.
 */
#ifndef LLMEXT_VERSION_H
#define LLMEXT_VERSION_H

/*
 * True when llmext is installed here, not being created or updated, at the
 * library's version (EXTVERSION).  Logs once per process, as LOG, while the
 * installed version differs.  Runs catalog lookups: call in a transaction.
 */
extern bool llm_schema_is_current(void);

#endif							/* LLMEXT_VERSION_H */
