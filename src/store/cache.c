/*
 * cache.c — the response cache (see cache.h).
 *
 * A fresh entry is queued like a ledger row and written by the worker, so
 * it survives the caller's ROLLBACK; until then look-ups find it in the
 * queue, so a repeat a moment later is already a hit.
 */
#include "llmext.h"

#include "store/cache.h"

#include "core/cachekey.h"
#include "store/catalog.h"
#include "store/ledger.h"
#include "store/owner_query.h"

#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#define RECENT_MAX_ENTRIES 4096
#define RECENT_MAX_BYTES (64 * 1024 * 1024)

/*
 * Answers this backend has recently served or stored, so that a hot key
 * costs no query at all.  Deleting from llm.cache (purge, expiry) sends an
 * invalidation that empties it (see llm._catalog_changed).
 */
typedef struct RecentAnswer
{
	char		key[65];
	char	   *result;			/* the normalised result, JSON text */
	TimestampTz expires_at;		/* 0: never */
} RecentAnswer;

static MemoryContext recent_context = NULL;
static HTAB *recent = NULL;
static Size recent_bytes = 0;
static Oid	cache_relid = InvalidOid;

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
	llm_cache_policy_for(options, llm_request_is_deterministic(params), policy);
}

void
llm_cache_policy_for(const cJSON *options, bool deterministic, LlmCachePolicy *policy)
{
	const cJSON *mode_option = cJSON_GetObjectItemCaseSensitive(options, "cache");
	const cJSON *ttl_option = cJSON_GetObjectItemCaseSensitive(options, "cache_ttl");
	int			mode = mode_option && !cJSON_IsNull(mode_option) ? parse_mode(mode_option) : llm_cache_mode;

	policy->ttl_s = ttl_option && !cJSON_IsNull(ttl_option) ? parse_ttl(ttl_option) : llm_cache_ttl_s;
	policy->read = deterministic && mode != LLM_CACHE_OFF;
	policy->write = deterministic && mode == LLM_CACHE_ON;
}

char *
llm_sha256_hex(const char *text)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	char	   *hex = palloc(2 * PG_SHA256_DIGEST_LENGTH + 1);

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) text, strlen(text)) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute a SHA-256 digest");
	pg_cryptohash_free(ctx);
	hex_encode((const char *) digest, sizeof(digest), hex);
	hex[2 * PG_SHA256_DIGEST_LENGTH] = '\0';
	return hex;
}

static void
forget_recent(Datum arg, Oid relid)
{
	if (recent != NULL && (relid == InvalidOid || relid == cache_relid))
	{
		MemoryContextReset(recent_context);
		recent = NULL;
		recent_bytes = 0;
	}
}

static HTAB *
get_recent(void)
{
	HASHCTL		ctl;

	if (recent != NULL)
		return recent;
	if (recent_context == NULL)
	{
		recent_context = AllocSetContextCreate(CacheMemoryContext, "llmext recent answers",
											   ALLOCSET_DEFAULT_SIZES);
		CacheRegisterRelcacheCallback(forget_recent, (Datum) 0);
	}
	cache_relid = get_relname_relid("cache", get_namespace_oid("llm", false));
	/* (called only after a model look-up has proved the schema exists) */
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = 65;
	ctl.entrysize = sizeof(RecentAnswer);
	ctl.hcxt = recent_context;
	recent = hash_create("llmext recent answers", 256, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	return recent;
}

static void
remember(const char *key, const char *result, TimestampTz expires_at)
{
	HTAB	   *table = get_recent();
	RecentAnswer *entry;
	bool		found;

	if (hash_get_num_entries(table) >= RECENT_MAX_ENTRIES || recent_bytes >= RECENT_MAX_BYTES)
	{
		forget_recent((Datum) 0, InvalidOid);
		table = get_recent();
	}
	entry = hash_search(table, key, HASH_ENTER, &found);
	if (found)
		pfree(entry->result);
	entry->result = MemoryContextStrdup(recent_context, result);
	entry->expires_at = expires_at;
	recent_bytes += strlen(result);
}

static char *
recall(const char *key)
{
	RecentAnswer *entry = hash_search(get_recent(), key, HASH_FIND, NULL);

	if (entry == NULL)
		return NULL;
	if (entry->expires_at != 0 && entry->expires_at <= GetCurrentTimestamp())
	{
		hash_search(recent, key, HASH_REMOVE, NULL);
		return NULL;
	}
	return entry->result;
}

static LlmOwnerQuery lookup_query = {
	.sql =
	"SELECT result::pg_catalog.text, expires_at FROM llm.cache"
	" WHERE key OPERATOR(pg_catalog.=) $1"
	"   AND (expires_at IS NULL OR expires_at OPERATOR(pg_catalog.>) pg_catalog.now())",
	.nargs = 1,
	.argtypes = {TEXTOID},
};

typedef struct TableEntry
{
	char	   *result;
	TimestampTz expires_at;
} TableEntry;

static void
read_entry(HeapTuple tuple, TupleDesc desc, void *arg)
{
	TableEntry *entry = (TableEntry *) arg;
	bool		isnull;
	Datum		expiry = SPI_getbinval(tuple, desc, 2, &isnull);

	entry->result = SPI_getvalue(tuple, desc, 1);
	entry->expires_at = isnull ? 0 : DatumGetTimestampTz(expiry);
}

cJSON *
llm_cache_get(const char *key)
{
	char	   *pending;
	char	   *text;
	TableEntry	entry = {NULL, 0};
	Datum		arg;

	text = recall(key);
	if (text != NULL)
		return cJSON_Parse(text);
	pending = llm_pending_cache_entry(key);
	if (pending != NULL)
	{
		cJSON	   *entry = cJSON_Parse(pending);
		cJSON	   *result = cJSON_DetachItemFromObjectCaseSensitive(entry, "result");

		cJSON_Delete(entry);
		if (result != NULL)
			return result;
	}
	arg = CStringGetTextDatum(key);
	llm_owner_query(&lookup_query, &arg, NULL, true, read_entry, &entry);
	if (entry.result == NULL)
		return NULL;
	remember(key, entry.result, entry.expires_at);
	return cJSON_Parse(entry.result);
}

void
llm_cache_put(const char *key, const char *model, const char *provider,
			  const char *remote_model, const cJSON *result, double cost_usd, int ttl_s)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz expires_at = ttl_s > 0 ? TimestampTzPlusMilliseconds(now, (int64) ttl_s * 1000) : 0;
	cJSON	   *entry = cJSON_CreateObject();

	cJSON_AddStringToObject(entry, "kind", "cache");
	cJSON_AddStringToObject(entry, "key", key);
	cJSON_AddStringToObject(entry, "model", model);
	cJSON_AddStringToObject(entry, "provider", provider);
	cJSON_AddStringToObject(entry, "remote_model", remote_model);
	cJSON_AddItemToObject(entry, "result", cJSON_Duplicate(result, true));
	cJSON_AddNumberToObject(entry, "cost_usd", cost_usd);
	cJSON_AddStringToObject(entry, "created_at", llm_iso_timestamp(now));
	if (expires_at != 0)
		cJSON_AddStringToObject(entry, "expires_at", llm_iso_timestamp(expires_at));
	llm_pending_add(LLM_ENTRY_CACHE, key, 0, cJSON_PrintUnformatted(entry));
	remember(key, cJSON_PrintUnformatted(result), expires_at);
}
