/*
 * sql_embed.c — llm_embed and llm_embed_batch: the vectors of texts, from a
 * model registered with use 'embedding', as real[].
 *
 * One call of llm_embed is one request.  llm_embed_batch cuts its inputs
 * into chunks, each one request with an "input" array: at most the model's
 * max_batch_inputs limit (default 100) inputs, and at most half of
 * llmext.max_request_bytes of text as JSON (counted as 6 bytes a byte, the
 * most an escape takes, so a chunk never outgrows the limit).  The chunks
 * run on the batch machinery of sql_batch.c (window, concurrency, retries,
 * ledger, cache: one ledger row and one cache entry per chunk).
 */
#include "llmext.h"

#include "sql/batch.h"

#include "call/call.h"
#include "call/failure.h"

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"

#define DEFAULT_MAX_BATCH_INPUTS 100

PG_FUNCTION_INFO_V1(llm_embed);
PG_FUNCTION_INFO_V1(llm_embed_batch);

/* The vector of row i of an answer, as real[]. */
static Datum
vector_datum(const LlmEmbedResult *embed, int i)
{
	Datum	   *values = palloc(sizeof(Datum) * embed->dimensions);
	const float *row = embed->vectors + (size_t) i * embed->dimensions;

	for (int j = 0; j < embed->dimensions; j++)
		values[j] = Float4GetDatum(row[j]);
	return PointerGetDatum(construct_array(values, embed->dimensions, FLOAT4OID,
										   sizeof(float4), true, TYPALIGN_INT));
}

/* llm_embed(input text, model text, options jsonb) RETURNS real[] */
Datum
llm_embed(PG_FUNCTION_ARGS)
{
	LlmCallRequest req = {0};
	LlmCallResult result;
	cJSON	   *inputs;
	char	   *input;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	llm_check_text_size(PG_GETARG_DATUM(0), "an input");
	input = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (input[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("input must not be empty"),
				 errhint("A NULL input gives NULL without calling the model.")));
	inputs = cJSON_CreateArray();
	cJSON_AddItemToArray(inputs, cJSON_CreateString(input));
	req.model_name = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	req.inputs = inputs;
	req.options = PG_ARGISNULL(2) ? NULL : llm_jsonb_to_cjson(PG_GETARG_DATUM(2));
	if (!llm_chat_call(&req, &result))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(vector_datum(&result.embed, 0));
}

/* What llm_embed_batch knows of the whole input. */
typedef struct EmbedBatch
{
	Datum	   *inputs;
	bool	   *nulls;
	int		   *chunk_start;	/* chunk c is inputs chunk_start[c] .. chunk_start[c + 1] - 1 */
} EmbedBatch;

/* What a chunk knows of its inputs, in the item's context. */
typedef struct EmbedChunk
{
	int			start;
	int			n;
	int		   *sent;			/* per input: its row in the answer, or -1 */
	char	  **errors;			/* per input: its own error, or NULL */
} EmbedChunk;

/* A chunk's request: its non-NULL, non-empty inputs; the others' rows say why. */
static void
fill_chunk(Batch *batch, BatchItem *item, Datum element)
{
	EmbedBatch *embed = batch->extra;
	int			c = DatumGetInt32(element);
	EmbedChunk *chunk = palloc0(sizeof(EmbedChunk));
	cJSON	   *inputs = cJSON_CreateArray();
	int			nsent = 0;

	chunk->start = embed->chunk_start[c];
	chunk->n = embed->chunk_start[c + 1] - chunk->start;
	chunk->sent = palloc(sizeof(int) * chunk->n);
	chunk->errors = palloc0(sizeof(char *) * chunk->n);
	for (int k = 0; k < chunk->n; k++)
	{
		int			i = chunk->start + k;
		char	   *input;

		chunk->sent[k] = -1;
		if (embed->nulls[i])
			continue;
		input = TextDatumGetCString(embed->inputs[i]);
		if (input[0] == '\0')
		{
			if (batch->abort_on_fail)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("input %d must not be empty", i + 1)));
			chunk->errors[k] = pstrdup("input must not be empty");
			continue;
		}
		cJSON_AddItemToArray(inputs, cJSON_CreateString(input));
		chunk->sent[k] = nsent++;
	}
	item->extra = chunk;
	if (nsent == 0)
		return;					/* nothing to send: every row is NULL or an error */
	item->req.model_name = batch->model;
	item->req.inputs = inputs;
	item->req.options = batch->item_options;
	item->req.source = "batch";
}

/* One row per input of the chunk, in input order. */
static void
emit_chunk(Batch *batch, BatchItem *item)
{
	EmbedChunk *chunk = item->extra;

	for (int k = 0; k < chunk->n; k++)
	{
		Datum		values[3];
		bool		isnull[3] = {false, true, true};
		const char *error = chunk->errors[k] ? chunk->errors[k]
			: chunk->sent[k] >= 0 ? item->error : NULL;

		values[0] = Int32GetDatum(chunk->start + k + 1);
		if (error != NULL)
		{
			values[2] = CStringGetTextDatum(error);
			isnull[2] = false;
		}
		else if (chunk->sent[k] >= 0)
		{
			values[1] = vector_datum(&item->result.embed, chunk->sent[k]);
			isnull[1] = false;
		}
		tuplestore_putvalues(batch->store, batch->desc, values, isnull);
	}
}

/* The model's max_batch_inputs limit, or the default. */
static int
max_batch_inputs(const char *model_name)
{
	LlmModel   *model = llm_lookup_model(model_name);
	const cJSON *limit = cJSON_GetObjectItemCaseSensitive(model->limits, "max_batch_inputs");

	if (cJSON_IsNumber(limit) && limit->valuedouble >= 1)
		return limit->valuedouble > PG_INT32_MAX ? PG_INT32_MAX : (int) limit->valuedouble;
	return DEFAULT_MAX_BATCH_INPUTS;
}

/* Cuts the inputs into chunks; returns how many. */
static int
make_chunks(EmbedBatch *embed, int n, int max_inputs)
{
	size_t		budget = (size_t) llm_max_request_bytes / 2;
	size_t		bytes = 0;
	int			nchunks = 0;
	int			count = 0;

	embed->chunk_start = palloc(sizeof(int) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		size_t		size = 0;

		if (!embed->nulls[i])
		{
			/* a single input is bounded as llm_embed's is, before it is read */
			llm_check_text_size(embed->inputs[i], "an input");
			size = (toast_raw_datum_size(embed->inputs[i]) - VARHDRSZ) * 6 + 8;
		}
		if (count == 0 || count >= max_inputs || bytes + size > budget)
		{
			embed->chunk_start[nchunks++] = i;
			count = 0;
			bytes = 0;
		}
		count++;
		bytes += size;
	}
	embed->chunk_start[nchunks] = n;
	return nchunks;
}

/*
 * llm_embed_batch(inputs text[], model text, options jsonb, concurrency int)
 * RETURNS TABLE (ord int, embedding real[], error text)
 */
Datum
llm_embed_batch(PG_FUNCTION_ARGS)
{
	Batch		batch = {0};
	EmbedBatch	embed = {0};
	int			concurrency;
	int			n;
	Datum	   *chunks;

	batch.model = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	batch.item_options = llm_batch_options(fcinfo, 2);
	concurrency = llm_batch_concurrency(fcinfo, 3);
	batch.abort_on_fail = llm_batch_abort_on_failure(batch.item_options);
	batch.item_options = llm_batch_element_options(batch.item_options);
	batch.store = llm_batch_begin_rows(fcinfo, &batch.desc);
	batch.fill = fill_chunk;
	batch.emit = emit_chunk;
	batch.extra = &embed;

	if (PG_ARGISNULL(0))
		return (Datum) 0;
	llm_batch_deconstruct(PG_GETARG_ARRAYTYPE_P(0), TEXTOID, -1, false, TYPALIGN_INT,
						  "inputs", &embed.inputs, &embed.nulls, &n);
	if (n == 0)
		return (Datum) 0;
	batch.n = make_chunks(&embed, n, max_batch_inputs(batch.model));
	/* the batch's elements are the chunks, never NULL */
	chunks = palloc(sizeof(Datum) * batch.n);
	batch.nulls = palloc0(sizeof(bool) * batch.n);
	for (int c = 0; c < batch.n; c++)
		chunks[c] = Int32GetDatum(c);
	batch.elements = chunks;
	llm_batch_run(&batch, concurrency);
	return (Datum) 0;
}
