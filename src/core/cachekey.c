/*
 * cachekey.c — canonical requests for cache keys (see cachekey.h).
 */
#include "core/cachekey.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Parameters that do not change what the model answers. */
static const char *const answer_neutral_params[] = {
	"user", "safety_identifier", "metadata", "store", "prompt_cache_key",
	"prompt_cache_retention", "service_tier", "stream_options",
};

static bool
is_answer_neutral(const char *key)
{
	for (size_t i = 0; i < sizeof(answer_neutral_params) / sizeof(answer_neutral_params[0]); i++)
		if (strcmp(key, answer_neutral_params[i]) == 0)
			return true;
	return false;
}

static int
compare_keys(const void *a, const void *b)
{
	const cJSON *x = *(const cJSON *const *) a;
	const cJSON *y = *(const cJSON *const *) b;

	return strcmp(x->string, y->string);
}

/* A deep copy whose objects list their members in key order. */
static cJSON *
sorted_copy(const cJSON *item)
{
	cJSON	   *copy;
	const cJSON *child;

	if (cJSON_IsArray(item))
	{
		copy = cJSON_CreateArray();
		cJSON_ArrayForEach(child, item)
			cJSON_AddItemToArray(copy, sorted_copy(child));
		return copy;
	}
	if (cJSON_IsObject(item))
	{
		int			n = cJSON_GetArraySize(item);
		const cJSON **members = cJSON_malloc(sizeof(cJSON *) * (n > 0 ? n : 1));
		int			i = 0;

		cJSON_ArrayForEach(child, item)
			members[i++] = child;
		qsort(members, n, sizeof(cJSON *), compare_keys);
		copy = cJSON_CreateObject();
		for (i = 0; i < n; i++)
			cJSON_AddItemToObject(copy, members[i]->string, sorted_copy(members[i]));
		cJSON_free(members);
		return copy;
	}
	return cJSON_Duplicate(item, false);
}

char *
llm_canonical_json(const cJSON *item)
{
	cJSON	   *copy = sorted_copy(item);
	char	   *text = cJSON_PrintUnformatted(copy);

	cJSON_Delete(copy);
	return text;
}

char *
llm_canonical_request(const char *provider, const char *remote_model,
					  const cJSON *messages, const cJSON *params)
{
	cJSON	   *request = cJSON_CreateObject();
	cJSON	   *kept = cJSON_CreateObject();
	const cJSON *param;
	char	   *text;

	cJSON_ArrayForEach(param, params)
	{
		if (!is_answer_neutral(param->string))
			cJSON_AddItemToObject(kept, param->string, cJSON_Duplicate(param, true));
	}
	cJSON_AddStringToObject(request, "provider", provider);
	cJSON_AddStringToObject(request, "model", remote_model);
	cJSON_AddItemToObject(request, "messages", cJSON_Duplicate(messages, true));
	cJSON_AddItemToObject(request, "params", kept);
	text = llm_canonical_json(request);
	cJSON_Delete(request);
	return text;
}

bool
llm_request_is_deterministic(const cJSON *params)
{
	const cJSON *temperature = cJSON_GetObjectItemCaseSensitive(params, "temperature");
	const cJSON *seed = cJSON_GetObjectItemCaseSensitive(params, "seed");

	/* an infinite seed is printed as null: the request would not be seeded */
	if (cJSON_IsNumber(seed) && isfinite(seed->valuedouble))
		return true;
	return cJSON_IsNumber(temperature) && temperature->valuedouble == 0;
}
