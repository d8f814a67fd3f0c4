/*
 * openai_embed.c — OpenAI embeddings (POST /embeddings): the request body
 * and the answer, as OpenAI-compatible servers (vLLM, Ollama, llama.cpp)
 * speak them too.
 *
 * Pure code (see request.h).
 */
#include "providers/openai.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* the largest count a double holds exactly: 2^53 */
#define LLM_MAX_TOKEN_COUNT 9007199254740992.0

/* {"model", "input": [...], "encoding_format": "float", params...} */
char *
openai_embed_request(const char *remote_model, const cJSON *inputs, const cJSON *params)
{
	cJSON	   *body = cJSON_CreateObject();
	const cJSON *param;
	char	   *text;

	cJSON_AddStringToObject(body, "model", remote_model);
	cJSON_AddItemToObject(body, "input", cJSON_Duplicate(inputs, true));
	/* the parser reads numbers; base64 would need another parser */
	if (cJSON_GetObjectItemCaseSensitive(params, "encoding_format") == NULL)
		cJSON_AddStringToObject(body, "encoding_format", "float");
	cJSON_ArrayForEach(param, params)
		cJSON_AddItemToObject(body, param->string, cJSON_Duplicate(param, true));
	text = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	return text;
}

static int64_t
token_count(const cJSON *usage, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(usage, key);

	if (!cJSON_IsNumber(item) || !(item->valuedouble >= 0))
		return 0;
	if (item->valuedouble > LLM_MAX_TOKEN_COUNT)
		return (int64_t) LLM_MAX_TOKEN_COUNT;
	return (int64_t) item->valuedouble;
}

/* Reads one data item into its row of result; false with a sentence in err. */
static bool
read_item(const cJSON *item, int position, LlmEmbedResult *result, bool *seen,
		  char *err, size_t errlen)
{
	const cJSON *index = cJSON_GetObjectItemCaseSensitive(item, "index");
	const cJSON *embedding = cJSON_GetObjectItemCaseSensitive(item, "embedding");
	const cJSON *number;
	int			i;
	int			j = 0;

	/* an answer without indexes lists the vectors in input order */
	if (index == NULL)
		i = position;
	else if (cJSON_IsNumber(index) && index->valuedouble >= 0 &&
			 index->valuedouble < result->n && index->valuedouble == (int) index->valuedouble)
		i = (int) index->valuedouble;
	else
	{
		snprintf(err, errlen, "data[%d].index is not the index of an input (0 to %d)",
				 position, result->n - 1);
		return false;
	}
	if (seen[i])
	{
		snprintf(err, errlen, "input %d has more than one embedding", i);
		return false;
	}
	seen[i] = true;
	if (!cJSON_IsArray(embedding) || cJSON_GetArraySize(embedding) == 0)
	{
		snprintf(err, errlen, "data[%d].embedding is not a non-empty array of numbers", position);
		return false;
	}
	if (result->vectors == NULL)
	{
		result->dimensions = cJSON_GetArraySize(embedding);
		result->vectors = cJSON_malloc(sizeof(float) * (size_t) result->n * result->dimensions);
	}
	else if (cJSON_GetArraySize(embedding) != result->dimensions)
	{
		snprintf(err, errlen, "the embeddings differ in length (%d and %d)",
				 result->dimensions, cJSON_GetArraySize(embedding));
		return false;
	}
	cJSON_ArrayForEach(number, embedding)
	{
		/* a real must hold it: NaN, infinities and 1e300 are refused */
		if (!cJSON_IsNumber(number) || !isfinite((float) number->valuedouble))
		{
			snprintf(err, errlen, "data[%d].embedding[%d] is not a finite number", position, j);
			return false;
		}
		result->vectors[(size_t) i * result->dimensions + j++] = (float) number->valuedouble;
	}
	return true;
}

bool
openai_parse_embed_response(const char *body, size_t len, int ninputs,
							LlmEmbedResult *result, char *err, size_t errlen)
{
	cJSON	   *root;
	const cJSON *data;
	const cJSON *item;
	const cJSON *usage;
	const cJSON *model;
	bool	   *seen;
	bool		ok = true;
	int			position = 0;

	memset(result, 0, sizeof(*result));
	result->n = ninputs;
	root = cJSON_ParseWithLength(body, len);
	if (root == NULL)
	{
		snprintf(err, errlen, "the response body is not valid JSON");
		return false;
	}
	data = cJSON_GetObjectItemCaseSensitive(root, "data");
	if (!cJSON_IsArray(data))
	{
		snprintf(err, errlen, "the response has no data array");
		cJSON_Delete(root);
		return false;
	}
	if (cJSON_GetArraySize(data) != ninputs)
	{
		snprintf(err, errlen, "the response has %d embeddings for %d inputs",
				 cJSON_GetArraySize(data), ninputs);
		cJSON_Delete(root);
		return false;
	}
	seen = cJSON_malloc(ninputs > 0 ? ninputs : 1);
	memset(seen, 0, ninputs > 0 ? ninputs : 1);
	cJSON_ArrayForEach(item, data)
	{
		if (!read_item(item, position++, result, seen, err, errlen))
		{
			ok = false;
			break;
		}
	}
	cJSON_free(seen);
	if (!ok)
	{
		cJSON_free(result->vectors);
		result->vectors = NULL;
		cJSON_Delete(root);
		return false;
	}
	model = cJSON_GetObjectItemCaseSensitive(root, "model");
	if (cJSON_IsString(model))
		result->remote_model = llm_strdup(model->valuestring);
	usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
	if (cJSON_IsObject(usage))
	{
		result->usage.present = true;
		result->usage.input_tokens = token_count(usage, "prompt_tokens");
	}
	cJSON_Delete(root);
	return true;
}
