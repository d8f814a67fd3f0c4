/*
 * catalog.h — looking up a model, its provider and the provider's key.
 */
#ifndef LLMEXT_CATALOG_H
#define LLMEXT_CATALOG_H

#include "postgres.h"

#include "request.h"

typedef struct LlmModel
{
	char	   *name;			/* the alias SQL uses */
	char	   *remote_model;	/* the id sent to the provider */
	char	   *kind;			/* base or fine_tuned */
	LlmPrices	prices;
	cJSON	   *params;			/* default provider parameters */

	char	   *provider;
	char	   *provider_kind;	/* openai */
	char	   *base_url;
	cJSON	   *provider_options;
	char	   *api_key;		/* resolved secret, or NULL; never print it */
} LlmModel;

/*
 * Looks up a model by name (NULL: llmext.default_model).  Raises
 * an ERROR for an unknown model or a key that cannot be resolved.  The key
 * table is readable only by the extension's owner, so the lookup runs as
 * that role.
 */
extern LlmModel *llm_lookup_model(const char *name);

/*
 * The role that owns llmext's tables (the one that created the extension):
 * internal queries that touch keys, the cache or the ledger run as it.
 */
extern Oid	llm_extension_owner(void);

/* Overwrites the key in memory once it is no longer needed. */
extern void llm_forget_key(LlmModel *model);

#endif							/* LLMEXT_CATALOG_H */
