/*
 * ledger.c — the queue of entries between backends and the worker (see
 * ledger.h).
 */
#include "store/ledger.h"

#include "store/caller.h"
#include "store/catalog.h"
#include "store/owner_query.h"

#include "catalog/pg_type_d.h"
#include "commands/dbcommands.h"
#include "common/shortest_dec.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#define FULL_QUEUE_SLICE_MS 10	/* how often a waiting backend looks again */
#define MAX_ERROR_TEXT 2000

/* llmext.queue_full_wait: how long a backend waits for a place (ms) */
int			llm_queue_full_wait_ms = 2000;

static bool warned_sync_write = false;

/*
 * Entries the worker made itself while the queue was full (see
 * llm_pending_add), oldest first, in TopMemoryContext.  Only the worker
 * drains the queue, so waiting for a place would be waiting on itself.
 */
typedef struct HeldEntry
{
	uint64		seq;			/* from the queue's sequence, for llm_flush */
	int			attempts;
	char		json[FLEXIBLE_ARRAY_MEMBER];
} HeldEntry;

static HeldEntry **held = NULL;
static int	nheld = 0;
static int	held_capacity = 0;

/* Writes one entry in the caller's own transaction. */
static void
write_now(const char *json, const char *why)
{
	if (!warned_sync_write)
	{
		warned_sync_write = true;
		ereport(WARNING,
				(errmsg("llmext writes ledger rows and cache entries in the calling transaction"),
				 errdetail("%s", why),
				 errhint("A ROLLBACK also removes them. Add llmext to shared_preload_libraries and this database to llmext.databases so that a background worker writes them.")));
	}
	llm_persist(psprintf("[%s]", json));
}

/*
 * Finds a free slot and fills it; false if the queue is full.  Sets *busy
 * when the queue is a quarter full, so the worker is woken before its
 * regular tick.
 */
static bool
try_enqueue(LlmEntryKind kind, const char *key, double cost_usd, dsa_pointer payload,
			bool *busy)
{
	bool		queued = false;

	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	for (int n = 0; n < llm_shared->capacity; n++)
	{
		int			i = (llm_shared->next_free + n) % llm_shared->capacity;
		LlmPendingEntry *e = &llm_shared->entries[i];

		if (e->state != LLM_ENTRY_FREE)
			continue;
		llm_shared->next_free = (i + 1) % llm_shared->capacity;
		if (kind == LLM_ENTRY_CACHE)
			llm_shared->cache_entries++;
		e->state = LLM_ENTRY_FILLED;
		e->kind = (char) kind;
		e->attempts = 0;
		e->dboid = MyDatabaseId;
		e->roleid = GetUserId();
		e->loginid = llm_login_role();
		e->seq = llm_shared->next_seq++;
		e->cost_usd = cost_usd;
		strlcpy(e->key, key ? key : "", sizeof(e->key));
		e->payload = payload;
		llm_shared->used++;
		queued = true;
		break;
	}
	*busy = llm_shared->used >= llm_shared->capacity / 4;
	LWLockRelease(llm_shared->lock);
	return queued;
}

/* Tells backends how old the worker's oldest held entry is (0: none). */
static void
publish_held(void)
{
	uint64		oldest = 0;

	for (int i = 0; i < nheld; i++)
		if (oldest == 0 || held[i]->seq < oldest)
			oldest = held[i]->seq;
	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < LLM_MAX_WORKERS; i++)
		if (llm_shared->workers[i].pid == MyProcPid)
			llm_shared->workers[i].held_seq = oldest;
	LWLockRelease(llm_shared->lock);
}

/* The worker keeps an entry it could not queue, to write it itself. */
static void
hold(const char *json)
{
	size_t		len = strlen(json) + 1;
	HeldEntry  *e;

	if (nheld == held_capacity)
	{
		held_capacity = Max(16, held_capacity * 2);
		held = held == NULL
			? MemoryContextAlloc(TopMemoryContext, held_capacity * sizeof(HeldEntry *))
			: repalloc(held, held_capacity * sizeof(HeldEntry *));
	}
	e = MemoryContextAlloc(TopMemoryContext, offsetof(HeldEntry, json) + len);
	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	e->seq = llm_shared->next_seq++;
	LWLockRelease(llm_shared->lock);
	e->attempts = 0;
	memcpy(e->json, json, len);
	held[nheld++] = e;
	publish_held();
	SetLatch(MyLatch);			/* written at the worker's next turn, not in a second */
}

/* One try at a place; true if the entry is queued. */
static bool
enqueue_once(Latch *worker, LlmEntryKind kind, const char *key, double cost_usd,
			 const char *json)
{
	dsa_area   *dsa = llm_shared_area();
	size_t		len = strlen(json) + 1;
	dsa_pointer payload;
	bool		busy;

	payload = dsa_allocate_extended(dsa, len, DSA_ALLOC_NO_OOM | DSA_ALLOC_HUGE);
	if (!DsaPointerIsValid(payload))
		return false;
	memcpy(dsa_get_address(dsa, payload), json, len);
	if (try_enqueue(kind, key, cost_usd, payload, &busy))
	{
		if (busy && worker != MyLatch)
			SetLatch(worker);
		return true;
	}
	dsa_free(dsa, payload);
	return false;
}

void
llm_pending_add(LlmEntryKind kind, const char *key, double cost_usd, const char *json)
{
	Latch	   *worker = llm_worker_latch(MyDatabaseId);
	TimestampTz give_up;
	volatile bool queued = false;

	if (worker == NULL)
	{
		write_now(json, llm_shared == NULL
				  ? "llmext is not in shared_preload_libraries."
				  : "No llmext background worker serves this database (see llmext.databases).");
		return;
	}
	if (enqueue_once(worker, kind, key, cost_usd, json))
		return;

	/*
	 * The worker itself (finishing queued requests, or running a callback)
	 * is the only one that frees places: it keeps the entry and writes it
	 * in a transaction of its own at its next turn.
	 */
	if (worker == MyLatch)
	{
		hold(json);
		return;
	}

	/*
	 * The provider has been paid by now: rather than drop the entry, wake
	 * the worker and wait for a place, in short slices that let a cancel
	 * or a shutdown through, then write it here.
	 */
	give_up = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), llm_queue_full_wait_ms);
	PG_TRY();
	{
		while (!queued)
		{
			SetLatch(worker);
			if (GetCurrentTimestamp() >= give_up)
				break;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 FULL_QUEUE_SLICE_MS, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			queued = enqueue_once(worker, kind, key, cost_usd, json);
		}
	}
	PG_CATCH();
	{
		/*
		 * Cancelled (or terminated) while waiting: the entry cannot be
		 * written in a transaction that is being rolled back, so it goes to
		 * the server log, as the worker does with an entry it gives up on.
		 */
		ereport(WARNING,
				(errmsg("llmext could not queue a %s before the statement ended",
						kind == LLM_ENTRY_CALL ? "ledger row" : "cache entry"),
				 errdetail("Entry: %s", json),
				 errhint("The queue of entries waiting for the background worker was full; consider raising llmext.queue_entries.")));
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (!queued)
		write_now(json, "The queue of entries waiting for the background worker is full.");
}

int
llm_held_count(void)
{
	return nheld;
}

const char *
llm_held_payload(int index)
{
	return held[index]->json;
}

int
llm_held_attempts(int index)
{
	return held[index]->attempts;
}

void
llm_held_release(int first, int n, bool written)
{
	if (!written)
	{
		for (int i = first; i < first + n; i++)
			held[i]->attempts++;
		return;
	}
	for (int i = first; i < first + n; i++)
		pfree(held[i]);
	memmove(&held[first], &held[first + n], (nheld - first - n) * sizeof(HeldEntry *));
	nheld -= n;
	publish_held();
}

char *
llm_pending_cache_entry(const char *key)
{
	char	   *json = NULL;
	uint64		newest = 0;
	int			found = -1;

	dsa_area   *dsa;

	if (llm_shared == NULL || llm_worker_latch(MyDatabaseId) == NULL)
		return NULL;
	dsa = llm_shared_area();	/* attach first: that takes the lock itself */
	LWLockAcquire(llm_shared->lock, LW_SHARED);
	for (int i = 0; i < llm_shared->capacity && llm_shared->cache_entries > 0; i++)
	{
		LlmPendingEntry *e = &llm_shared->entries[i];

		if (e->state != LLM_ENTRY_FREE && e->kind == LLM_ENTRY_CACHE &&
			e->dboid == MyDatabaseId && e->seq > newest && strcmp(e->key, key) == 0)
		{
			newest = e->seq;
			found = i;
		}
	}
	if (found >= 0)
		json = pstrdup(dsa_get_address(dsa, llm_shared->entries[found].payload));
	LWLockRelease(llm_shared->lock);
	return json;
}

int
llm_pending_spend(Oid roleid, Oid loginid, LlmPendingSpend **own, double *all)
{
	LlmPendingSpend *pairs;
	int			npairs = 0;

	*own = NULL;
	*all = 0;
	if (llm_shared == NULL)
		return 0;
	/* a session has few pairs of roles: a list searched in place is enough */
	pairs = palloc(sizeof(LlmPendingSpend) * llm_shared->capacity);
	LWLockAcquire(llm_shared->lock, LW_SHARED);
	for (int i = 0; i < llm_shared->capacity; i++)
	{
		LlmPendingEntry *e = &llm_shared->entries[i];
		int			p;

		if (e->state == LLM_ENTRY_FREE || e->kind != LLM_ENTRY_CALL || e->dboid != MyDatabaseId)
			continue;
		*all += e->cost_usd;
		if (e->roleid != roleid && e->loginid != loginid)
			continue;
		for (p = 0; p < npairs; p++)
			if (pairs[p].roleid == e->roleid && pairs[p].loginid == e->loginid)
				break;
		if (p == npairs)
		{
			pairs[p].roleid = e->roleid;
			pairs[p].loginid = e->loginid;
			pairs[p].cost_usd = 0;
			npairs++;
		}
		pairs[p].cost_usd += e->cost_usd;
	}
	LWLockRelease(llm_shared->lock);
	*own = pairs;
	return npairs;
}

/* Is any entry of this database up to seq still unwritten (or held by its worker)? */
static bool
unwritten_up_to(uint64 seq)
{
	bool		pending = false;

	LWLockAcquire(llm_shared->lock, LW_SHARED);
	for (int i = 0; i < LLM_MAX_WORKERS && !pending; i++)
	{
		LlmWorkerInfo *w = &llm_shared->workers[i];

		pending = w->pid != 0 && w->dboid == MyDatabaseId &&
			w->held_seq != 0 && w->held_seq <= seq;
	}
	for (int i = 0; i < llm_shared->capacity && !pending; i++)
	{
		LlmPendingEntry *e = &llm_shared->entries[i];

		pending = e->state != LLM_ENTRY_FREE && e->dboid == MyDatabaseId && e->seq <= seq;
	}
	LWLockRelease(llm_shared->lock);
	return pending;
}

bool
llm_pending_wait_written(long timeout_ms)
{
	TimestampTz give_up = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	Latch	   *worker;
	uint64		target;

	if (llm_shared == NULL || (worker = llm_worker_latch(MyDatabaseId)) == NULL)
		return true;			/* entries were written as they came */
	if (worker == MyLatch)
		return false;			/* a callback in the worker: only its next turn writes them */

	LWLockAcquire(llm_shared->lock, LW_SHARED);
	target = llm_shared->next_seq - 1;
	LWLockRelease(llm_shared->lock);

	SetLatch(worker);
	while (unwritten_up_to(target))
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), give_up);

		if (left <= 0)
			return false;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(left, 10), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return true;
}

static LlmOwnerQuery persist_query = {
	.sql = "SELECT llm._persist($1::pg_catalog.jsonb)",
	.nargs = 1,
	.argtypes = {TEXTOID},
};

void
llm_persist(const char *json_array)
{
	Datum		arg = CStringGetTextDatum(json_array);

	llm_owner_query(&persist_query, &arg, NULL, false, NULL, NULL);
}

int
llm_pending_claim(Oid dboid, int max, int *indexes)
{
	int			n = 0;

	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < llm_shared->capacity && n < max; i++)
	{
		LlmPendingEntry *e = &llm_shared->entries[i];

		if (e->state == LLM_ENTRY_FILLED && e->dboid == dboid)
		{
			e->state = LLM_ENTRY_CLAIMED;
			indexes[n++] = i;
		}
	}
	LWLockRelease(llm_shared->lock);
	return n;
}

/* A claimed entry's payload: no backend changes it while it is claimed. */
char *
llm_pending_payload(int index)
{
	return dsa_get_address(llm_shared_area(), llm_shared->entries[index].payload);
}

int
llm_pending_attempts(int index)
{
	return llm_shared->entries[index].attempts;
}

void
llm_pending_release(const int *indexes, int n, bool written)
{
	dsa_area   *dsa = llm_shared_area();

	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		LlmPendingEntry *e = &llm_shared->entries[indexes[i]];

		if (written)
		{
			if (e->kind == LLM_ENTRY_CACHE)
				llm_shared->cache_entries--;
			dsa_free(dsa, e->payload);
			e->payload = InvalidDsaPointer;
			e->state = LLM_ENTRY_FREE;
			llm_shared->used--;
		}
		else
		{
			e->attempts++;
			e->state = LLM_ENTRY_FILLED;
		}
	}
	LWLockRelease(llm_shared->lock);
}

void
llm_pending_unclaim_all(Oid dboid)
{
	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < llm_shared->capacity; i++)
	{
		LlmPendingEntry *e = &llm_shared->entries[i];

		if (e->state == LLM_ENTRY_CLAIMED && e->dboid == dboid)
			e->state = LLM_ENTRY_FILLED;
	}
	LWLockRelease(llm_shared->lock);
}

char *
llm_iso_timestamp(TimestampTz t)
{
	struct pg_tm tm;
	fsec_t		fsec;

	/* UTC, so no time zone look-up; out-of-range times cannot come from the clock */
	if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "timestamp out of range");
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
					(int) fsec);
}

/* A JSON string; most of ours need no escaping, so copy those whole. */
static void
append_json_string(StringInfo buf, const char *value)
{
	const char *p;

	for (p = value; *p; p++)
	{
		if (*p == '"' || *p == '\\' || (unsigned char) *p < 0x20)
		{
			escape_json(buf, value);
			return;
		}
	}
	appendStringInfoChar(buf, '"');
	appendBinaryStringInfo(buf, value, p - value);
	appendStringInfoChar(buf, '"');
}

static void
add_key(StringInfo buf, const char *key)
{
	if (buf->len > 1)
		appendStringInfoChar(buf, ',');
	append_json_string(buf, key);
	appendStringInfoChar(buf, ':');
}

static void
add_text(StringInfo buf, const char *key, const char *value)
{
	if (value == NULL)
		return;
	add_key(buf, key);
	append_json_string(buf, value);
}

static void
add_int(StringInfo buf, const char *key, int64 value)
{
	char		digits[MAXINT8LEN + 1];

	add_key(buf, key);
	appendBinaryStringInfo(buf, digits, pg_lltoa(value, digits));
}

/* Shortest exact text of a double (Ryu), far cheaper than printf's %g. */
static void
add_double(StringInfo buf, const char *key, double value)
{
	char		digits[DOUBLE_SHORTEST_DECIMAL_LEN];

	add_key(buf, key);
	appendBinaryStringInfo(buf, digits, double_to_shortest_decimal_buf(value, digits));
}

static void
append_hex(StringInfo buf, uint64 value)
{
	char		digits[16];
	int			n = 0;

	do
	{
		digits[n++] = "0123456789abcdef"[value & 0xf];
		value >>= 4;
	} while (value != 0);
	while (n > 0)
		appendStringInfoChar(buf, digits[--n]);
}

/* A role's name, looked up once per role and slot (acting, login). */
typedef struct RoleName
{
	Oid			role;
	char		name[NAMEDATALEN];
} RoleName;

static const char *
role_name(RoleName *cached, Oid role)
{
	if (role != cached->role)
	{
		strlcpy(cached->name, GetUserNameFromId(role, false), sizeof(cached->name));
		cached->role = role;
	}
	return cached->name;
}

/* The entry id last made by add_entry_id (three 64-bit numbers in hex). */
static char last_entry_id[64];

/* Unique across backends and server restarts, so a re-sent entry is spotted. */
static void
add_entry_id(StringInfo buf)
{
	static uint64 counter = 0;
	int			start;

	add_key(buf, "entry_id");
	appendStringInfoChar(buf, '"');
	start = buf->len;
	append_hex(buf, (uint64) MyProcPid);
	appendStringInfoChar(buf, '.');
	append_hex(buf, (uint64) MyStartTime);
	appendStringInfoChar(buf, '.');
	append_hex(buf, ++counter);
	strlcpy(last_entry_id, buf->data + start,
			Min((Size) (buf->len - start + 1), sizeof(last_entry_id)));
	appendStringInfoChar(buf, '"');
}

const char *
llm_ledger_last_entry_id(void)
{
	return last_entry_id[0] != '\0' ? last_entry_id : NULL;
}

bool		llm_keep_call_io = true;

/* The text of the last user message, when it is a string. */
static const char *
last_user_input(const cJSON *messages)
{
	const cJSON *message;
	const char *input = NULL;

	cJSON_ArrayForEach(message, messages)
	{
		const cJSON *role = cJSON_GetObjectItemCaseSensitive(message, "role");
		const cJSON *content = cJSON_GetObjectItemCaseSensitive(message, "content");

		if (cJSON_IsString(role) && strcmp(role->valuestring, "user") == 0)
			input = cJSON_IsString(content) ? content->valuestring : NULL;
	}
	return input;
}

/*
 * What llm.call_io keeps of a call (llmext.keep_call_io): the prompt's
 * variables, the last user message and the answer, each only when it takes
 * at most LLM_CALL_IO_MAX_BYTES (the entry crosses shared memory); what is
 * left out for its size is said by io_too_large.
 */
static void
add_call_io(StringInfo buf, const LlmLedgerRow *row)
{
	const char *input = row->messages ? last_user_input(row->messages) : NULL;
	bool		too_large = false;

	if (row->vars != NULL)
	{
		char	   *vars = cJSON_PrintUnformatted(row->vars);

		if (vars != NULL && strlen(vars) <= LLM_CALL_IO_MAX_BYTES)
		{
			add_key(buf, "vars");
			appendStringInfoString(buf, vars);
		}
		else
			too_large = true;
		if (vars != NULL)
			cJSON_free(vars);
	}
	if (input != NULL)
	{
		if (strlen(input) <= LLM_CALL_IO_MAX_BYTES)
			add_text(buf, "input", input);
		else
			too_large = true;
	}
	if (row->output != NULL)
	{
		if (strlen(row->output) <= LLM_CALL_IO_MAX_BYTES)
			add_text(buf, "output", row->output);
		else
			too_large = true;
	}
	if (too_large)
	{
		add_key(buf, "io_too_large");
		appendStringInfoString(buf, "true");
	}
}

/* Built by hand rather than with cJSON: this runs for every call and every hit. */
char *
llm_ledger_record(const LlmLedgerRow *row)
{
	char	   *json = llm_ledger_row_json(row);

	llm_pending_add(LLM_ENTRY_CALL, NULL, row->cost_usd, json);
	pfree(json);
	return pstrdup(last_entry_id);
}

char *
llm_ledger_row_json(const LlmLedgerRow *row)
{
	static char *database = NULL;
	static RoleName acting_name = {InvalidOid};
	static RoleName login_name = {InvalidOid};
	StringInfoData buf;

	if (database == NULL)
		database = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	add_text(&buf, "kind", "call");
	add_entry_id(&buf);
	/* microseconds since 2000-01-01 UTC: llm._persist turns it into created_at */
	add_int(&buf, "created_us", GetCurrentTimestamp());
	add_text(&buf, "role", role_name(&acting_name, GetUserId()));
	add_text(&buf, "login_role", role_name(&login_name, llm_login_role()));
	add_text(&buf, "database", database);
	add_text(&buf, "source", row->source ? row->source : "sync");
	add_text(&buf, "prompt_name", row->prompt_name);
	if (row->prompt_name != NULL)
		add_int(&buf, "prompt_version", row->prompt_version);
	add_text(&buf, "model", row->model);
	add_text(&buf, "remote_model", row->remote_model);
	add_text(&buf, "provider", row->provider);
	add_key(&buf, "cache_hit");
	appendStringInfoString(&buf, row->cache_hit ? "true" : "false");
	if (row->http_status > 0)
		add_int(&buf, "http_status", row->http_status);
	add_text(&buf, "outcome", row->error ? "error" : "ok");
	if (row->error != NULL)
		add_text(&buf, "error", pnstrdup(row->error, pg_mbcliplen(row->error, strlen(row->error),
																	 MAX_ERROR_TEXT)));
	add_int(&buf, "input_tokens", row->usage.input_tokens);
	add_int(&buf, "cached_input_tokens", row->usage.cached_input_tokens);
	if (row->usage.cache_write_tokens > 0)
		add_int(&buf, "cache_write_tokens", row->usage.cache_write_tokens);
	add_int(&buf, "output_tokens", row->usage.output_tokens);
	add_int(&buf, "reasoning_tokens", row->usage.reasoning_tokens);
	add_double(&buf, "cost_usd", row->cost_usd);
	add_double(&buf, "cost_saved_usd", row->cost_saved_usd);
	add_double(&buf, "latency_ms", row->latency_ms);
	add_text(&buf, "request_id", row->request_id);
	add_text(&buf, "fingerprint", row->fingerprint);
	if (llm_keep_call_io)
		add_call_io(&buf, row);
	appendStringInfoChar(&buf, '}');
	return buf.data;
}
