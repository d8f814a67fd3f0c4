/*
 * fuzz_error_body.c — libFuzzer target for openai_error_message
 * (src/providers/openai.c), the parser of a provider's error body, and llm_redact
 * (src/core/request.c), which takes the API key out of the message before it is
 * shown, logged or stored.
 *
 * The input is split at its first NUL byte: before it, the body; after it,
 * a second secret to redact (used only when it looks like a key: 8 to 100
 * characters of [A-Za-z0-9_.-]).  The first secret is fixed
 * ("sk-test-fake-0123456789", the fake provider's key), so the dictionary
 * and seeds can plant it, escaped or not, anywhere in the body.
 * Checked: the message is NUL-terminated and not much longer than the body
 * allows; once redacted, neither secret occurs in it.
 *
 * Build and run with test/fuzz/run.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/redact.h"
#include "providers/openai.h"

static const char fixed_secret[] = "sk-test-fake-0123456789";

static bool
key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

static bool
key_like(const char *s)
{
	size_t		len = strlen(s);

	if (len < 8 || len > 100)
		return false;
	for (const char *p = s; *p; p++)
		if (!key_char(*p))
			return false;
	return true;
}

/*
 * Does redacting secret out of any text remove every occurrence?  Yes when
 * the mask (what llm_redact puts in its place) neither contains the secret
 * nor begins or ends with a character a key may hold: then no occurrence
 * can straddle a mask.
 */
static bool
redaction_is_total(const char *secret)
{
	char	   *mask = llm_redact(secret, secret);
	size_t		n = strlen(mask);
	bool		ok = n > 0 && strstr(mask, secret) == NULL &&
		!key_char(mask[0]) && !key_char(mask[n - 1]);

	cJSON_free(mask);
	return ok;
}

static void
check_redacted(const char *message, const char *secret)
{
	char	   *out = llm_redact(message, secret);

	if (out == NULL)
		abort();
	if (strstr(out, secret) != NULL && redaction_is_total(secret))
		abort();
	cJSON_free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t		body_len = nul != NULL ? (size_t) (nul - data) : size;
	/* a copy of exactly body_len bytes, so reading past the body is caught */
	char	   *body = malloc(body_len > 0 ? body_len : 1);
	char	   *message;

	memcpy(body, data, body_len);
	message = openai_error_message(body, body_len);
	free(body);
	if (message == NULL)
		return 0;
	/* the message comes from the body, plus at most " (type ..., code ...)" */
	if (strlen(message) > body_len + 200)
		abort();
	check_redacted(message, fixed_secret);
	if (nul != NULL)
	{
		size_t		secret_len = size - body_len - 1;
		char	   *secret = malloc(secret_len + 1);

		memcpy(secret, nul + 1, secret_len);
		secret[secret_len] = '\0';
		if (key_like(secret))
			check_redacted(message, secret);
		free(secret);
	}
	cJSON_free(message);
	return 0;
}
