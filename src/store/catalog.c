/*
 * catalog.c — registry look-ups (llm.models, llm.providers, the key table),
 * with a copy of each model kept per backend.
 *
 * The queries run as the extension's owner (see owner_query.h): ordinary
 * users may call models but must never read keys.
 */
#include "llmext.h"

#include "store/catalog.h"

#include "core/allowlist.h"
#include "store/owner_query.h"

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type_d.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include <stdlib.h>

static LlmOwnerQuery model_query = {
	.sql =
	"SELECT m.name, m.remote_model, m.kind,"
	"       m.input_price::pg_catalog.float8,"
	"       COALESCE(m.cached_input_price, m.input_price)::pg_catalog.float8,"
	"       m.output_price::pg_catalog.float8,"
	"       m.params::pg_catalog.text,"
	"       p.name, p.kind, p.base_url, p.options::pg_catalog.text,"
	"       p.key_source, p.key_env, m.limits::pg_catalog.text,"
	"       COALESCE(m.cache_write_price, m.input_price)::pg_catalog.float8, m.use,"
	"       m.batch_price_ratio::pg_catalog.float8"
	"  FROM llm.models m"
	"  JOIN llm.providers p ON p.name OPERATOR(pg_catalog.=) m.provider"
	" WHERE m.name OPERATOR(pg_catalog.=) $1",
	.nargs = 1,
	.argtypes = {TEXTOID},
};

static LlmOwnerQuery key_query = {
	.sql = "SELECT api_key FROM llm.provider_keys WHERE provider OPERATOR(pg_catalog.=) $1",
	.nargs = 1,
	.argtypes = {TEXTOID},
};

/*
 * Models already looked up in this backend.  A statement-level trigger on
 * llm.models and llm.providers (llm._catalog_changed) sends a relcache
 * invalidation for the changed table, and every backend then forgets its
 * copies before its next transaction reads them.
 */
typedef struct CachedModel
{
	char		name[NAMEDATALEN * 2];
	LlmModel   *model;
} CachedModel;

static MemoryContext model_cache_context = NULL;
static HTAB *model_cache = NULL;
static Oid	models_relid = InvalidOid;
static Oid	providers_relid = InvalidOid;
static bool callback_registered = false;

static char *
column_text(HeapTuple tuple, TupleDesc desc, int column)
{
	return SPI_getvalue(tuple, desc, column);
}

static double
column_float(HeapTuple tuple, TupleDesc desc, int column)
{
	bool		isnull;
	Datum		value = SPI_getbinval(tuple, desc, column, &isnull);

	return isnull ? 0 : DatumGetFloat8(value);
}

static cJSON *
parse_json_column(const char *text)
{
	cJSON	   *json = cJSON_Parse(text);

	if (json == NULL)
		elog(ERROR, "llmext: stored JSON could not be parsed");
	return json;
}

/* The model to use: the given name, or llmext.default_model for NULL. */
static const char *
model_name_or_default(const char *name)
{
	if (name != NULL && name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name must not be empty"),
				 errhint("Pass NULL to use llmext.default_model.")));
	if (name == NULL)
	{
		name = llm_default_model;
		if (name == NULL || name[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("no model given"),
					 errdetail("The call names no model and llmext.default_model is not set."),
					 errhint("Pass a model, for example llm_complete('...', 'my-model'), or SET llmext.default_model.")));
	}
	return name;
}

static void
read_model(HeapTuple tuple, TupleDesc desc, void *arg)
{
	LlmModel  **result = (LlmModel **) arg;
	LlmModel   *model = palloc0(sizeof(LlmModel));

	model->name = column_text(tuple, desc, 1);
	model->remote_model = column_text(tuple, desc, 2);
	model->kind = column_text(tuple, desc, 3);
	model->prices.input = column_float(tuple, desc, 4);
	model->prices.cached_input = column_float(tuple, desc, 5);
	model->prices.output = column_float(tuple, desc, 6);
	model->params = parse_json_column(column_text(tuple, desc, 7));
	model->provider = column_text(tuple, desc, 8);
	model->provider_kind = column_text(tuple, desc, 9);
	model->routine = llm_provider_routine(model->provider_kind);	/* NULL: unknown */
	model->base_url = column_text(tuple, desc, 10);
	model->provider_options = parse_json_column(column_text(tuple, desc, 11));
	model->key_source = column_text(tuple, desc, 12);
	model->key_env = column_text(tuple, desc, 13);
	model->limits = parse_json_column(column_text(tuple, desc, 14));
	model->prices.cache_write = column_float(tuple, desc, 15);
	model->use = column_text(tuple, desc, 16);
	model->batch_price_ratio = column_float(tuple, desc, 17);
	*result = model;
}

/* The model from the catalog; NULL when there is none. */
static LlmModel *
query_model(const char *name)
{
	LlmModel   *model = NULL;
	Datum		arg = CStringGetTextDatum(name);

	llm_owner_query(&model_query, &arg, NULL, true, read_model, &model);
	return model;
}

static LlmModel *
copy_model(const LlmModel *model, MemoryContext context)
{
	MemoryContext old = MemoryContextSwitchTo(context);
	LlmModel   *copy = palloc(sizeof(LlmModel));

	*copy = *model;
	copy->name = pstrdup(model->name);
	copy->remote_model = pstrdup(model->remote_model);
	copy->kind = pstrdup(model->kind);
	copy->params = cJSON_Duplicate(model->params, true);
	copy->provider = pstrdup(model->provider);
	copy->provider_kind = pstrdup(model->provider_kind);
	copy->base_url = pstrdup(model->base_url);
	copy->provider_options = cJSON_Duplicate(model->provider_options, true);
	copy->limits = cJSON_Duplicate(model->limits, true);
	copy->use = pstrdup(model->use);
	copy->key_source = pstrdup(model->key_source);
	copy->key_env = model->key_env ? pstrdup(model->key_env) : NULL;
	copy->api_key = NULL;
	MemoryContextSwitchTo(old);
	return copy;
}

static void
forget_models(Datum arg, Oid relid)
{
	if (model_cache_context != NULL &&
		(relid == InvalidOid || relid == models_relid || relid == providers_relid))
	{
		MemoryContextReset(model_cache_context);
		model_cache = NULL;
	}
}

static HTAB *
get_model_cache(void)
{
	HASHCTL		ctl;
	Oid			namespace;

	if (model_cache != NULL)
		return model_cache;
	if (model_cache_context == NULL)
		model_cache_context = AllocSetContextCreate(CacheMemoryContext, "llmext model cache",
													ALLOCSET_SMALL_SIZES);
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_models, (Datum) 0);
		callback_registered = true;
	}
	namespace = get_namespace_oid("llm", true);
	models_relid = OidIsValid(namespace) ? get_relname_relid("models", namespace) : InvalidOid;
	providers_relid = OidIsValid(namespace) ? get_relname_relid("providers", namespace) : InvalidOid;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = NAMEDATALEN * 2;
	ctl.entrysize = sizeof(CachedModel);
	ctl.hcxt = model_cache_context;
	model_cache = hash_create("llmext models", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	return model_cache;
}

LlmModel *
llm_lookup_model(const char *name)
{
	return llm_find_model(name, false);
}

LlmModel *
llm_find_model(const char *name, bool missing_ok)
{
	CachedModel *cached = NULL;
	LlmModel   *model;
	bool		cacheable;

	name = model_name_or_default(name);
	cacheable = strlen(name) < NAMEDATALEN * 2;
	if (cacheable)
		cached = hash_search(get_model_cache(), name, HASH_FIND, NULL);
	if (cached == NULL)
	{
		llm_extension_owner();	/* errors out if llmext is not installed here */
		model = query_model(name);
		if (model == NULL && missing_ok)
			return NULL;
		if (model == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("model \"%s\" does not exist", name),
					 errhint("Register it with llm_model_create(name, provider, remote_model), or list the models with SELECT name FROM llm.models.")));
		if (model->routine == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("provider kind \"%s\" of provider \"%s\" is not supported",
							model->provider_kind, model->provider),
					 errhint("Register the model under a provider of a kind this version of llmext implements.")));
		if (!cacheable)
			return model;
		/* copied only now: an invalidation during the query resets the cache */
		cached = hash_search(get_model_cache(), name, HASH_ENTER, NULL);
		cached->model = copy_model(model, model_cache_context);
	}

	/*
	 * Callers get a deep copy in their own memory context.  Handing out the
	 * cached strings would be cheaper, but any invalidation the caller's
	 * later work accepts (a catalog change seen at the next command, a
	 * syscache flush, a callback's DDL) resets model_cache_context under it,
	 * and a string it still held (the provider's name, say) would then point
	 * into freed memory.
	 */
	return copy_model(cached->model, CurrentMemoryContext);
}

static void
read_key(HeapTuple tuple, TupleDesc desc, void *arg)
{
	*(char **) arg = column_text(tuple, desc, 1);
}

void
llm_check_provider_target(const char *provider, const char *base_url, const char *key_env)
{
	if (!llm_host_allowed(llm_allowed_hosts, base_url))
	{
		char		host[256];
		int			port;

		if (llm_url_host(base_url, host, sizeof(host), &port))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("provider \"%s\" may not send requests to host \"%s\" (port %d)",
							provider, host, port),
					 errdetail("llmext.allowed_hosts is \"%s\"; the host matches none of its patterns.",
							   llm_allowed_hosts),
					 errhint("A superuser can add the host to llmext.allowed_hosts.")));
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("provider \"%s\" has a base_url whose host llmext.allowed_hosts cannot check",
						provider),
				 errdetail("The host of a base_url must be a name of letters, digits, \"-\", \"_\" and \".\", or an IPv6 address in brackets, optionally with a port; llmext.allowed_hosts is \"%s\".",
						   llm_allowed_hosts),
				 errhint("Give a base_url such as https://api.example.com/v1.")));
	}
	if (key_env != NULL && !llm_pattern_list_match(llm_key_env_allowed, key_env, false))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("provider \"%s\" may not read its key from environment variable \"%s\"",
						provider, key_env),
				 errdetail("llmext.key_env_allowed is \"%s\"; the name matches none of its patterns.",
						   llm_key_env_allowed),
				 errhint("A superuser can add the name to llmext.key_env_allowed, or store the key with llm_provider_set_key.")));
}

void
llm_check_model_target(const LlmModel *model)
{
	llm_check_provider_target(model->provider, model->base_url,
							  strcmp(model->key_source, "env") == 0 ? model->key_env : NULL);
}

void
llm_load_key(LlmModel *model)
{
	Datum		arg;

	/*
	 * Right before every request (retries included): the key and the
	 * request go only where the settings allow now, and a variable that is
	 * not allowed is never read.
	 */
	llm_check_model_target(model);
	if (strcmp(model->key_source, "env") == 0)
	{
		const char *value = getenv(model->key_env);

		if (value == NULL || value[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the API key of provider \"%s\" is not available", model->provider),
					 errdetail("The provider reads its key from the environment variable \"%s\", which is not set in the server's environment.",
							   model->key_env),
					 errhint("Set the variable where the server starts, or store a key with llm_provider_set_key.")));
		model->api_key = pstrdup(value);
		return;
	}
	if (strcmp(model->key_source, "stored") != 0)
		return;

	arg = CStringGetTextDatum(model->provider);
	llm_owner_query(&key_query, &arg, NULL, true, read_key, &model->api_key);
}

void
llm_forget_key(LlmModel *model)
{
	if (model->api_key != NULL)
	{
		explicit_bzero(model->api_key, strlen(model->api_key));
		pfree(model->api_key);
		model->api_key = NULL;
	}
}
