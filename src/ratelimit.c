/*
 * ratelimit.c — shared per-provider token buckets (see ratelimit.h).
 */
#include "llmext.h"

#include "ratelimit.h"

#include "bucket.h"
#include "shmem.h"
#include "storage/ipc.h"
#include "utils/timestamp.h"

#define CONCURRENCY_WAIT_MS 10

static LlmRateSlot local_slots[LLM_MAX_RATE_SLOTS];

/*
 * What this process has in flight, per provider, so that a process that
 * exits with requests in flight gives their places back.
 */
typedef struct OwnInFlight
{
	char		provider[64];
	int			count;
} OwnInFlight;

static OwnInFlight own[LLM_MAX_RATE_SLOTS];
static bool exit_hook_installed = false;

static int
option_int(const LlmModel *model, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(model->provider_options, key);

	return cJSON_IsNumber(item) && item->valuedouble >= 1 ? (int) item->valuedouble : 0;
}

static int64
now_ms(void)
{
	return (int64) (GetCurrentTimestamp() / 1000);
}

/* The provider's slot, claimed on first use; NULL if all are taken. */
static LlmRateSlot *
slot_for(const char *provider)
{
	LlmRateSlot *slots = llm_shared ? llm_shared->rates : local_slots;
	LlmRateSlot *free_slot = NULL;

	for (int i = 0; i < LLM_MAX_RATE_SLOTS; i++)
	{
		if (slots[i].provider[0] == '\0')
		{
			if (free_slot == NULL)
				free_slot = &slots[i];
		}
		else if (strcmp(slots[i].provider, provider) == 0)
			return &slots[i];
	}
	if (free_slot != NULL)
	{
		memset(free_slot, 0, sizeof(*free_slot));
		strlcpy(free_slot->provider, provider, sizeof(free_slot->provider));
	}
	return free_slot;
}

static OwnInFlight *
own_for(const char *provider, bool create)
{
	OwnInFlight *free_entry = NULL;

	for (int i = 0; i < LLM_MAX_RATE_SLOTS; i++)
	{
		if (own[i].provider[0] == '\0')
			free_entry = free_entry ? free_entry : &own[i];
		else if (strcmp(own[i].provider, provider) == 0)
			return &own[i];
	}
	if (create && free_entry != NULL)
		strlcpy(free_entry->provider, provider, sizeof(free_entry->provider));
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

		if (own[i].provider[0] == '\0' || own[i].count == 0)
			continue;
		slot = slot_for(own[i].provider);
		if (slot != NULL)
			slot->in_flight = Max(0, slot->in_flight - own[i].count);
		own[i].count = 0;
	}
	LWLockRelease(llm_shared->lock);
}

double
llm_rate_admit(const LlmModel *model, int64 tokens)
{
	int			rpm = option_int(model, "requests_per_minute");
	int			tpm = option_int(model, "tokens_per_minute");
	int			max_concurrency = option_int(model, "max_concurrency");
	LlmRateSlot *slot;
	double		wait = 0;
	int64		now = now_ms();

	if (rpm == 0 && tpm == 0 && max_concurrency == 0)
		return 0;
	if (max_concurrency > 0 && !exit_hook_installed)
	{
		before_shmem_exit(give_back_on_exit, (Datum) 0);
		exit_hook_installed = true;
	}
	if (llm_shared)
		LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	slot = slot_for(model->provider);
	if (slot != NULL)
	{
		if (rpm > 0)
		{
			llm_bucket_refill(&slot->requests, rpm, now);
			wait = Max(wait, llm_bucket_wait_ms(&slot->requests, rpm, 1));
		}
		if (tpm > 0)
		{
			llm_bucket_refill(&slot->tokens, tpm, now);
			wait = Max(wait, llm_bucket_wait_ms(&slot->tokens, tpm, (double) tokens));
		}
		if (max_concurrency > 0 && slot->in_flight >= max_concurrency)
			wait = Max(wait, CONCURRENCY_WAIT_MS);
		if (wait == 0)
		{
			if (rpm > 0)
				slot->requests.level -= 1;
			if (tpm > 0)
				slot->tokens.level -= Min((double) tokens, (double) tpm);
			if (max_concurrency > 0)
			{
				OwnInFlight *mine = own_for(model->provider, true);

				slot->in_flight++;
				if (mine != NULL)
					mine->count++;
			}
		}
	}
	if (llm_shared)
		LWLockRelease(llm_shared->lock);
	return wait;
}

void
llm_rate_release(const LlmModel *model)
{
	OwnInFlight *mine;
	LlmRateSlot *slot;

	if (option_int(model, "max_concurrency") == 0)
		return;
	mine = own_for(model->provider, false);
	if (mine == NULL || mine->count == 0)
		return;				/* not admitted by this process */
	if (llm_shared)
		LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	slot = slot_for(model->provider);
	if (slot != NULL && slot->in_flight > 0)
		slot->in_flight--;
	mine->count--;
	if (llm_shared)
		LWLockRelease(llm_shared->lock);
}

void
llm_rate_settle(const LlmModel *model, int64 estimated, int64 used)
{
	int			tpm = option_int(model, "tokens_per_minute");
	LlmRateSlot *slot;

	if (tpm == 0 || used == estimated)
		return;
	if (llm_shared)
		LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	slot = slot_for(model->provider);
	if (slot != NULL)
		slot->tokens.level -= (double) (used - Min(estimated, (int64) tpm));
	if (llm_shared)
		LWLockRelease(llm_shared->lock);
}

int64
llm_rate_estimate(const char *body, const cJSON *params)
{
	const cJSON *max = cJSON_GetObjectItemCaseSensitive(params, "max_completion_tokens");

	if (!cJSON_IsNumber(max))
		max = cJSON_GetObjectItemCaseSensitive(params, "max_tokens");
	/* about four bytes a token, as providers' own estimates go */
	return (int64) (strlen(body) / 4) + (cJSON_IsNumber(max) ? (int64) max->valuedouble : 0);
}
