/*
 * redact.c — keeping a provider's key out of what llmext shows and stores:
 * redaction of texts, excerpts, chat results and JSON.
 *
 * Pure code (see redact.h).
 */
#include "core/redact.h"

#include <string.h>

static const char redact_mask[] = "[redacted]";

#define MASK_LEN (sizeof(redact_mask) - 1)

char *
llm_redact(const char *text, const char *secret)
{
	size_t		secret_len;
	size_t		count = 0;
	const char *p;
	char	   *out;
	char	   *o;

	if (text == NULL)
		return NULL;
	if (secret == NULL || secret[0] == '\0')
		return llm_strdup(text);
	secret_len = strlen(secret);
	for (p = strstr(text, secret); p != NULL; p = strstr(p + secret_len, secret))
		count++;
	out = cJSON_malloc(strlen(text) + count * MASK_LEN + 1);
	o = out;
	while ((p = strstr(text, secret)) != NULL)
	{
		memcpy(o, text, p - text);
		o += p - text;
		memcpy(o, redact_mask, MASK_LEN);
		o += MASK_LEN;
		text = p + secret_len;
	}
	strcpy(o, text);
	return out;
}

char *
llm_redact_cut(const char *text, size_t len, const char *secret,
			   size_t max_bytes, bool printable)
{
	size_t		secret_len = secret != NULL ? strlen(secret) : 0;
	size_t		keep = len < max_bytes ? len : max_bytes;
	size_t		i = 0;
	size_t		o = 0;
	size_t		tail_start = 0; /* where the text after the last mask starts */
	bool		cut = false;
	char	   *out;

	if (text == NULL)
		return NULL;

	/*
	 * Room for: the kept bytes, a mask for every key they may hold (a mask
	 * may be longer than the key), one mask for a trailing prefix, "...".
	 */
	out = cJSON_malloc(keep + (secret_len > 0 ? (keep / secret_len + 1) * MASK_LEN : 0) +
					   MASK_LEN + 4);
	while (i < len)
	{
		unsigned char c;

		if (o >= max_bytes)
		{
			cut = true;
			break;
		}
		/* the key is redacted before the cut, so that the cut never splits it */
		if (secret_len > 0 && len - i >= secret_len &&
			memcmp(text + i, secret, secret_len) == 0)
		{
			memcpy(out + o, redact_mask, MASK_LEN);
			o += MASK_LEN;
			i += secret_len;
			tail_start = o;
			continue;
		}
		c = (unsigned char) text[i++];
		out[o++] = (printable && (c < 0x20 || c >= 0x7f)) ? ' ' : (char) c;
	}

	/* a cut inside a UTF-8 character drops its first bytes too */
	if (cut && !printable)
	{
		while (o > tail_start && ((unsigned char) text[i] & 0xC0) == 0x80)
		{
			o--;
			i--;
		}
	}

	/*
	 * The text may end inside the key: because we cut it, or because the
	 * provider (or a buffer) did.  Mask the longest prefix of the key that
	 * ends the text, if it is long enough to say something.
	 */
	if (secret_len > LLM_REDACT_MIN_PREFIX)
	{
		size_t		k = o - tail_start;

		if (k > secret_len - 1)
			k = secret_len - 1;
		for (; k >= LLM_REDACT_MIN_PREFIX; k--)
		{
			if (memcmp(out + o - k, secret, k) == 0)
			{
				o -= k;
				memcpy(out + o, redact_mask, MASK_LEN);
				o += MASK_LEN;
				break;
			}
		}
	}
	if (cut)
	{
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

static void
replace_string(char **field, char *value)
{
	cJSON_free(*field);
	*field = value;
}

/* An id or name the provider chose: redacted, trailing prefix included. */
static char *
redact_name(const char *text, const char *secret)
{
	return text != NULL ? llm_redact_cut(text, strlen(text), secret, SIZE_MAX, false) : NULL;
}

void
llm_chat_result_redact(LlmChatResult *result, const char *secret)
{
	if (secret == NULL || secret[0] == '\0')
		return;
	replace_string(&result->content, llm_redact(result->content, secret));
	replace_string(&result->refusal, llm_redact(result->refusal, secret));
	replace_string(&result->finish_reason, redact_name(result->finish_reason, secret));
	replace_string(&result->remote_model, redact_name(result->remote_model, secret));
	replace_string(&result->response_id, redact_name(result->response_id, secret));
	llm_json_redact(result->tool_calls, secret);
}

void
llm_json_redact(cJSON *json, const char *secret)
{
	cJSON	   *child;

	if (json == NULL || secret == NULL || secret[0] == '\0')
		return;
	if (json->string != NULL && !(json->type & cJSON_StringIsConst) &&
		strstr(json->string, secret) != NULL)
		replace_string(&json->string, llm_redact(json->string, secret));
	if (cJSON_IsString(json) && json->valuestring != NULL &&
		strstr(json->valuestring, secret) != NULL)
		replace_string(&json->valuestring, llm_redact(json->valuestring, secret));
	/* cJSON_Parse nests at most CJSON_NESTING_LIMIT deep: bounded recursion */
	for (child = json->child; child != NULL; child = child->next)
		llm_json_redact(child, secret);
}
