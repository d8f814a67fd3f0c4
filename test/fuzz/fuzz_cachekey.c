/*
 * fuzz_cachekey.c — libFuzzer target for the canonical request
 * (src/core/cachekey.c), whose SHA-256 is the cache key and the ledger
 * fingerprint.  Its inputs are a caller's options and messages: JSON from
 * SQL, so arbitrary.
 *
 * The input is parsed as JSON (anything else is skipped).  Checked:
 *  - the canonical text parses back, and canonicalising that gives the
 *    same text (idempotence);
 *  - when no object has a key twice, listing every object's members in
 *    reverse order changes neither the canonical text nor whether the
 *    request is deterministic (key order never changes a key);
 *  - the canonical request, with the input as options (when an object) and
 *    its "messages" member (or the input itself) as messages, is a JSON
 *    object that parses back, is canonical, and does not change when
 *    answer-neutral options (user, metadata) are added;
 *  - a deterministic request stays deterministic once canonicalised.
 *
 * Build and run with test/fuzz/run.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cachekey.h"

static bool
has_duplicate_keys(const cJSON *item)
{
	const cJSON *child;

	if (cJSON_IsObject(item))
	{
		cJSON_ArrayForEach(child, item)
		{
			for (const cJSON *other = child->next; other != NULL; other = other->next)
				if (strcmp(child->string, other->string) == 0)
					return true;
		}
	}
	cJSON_ArrayForEach(child, item)
		if (has_duplicate_keys(child))
		return true;
	return false;
}

/* A deep copy whose objects list their members in reverse order. */
static cJSON *
reversed_copy(const cJSON *item)
{
	cJSON	   *copy;
	const cJSON *child;

	if (cJSON_IsArray(item))
	{
		copy = cJSON_CreateArray();
		cJSON_ArrayForEach(child, item)
			cJSON_AddItemToArray(copy, reversed_copy(child));
		return copy;
	}
	if (cJSON_IsObject(item))
	{
		int			n = cJSON_GetArraySize(item);
		const cJSON **members = malloc(sizeof(cJSON *) * (n > 0 ? n : 1));
		int			i = 0;

		cJSON_ArrayForEach(child, item)
			members[i++] = child;
		copy = cJSON_CreateObject();
		while (i-- > 0)
			cJSON_AddItemToObject(copy, members[i]->string, reversed_copy(members[i]));
		free(members);
		return copy;
	}
	return cJSON_Duplicate(item, false);
}

/* canonical(parse(text)) == text */
static void
check_canonical_text(const char *text)
{
	cJSON	   *again = cJSON_Parse(text);
	char	   *text2;

	if (again == NULL)
		abort();
	text2 = llm_canonical_json(again);
	if (text2 == NULL || strcmp(text, text2) != 0)
		abort();
	cJSON_free(text2);
	cJSON_Delete(again);
}

static void
check_request(const cJSON *input)
{
	const cJSON *params = cJSON_IsObject(input) ? input : NULL;
	const cJSON *messages = cJSON_GetObjectItemCaseSensitive(input, "messages");
	char	   *request;
	cJSON	   *parsed;
	cJSON	   *more;
	char	   *request2;

	if (messages == NULL)
		messages = input;
	request = llm_canonical_request("openai", "gpt-4o-mini", messages, params);
	if (request == NULL)
		abort();
	parsed = cJSON_Parse(request);
	if (!cJSON_IsObject(parsed))
		abort();
	cJSON_Delete(parsed);
	check_canonical_text(request);

	/* answer-neutral options never change the key */
	more = params != NULL ? cJSON_Duplicate(params, true) : cJSON_CreateObject();
	cJSON_AddStringToObject(more, "user", "someone-else");
	cJSON_AddItemToObject(more, "metadata", cJSON_CreateObject());
	if (!cJSON_HasObjectItem(params, "user") && !cJSON_HasObjectItem(params, "metadata"))
	{
		request2 = llm_canonical_request("openai", "gpt-4o-mini", messages, more);
		if (request2 == NULL || strcmp(request, request2) != 0)
			abort();
		cJSON_free(request2);
	}
	/* but the provider and the model do */
	request2 = llm_canonical_request("openai2", "gpt-4o-mini", messages, params);
	if (strcmp(request, request2) == 0)
		abort();
	cJSON_free(request2);
	cJSON_Delete(more);
	cJSON_free(request);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cJSON	   *input = cJSON_ParseWithLength((const char *) data, size);
	char	   *text;
	bool		deterministic;

	if (input == NULL)
		return 0;
	text = llm_canonical_json(input);
	if (text == NULL)
		abort();
	check_canonical_text(text);

	deterministic = llm_request_is_deterministic(input);
	{
		cJSON	   *canon = cJSON_Parse(text);

		if (deterministic && !llm_request_is_deterministic(canon))
			abort();
		cJSON_Delete(canon);
	}

	if (!has_duplicate_keys(input))
	{
		cJSON	   *reversed = reversed_copy(input);
		char	   *text2 = llm_canonical_json(reversed);

		if (text2 == NULL || strcmp(text, text2) != 0)
			abort();
		if (llm_request_is_deterministic(reversed) != deterministic)
			abort();
		cJSON_free(text2);
		cJSON_Delete(reversed);
	}

	check_request(input);

	cJSON_free(text);
	cJSON_Delete(input);
	return 0;
}
