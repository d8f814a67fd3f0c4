/*
 * provider.c — the table of provider kinds (see provider.h).
 *
 * Pure code.
 */
#include "providers/provider.h"

#include <string.h>

static const LlmProviderRoutine *const kinds[] = {
	&openai_routine,
};

const LlmProviderRoutine *
llm_provider_routine(const char *kind)
{
	if (kind == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(kinds[i]->kind, kind) == 0)
			return kinds[i];
	return NULL;
}
