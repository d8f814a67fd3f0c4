/*
 * ratelimit.c — shared per-provider and per-model token buckets (see ratelimit.h).
 */
#include "llmext.h"

#include "store/ratelimit.h"

#include "core/bucket.h"
#include "store/shmem.h"

#include "storage/ipc.h"
#include "utils/timestamp.h"

#define CONCURRENCY_WAIT_MS 10

static LlmRateSlot local_slots[LLM_MAX_RATE_SLOTS];

/*
 * What this process has in flight, per scope, so that a process that exits
 * with requests in flight gives their places back.
 */
typedef struct OwnInFlight
{
	char		key[LLM_RATE_KEY_LEN];
	int			count;
} OwnInFlight;

static OwnInFlight own[LLM_MAX_RATE_SLOTS];
static bool exit_hook_installed = false;

/*
 * Limits apply at two scopes, each with its own buckets: the provider (its
 * options) and the model (its limits).  A request goes when both allow it.
 */
typedef struct RateScope
{
	char		key[LLM_RATE_KEY_LEN];
	int			rpm;
	int			tpm;
	int			max_concurrency;
} RateScope;

static int
option_int(const cJSON *options, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(options, key);

	return cJSON_IsNumber(item) && item->valuedouble >= 1 ? (int) item->valuedouble : 0;
}

/* The model's scopes that set any limit, in *scopes; how many. */
static int
scopes_of(const LlmModel *model, RateScope *scopes)
{
	const cJSON *sources[2] = {model->provider_options, model->limits};
	int			n = 0;

	for (int i = 0; i < 2; i++)
	{
		RateScope  *scope = &scopes[n];

		scope->rpm = option_int(sources[i], "requests_per_minute");
		scope->tpm = option_int(sources[i], "tokens_per_minute");
		scope->max_concurrency = option_int(sources[i], "max_concurrency");
		if (scope->rpm == 0 && scope->tpm == 0 && scope->max_concurrency == 0)
			continue;
		/* provider names cannot contain '/', so the two kinds never meet */
		if (i == 0)
			snprintf(scope->key, sizeof(scope->key), "%s", model->provider);
		else
			snprintf(scope->key, sizeof(scope->key), "%s/%s", model->provider, model->name);
		n++;
	}
	return n;
}

static int64
now_ms(void)
{
	return (int64) (GetCurrentTimestamp() / 1000);
}

/*
 * A slot that holds nothing a fresh one would not: no request in flight,
 * and its buckets full again.  Its scope starts over as new if it comes back.
 */
static bool
slot_idle(LlmRateSlot *slot, int64 now)
{
	if (slot->in_flight > 0)
		return false;
	if (slot->rpm > 0)
	{
		llm_bucket_refill(&slot->requests, slot->rpm, now);
		if (slot->requests.level < slot->rpm)
			return false;
	}
	if (slot->tpm > 0)
	{
		llm_bucket_refill(&slot->tokens, slot->tpm, now);
		if (slot->tokens.level < slot->tpm)
			return false;
	}
	return true;
}

/*
 * The scope's slot; with create, claimed on first use, taking an idle
 * one's place when none is free.  NULL if there is none.
 */
static LlmRateSlot *
slot_for(const char *key, bool create)
{
	LlmRateSlot *slots = llm_shared ? llm_shared->rates : local_slots;
	LlmRateSlot *free_slot = NULL;

	for (int i = 0; i < LLM_MAX_RATE_SLOTS; i++)
	{
		if (slots[i].key[0] == '\0')
		{
			if (free_slot == NULL)
				free_slot = &slots[i];
		}
		else if (strcmp(slots[i].key, key) == 0)
			return &slots[i];
	}
	if (!create)
		return NULL;
	for (int i = 0; free_slot == NULL && i < LLM_MAX_RATE_SLOTS; i++)
		if (slot_idle(&slots[i], now_ms()))
			free_slot = &slots[i];
	if (free_slot != NULL)
	{
		memset(free_slot, 0, sizeof(*free_slot));
		strlcpy(free_slot->key, key, sizeof(free_slot->key));
	}
	return free_slot;
}

static OwnInFlight *
own_for(const char *key, bool create)
{
	OwnInFlight *free_entry = NULL;

	for (int i = 0; i < LLM_MAX_RATE_SLOTS; i++)
	{
		if (own[i].key[0] != '\0' && strcmp(own[i].key, key) == 0)
			return &own[i];
		/* an entry with nothing in flight holds nothing: it may be reused */
		if (free_entry == NULL && own[i].count == 0)
			free_entry = &own[i];
	}
	if (create && free_entry != NULL)
		strlcpy(free_entry->key, key, sizeof(free_entry->key));
	return create ? free_entry : NULL;
}

static void
give_back_on_exit(int code, Datum arg)
{
	if (llm_shared == NULL)
		return;
	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < LLM_MAX_RATE_SLOTS; i++)
	{
		LlmRateSlot *slot;

		if (own[i].key[0] == '\0' || own[i].count == 0)
			continue;
		slot = slot_for(own[i].key, false);
		if (slot != NULL)
			slot->in_flight = Max(0, slot->in_flight - own[i].count);
		own[i].count = 0;
	}
	LWLockRelease(llm_shared->lock);
}

/* How long the scope's limits hold back a request of tokens tokens. */
static double
scope_wait_ms(const RateScope *scope, LlmRateSlot *slot, int64 tokens, int64 now)
{
	double		wait = 0;

	if (scope->rpm > 0)
	{
		llm_bucket_refill(&slot->requests, scope->rpm, now);
		wait = Max(wait, llm_bucket_wait_ms(&slot->requests, scope->rpm, 1));
	}
	if (scope->tpm > 0)
	{
		llm_bucket_refill(&slot->tokens, scope->tpm, now);
		wait = Max(wait, llm_bucket_wait_ms(&slot->tokens, scope->tpm, (double) tokens));
	}
	if (scope->max_concurrency > 0 && slot->in_flight >= scope->max_concurrency)
		wait = Max(wait, CONCURRENCY_WAIT_MS);
	return wait;
}

static void
scope_take(const RateScope *scope, LlmRateSlot *slot, int64 tokens)
{
	if (scope->rpm > 0)
		slot->requests.level -= 1;
	if (scope->tpm > 0)
		slot->tokens.level -= Min((double) tokens, (double) scope->tpm);
	if (scope->max_concurrency > 0)
	{
		OwnInFlight *mine = own_for(scope->key, true);

		/*
		 * Counted only where this process can give it back (at its exit
		 * too): with every entry in flight, the request is not counted.
		 */
		if (mine != NULL)
		{
			slot->in_flight++;
			mine->count++;
		}
	}
}

double
llm_rate_admit(const LlmModel *model, int64 tokens)
{
	RateScope	scopes[2];
	LlmRateSlot *slots[2];
	int			n = scopes_of(model, scopes);
	double		wait = 0;
	int64		now = now_ms();

	if (n == 0)
		return 0;
	if (!exit_hook_installed)
	{
		before_shmem_exit(give_back_on_exit, (Datum) 0);
		exit_hook_installed = true;
	}
	if (llm_shared)
		LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		slots[i] = slot_for(scopes[i].key, true);
		if (slots[i] == NULL)
			continue;
		/* the limits in force, for slot_idle */
		slots[i]->rpm = scopes[i].rpm;
		slots[i]->tpm = scopes[i].tpm;
		wait = Max(wait, scope_wait_ms(&scopes[i], slots[i], tokens, now));
	}
	if (wait == 0)
		for (int i = 0; i < n; i++)
			if (slots[i] != NULL)
				scope_take(&scopes[i], slots[i], tokens);
	if (llm_shared)
		LWLockRelease(llm_shared->lock);
	return wait;
}

void
llm_rate_release(const LlmModel *model)
{
	RateScope	scopes[2];
	int			n = scopes_of(model, scopes);

	if (llm_shared)
		LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		OwnInFlight *mine;
		LlmRateSlot *slot;

		if (scopes[i].max_concurrency == 0)
			continue;
		mine = own_for(scopes[i].key, false);
		if (mine == NULL || mine->count == 0)
			continue;			/* not admitted by this process */
		slot = slot_for(scopes[i].key, false);
		if (slot != NULL && slot->in_flight > 0)
			slot->in_flight--;
		mine->count--;
	}
	if (llm_shared)
		LWLockRelease(llm_shared->lock);
}

void
llm_rate_settle(const LlmModel *model, int64 estimated, int64 used)
{
	RateScope	scopes[2];
	int			n = scopes_of(model, scopes);

	if (n == 0 || used == estimated)
		return;
	if (llm_shared)
		LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		LlmRateSlot *slot;

		if (scopes[i].tpm == 0)
			continue;
		slot = slot_for(scopes[i].key, false);
		if (slot != NULL)
			slot->tokens.level -= (double) (used - Min(estimated, (int64) scopes[i].tpm));
	}
	if (llm_shared)
		LWLockRelease(llm_shared->lock);
}

int64
llm_rate_estimate(const LlmProviderRoutine *routine, const char *body, const cJSON *params)
{
	double		max = routine->max_output_tokens(params);

	/* about four bytes a token, as providers' own estimates go */
	return (int64) (strlen(body) / 4) + (max > 0 ? (int64) Min(max, (double) PG_INT32_MAX) : 0);
}
