/*
 * catalog.h — looking up a model, its provider and the provider's key.
 */
#ifndef LLMEXT_CATALOG_H
#define LLMEXT_CATALOG_H

#include "postgres.h"

#include "core/request.h"
#include "providers/provider.h"

typedef struct LlmModel
{
	char	   *name;			/* the alias SQL uses */
	char	   *remote_model;	/* the id sent to the provider */
	char	   *kind;			/* base or fine_tuned */
	LlmPrices	prices;
	cJSON	   *params;			/* default provider parameters */
	cJSON	   *limits;			/* the model's own rate limits */
	char	   *use;			/* chat or embedding */
	double		batch_price_ratio;	/* the share of prices a Batch API call costs */

	char	   *provider;
	char	   *provider_kind;	/* llm.providers.kind */
	const LlmProviderRoutine *routine;	/* the kind's routines (providers/) */
	char	   *base_url;
	cJSON	   *provider_options;
	char	   *key_source;		/* none, stored or env */
	char	   *key_env;
	char	   *api_key;		/* set by llm_load_key; never print it */
} LlmModel;

/*
 * Looks up a model by name (NULL: llmext.default_model), from this
 * backend's copy when it has one; raises an ERROR for an unknown model.
 * The struct, its strings and its JSON are a copy in the caller's memory
 * context: they outlive any invalidation of the backend's copy.  The key is
 * not loaded: see llm_load_key.
 */
extern LlmModel *llm_lookup_model(const char *name);
/* The same, but NULL for a model that does not exist. */
extern LlmModel *llm_find_model(const char *name, bool missing_ok);

/*
 * Loads the provider's key into model->api_key (stored keys are readable
 * only by the extension's owner, so this reads as that role), or raises an
 * ERROR if an environment key is missing.  Only done right before a
 * request, so that answers from the cache never touch a key; checks the
 * provider's target first (llm_check_model_target).
 */
extern void llm_load_key(LlmModel *model);

/*
 * Raises an ERROR (42501) unless llmext.allowed_hosts allows base_url and,
 * when key_env is not NULL, llmext.key_env_allowed allows that variable.
 * Checked when a provider is created and before every request (the
 * settings may have been tightened since).  Never reads the variable.
 */
extern void llm_check_provider_target(const char *provider, const char *base_url,
									  const char *key_env);

/* The same for a model's provider, before a request to it. */
extern void llm_check_model_target(const LlmModel *model);

/* Overwrites the key in memory once it is no longer needed. */
extern void llm_forget_key(LlmModel *model);

#endif							/* LLMEXT_CATALOG_H */
