/*
 * fuzz_chat_response.c — libFuzzer target for the chat response parsers of
 * every provider kind (openai_parse_chat_response, src/providers/openai.c;
 * anthropic_parse_chat_response, src/providers/anthropic.c): the body of a
 * 2xx answer, which comes from the network (a provider, a proxy, or whoever
 * answers at base_url).  Each input goes through both parsers.
 *
 * The whole input is the body.  Its length decides the size of the error
 * buffer, so that short buffers (messages cut short) are exercised too.
 * Checked: a failure leaves a NUL-terminated message and an empty result; a
 * success has non-negative token counts, strings that are NUL-terminated,
 * and tool calls that are an array; the result is freed (LeakSanitizer
 * runs at exit).
 *
 * Build and run with test/fuzz/run.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "providers/anthropic.h"
#include "providers/openai.h"

static void
check_string(const char *s)
{
	/* reading it all is the check: ASan reports any overrun */
	if (s != NULL && strlen(s) > (size_t) 1 << 30)
		abort();
}

typedef bool (*ChatParser) (const char *body, size_t len, LlmChatResult *result,
							char *err, size_t errlen);

static void
check_parser(ChatParser parse, const uint8_t *data, size_t size)
{
	LlmChatResult result;
	char		err[512];
	size_t		errlen = size % 3 == 0 ? 1 + size % 40 : sizeof(err);
	/* a copy of exactly size bytes, so reading past the body is caught */
	char	   *body = malloc(size > 0 ? size : 1);

	memcpy(body, data, size);
	if (!parse(body, size, &result, err, errlen))
	{
		if (strnlen(err, errlen) == errlen)
			abort();
		if (result.content != NULL || result.tool_calls != NULL || result.usage.present)
			abort();
		llm_chat_result_free(&result);
		free(body);
		return;
	}
	check_string(result.content);
	check_string(result.finish_reason);
	check_string(result.remote_model);
	check_string(result.response_id);
	check_string(result.refusal);
	if (result.tool_calls != NULL && !cJSON_IsArray(result.tool_calls))
		abort();
	if (result.usage.input_tokens < 0 || result.usage.output_tokens < 0 ||
		result.usage.cached_input_tokens < 0 || result.usage.reasoning_tokens < 0 ||
		result.usage.cache_write_tokens < 0)
		abort();
	if (!result.usage.present &&
		(result.usage.input_tokens != 0 || result.usage.output_tokens != 0))
		abort();
	llm_chat_result_free(&result);
	free(body);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_parser(openai_parse_chat_response, data, size);
	check_parser(anthropic_parse_chat_response, data, size);
	return 0;
}
