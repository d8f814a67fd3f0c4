/*
 * catalog.c — registry look-ups (llm.models, llm.providers, the key table).
 *
 * The query runs as the owner of the key table, because ordinary users may
 * call models but must never read keys.  Every name in it is qualified,
 * operators included, so a caller's search_path cannot redirect anything
 * that runs with the owner's rights.
 */
#include "llmext.h"

#include "catalog.h"

#include <stdlib.h>

#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "catalog/pg_class.h"

static const char *const lookup_sql =
"SELECT m.name, m.remote_model, m.kind,"
"       m.input_price::pg_catalog.float8,"
"       COALESCE(m.cached_input_price, m.input_price)::pg_catalog.float8,"
"       m.output_price::pg_catalog.float8,"
"       m.params::pg_catalog.text,"
"       p.name, p.kind, p.base_url, p.options::pg_catalog.text,"
"       p.key_source, p.key_env, k.api_key"
"  FROM llm.models m"
"  JOIN llm.providers p ON p.name OPERATOR(pg_catalog.=) m.provider"
"  LEFT JOIN llm.provider_keys k ON k.provider OPERATOR(pg_catalog.=) p.name"
" WHERE m.name OPERATOR(pg_catalog.=) $1";

static SPIPlanPtr lookup_plan = NULL;

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

/* Returns the key: stored_key itself (a palloc'd copy) or the environment's. */
static char *
resolve_key(const char *provider, const char *source, const char *key_env,
			char *stored_key)
{
	if (strcmp(source, "stored") == 0)
		return (char *) stored_key;
	if (strcmp(source, "env") == 0)
	{
		const char *value = getenv(key_env);

		if (value == NULL || value[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the API key of provider \"%s\" is not available", provider),
					 errdetail("The provider reads its key from the environment variable \"%s\", which is not set in the server's environment.",
							   key_env),
					 errhint("Set the variable where the server starts, or store a key with llm_provider_set_key.")));
		return pstrdup(value);
	}
	return NULL;
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

/* Runs the look-up query as the key table's owner; NULL when not found. */
static LlmModel *
query_model(const char *name)
{
	MemoryContext caller_context = CurrentMemoryContext;
	Oid			owner = llm_extension_owner();
	Oid			saved_userid;
	int			saved_sec_context;
	LlmModel   *model = NULL;
	Datum		arg;

	arg = CStringGetTextDatum(name);

	GetUserIdAndSecContext(&saved_userid, &saved_sec_context);
	SetUserIdAndSecContext(owner, saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		int			rc;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (lookup_plan == NULL)
		{
			Oid			argtypes[1] = {TEXTOID};
			SPIPlanPtr	plan = SPI_prepare(lookup_sql, 1, argtypes);

			if (plan == NULL)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			SPI_keepplan(plan);
			lookup_plan = plan;
		}
		rc = SPI_execute_plan(lookup_plan, &arg, NULL, true, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
		if (SPI_processed == 1)
		{
			HeapTuple	tuple = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			MemoryContext spi_context = MemoryContextSwitchTo(caller_context);

			model = palloc0(sizeof(LlmModel));
			model->name = column_text(tuple, desc, 1);
			model->remote_model = column_text(tuple, desc, 2);
			model->kind = column_text(tuple, desc, 3);
			model->prices.input = column_float(tuple, desc, 4);
			model->prices.cached_input = column_float(tuple, desc, 5);
			model->prices.output = column_float(tuple, desc, 6);
			model->params = parse_json_column(column_text(tuple, desc, 7));
			model->provider = column_text(tuple, desc, 8);
			model->provider_kind = column_text(tuple, desc, 9);
			model->base_url = column_text(tuple, desc, 10);
			model->provider_options = parse_json_column(column_text(tuple, desc, 11));
			model->api_key = resolve_key(model->provider,
										 column_text(tuple, desc, 12),
										 column_text(tuple, desc, 13),
										 column_text(tuple, desc, 14));
			MemoryContextSwitchTo(spi_context);
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_userid, saved_sec_context);
	}
	PG_END_TRY();
	return model;
}

LlmModel *
llm_lookup_model(const char *name)
{
	LlmModel   *model;

	name = model_name_or_default(name);
	model = query_model(name);
	if (model == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name),
				 errhint("Register it with llm_model_create(name, provider, remote_model), or list the models with SELECT name FROM llm.models.")));
	return model;
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
