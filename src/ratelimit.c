/*
 * ratelimit.c — shared per-provider token buckets (see ratelimit.h).
 */
#include "llmext.h"

#include "ratelimit.h"

#include "bucket.h"
#include "shmem.h"
#include "utils/timestamp.h"

static LlmRateSlot local_slots[LLM_MAX_RATE_SLOTS];

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

double
llm_rate_admit(const LlmModel *model, int64 tokens)
{
	int			rpm = option_int(model, "requests_per_minute");
	int			tpm = option_int(model, "tokens_per_minute");
	LlmRateSlot *slot;
	double		wait = 0;
	int64		now = now_ms();

	if (rpm == 0 && tpm == 0)
		return 0;
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
		if (wait == 0)
		{
			if (rpm > 0)
				slot->requests.level -= 1;
			if (tpm > 0)
				slot->tokens.level -= Min((double) tokens, (double) tpm);
		}
	}
	if (llm_shared)
		LWLockRelease(llm_shared->lock);
	return wait;
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
