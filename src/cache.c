/*
 * cache.c — the response cache (see cache.h).
 *
 * A fresh entry is queued like a ledger row and written by the worker, so
 * it survives the caller's ROLLBACK; until then look-ups find it in the
 * queue, so a repeat a moment later is already a hit.
 */
#include "llmext.h"

#include "cache.h"
#include "cachekey.h"

#include "catalog.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "ledger.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

int			llm_cache_mode = LLM_CACHE_ON;
int			llm_cache_ttl_s = 7 * 24 * 3600;

const struct config_enum_entry llm_cache_mode_options[] = {
	{"off", LLM_CACHE_OFF, false},
	{"on", LLM_CACHE_ON, false},
	{"read_only", LLM_CACHE_READ_ONLY, false},
	{NULL, 0, false}
};

static int
parse_mode(const cJSON *value)
{
	if (cJSON_IsString(value))
	{
		for (const struct config_enum_entry *e = llm_cache_mode_options; e->name; e++)
			if (strcmp(e->name, value->valuestring) == 0)
				return e->val;
	}
	else if (cJSON_IsBool(value))
		return cJSON_IsTrue(value) ? LLM_CACHE_ON : LLM_CACHE_OFF;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for option \"cache\""),
			 errhint("Use \"on\", \"off\" or \"read_only\".")));
	return LLM_CACHE_OFF;		/* not reached */
}

/* Seconds from a number or an interval string such as "2 hours". */
static int
parse_ttl(const cJSON *value)
{
	double		seconds = -1;

	if (cJSON_IsNumber(value))
		seconds = value->valuedouble;
	else if (cJSON_IsString(value))
	{
		Datum		interval = DirectFunctionCall3(interval_in,
												   CStringGetDatum(value->valuestring),
												   ObjectIdGetDatum(InvalidOid),
												   Int32GetDatum(-1));

		seconds = DatumGetFloat8(DirectFunctionCall2(interval_part,
													 CStringGetTextDatum("epoch"),
													 interval));
	}
	if (seconds < 0 || seconds > INT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for option \"cache_ttl\""),
				 errhint("Give seconds (0: never expires) or an interval such as \"2 hours\".")));
	return (int) seconds;
}

void
llm_cache_policy(const cJSON *options, const cJSON *params, LlmCachePolicy *policy)
{
	const cJSON *mode_option = cJSON_GetObjectItemCaseSensitive(options, "cache");
	const cJSON *ttl_option = cJSON_GetObjectItemCaseSensitive(options, "cache_ttl");
	int			mode = mode_option ? parse_mode(mode_option) : llm_cache_mode;
	bool		deterministic = llm_request_is_deterministic(params);

	policy->ttl_s = ttl_option ? parse_ttl(ttl_option) : llm_cache_ttl_s;
	policy->read = deterministic && mode != LLM_CACHE_OFF;
	policy->write = deterministic && mode == LLM_CACHE_ON;
}

char *
llm_sha256_hex(const char *text)
{
	bytea	   *digest = DatumGetByteaPP(DirectFunctionCall1(sha256_bytea,
															 PointerGetDatum(cstring_to_text(text))));
	char	   *hex = palloc(2 * 32 + 1);

	hex_encode(VARDATA_ANY(digest), VARSIZE_ANY_EXHDR(digest), hex);
	hex[64] = '\0';
	return hex;
}

static char *
table_lookup(const char *key)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext caller = CurrentMemoryContext;
	Datum		arg = CStringGetTextDatum(key);
	Oid			saved_userid;
	int			saved_sec_context;
	char	   *text = NULL;

	GetUserIdAndSecContext(&saved_userid, &saved_sec_context);
	SetUserIdAndSecContext(llm_extension_owner(), saved_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (plan == NULL)
		{
			Oid			argtypes[1] = {TEXTOID};
			SPIPlanPtr	p = SPI_prepare(
										"SELECT result::pg_catalog.text FROM llm.cache"
										" WHERE key OPERATOR(pg_catalog.=) $1"
										"   AND (expires_at IS NULL"
										"        OR expires_at OPERATOR(pg_catalog.>) pg_catalog.now())",
										1, argtypes);

			if (p == NULL)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			SPI_keepplan(p);
			plan = p;
		}
		if (SPI_execute_plan(plan, &arg, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "cache look-up failed");
		if (SPI_processed == 1)
		{
			MemoryContext spi = MemoryContextSwitchTo(caller);

			text = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			MemoryContextSwitchTo(spi);
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_userid, saved_sec_context);
	}
	PG_END_TRY();
	return text;
}

cJSON *
llm_cache_get(const char *key)
{
	char	   *pending = llm_pending_cache_entry(key);
	char	   *text;

	if (pending != NULL)
	{
		cJSON	   *entry = cJSON_Parse(pending);
		cJSON	   *result = cJSON_DetachItemFromObjectCaseSensitive(entry, "result");

		cJSON_Delete(entry);
		if (result != NULL)
			return result;
	}
	text = table_lookup(key);
	return text ? cJSON_Parse(text) : NULL;
}

void
llm_cache_put(const char *key, const char *model, const char *provider,
			  const char *remote_model, const cJSON *result, double cost_usd, int ttl_s)
{
	TimestampTz now = GetCurrentTimestamp();
	cJSON	   *entry = cJSON_CreateObject();

	cJSON_AddStringToObject(entry, "kind", "cache");
	cJSON_AddStringToObject(entry, "key", key);
	cJSON_AddStringToObject(entry, "model", model);
	cJSON_AddStringToObject(entry, "provider", provider);
	cJSON_AddStringToObject(entry, "remote_model", remote_model);
	cJSON_AddItemToObject(entry, "result", cJSON_Duplicate(result, true));
	cJSON_AddNumberToObject(entry, "cost_usd", cost_usd);
	cJSON_AddStringToObject(entry, "created_at", llm_iso_timestamp(now));
	if (ttl_s > 0)
		cJSON_AddStringToObject(entry, "expires_at",
								llm_iso_timestamp(TimestampTzPlusMilliseconds(now, (int64) ttl_s * 1000)));
	llm_pending_add(LLM_ENTRY_CACHE, key, 0, cJSON_PrintUnformatted(entry));
}
