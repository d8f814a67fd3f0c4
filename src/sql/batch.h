/*
 * batch.h — the batch machinery of sql_batch.c (see there), shared by the
 * functions that run many calls from one statement: llm_complete_batch,
 * llm_complete_prompt_batch and llm_embed_batch.  An "element" is what one
 * request is made of: a prompt, a prompt's vars, or a chunk of inputs to
 * embed.
 */
#ifndef LLMEXT_SQL_BATCH_H
#define LLMEXT_SQL_BATCH_H

#include "postgres.h"

#include "call/call.h"
#include "net/engine.h"

#include "fmgr.h"
#include "utils/array.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#define DEFAULT_CONCURRENCY 8
#define MAX_CONCURRENCY 1024

typedef struct BatchItem
{
	int			ord;			/* 0-based position in the input */
	MemoryContext context;		/* all of the item's memory; NULL: slot free */
	LlmCallRequest req;
	LlmCallResult result;
	LlmPreparedCall *call;		/* made when its turn comes */
	bool		done;			/* its row can be written */
	bool		in_flight;		/* a transfer is running for it */
	int			attempts;
	TimestampTz retry_at;		/* 0: not waiting to be retried */
	char	   *error;			/* the row's error text */
	void	   *extra;			/* the caller's own, in the item's context */
} BatchItem;

typedef struct Batch Batch;

/* Fills item->req for input element i (or sets item->error, or leaves messages NULL). */
typedef void (*BatchFill) (Batch *batch, BatchItem *item, Datum element);
typedef void (*BatchEmit) (Batch *batch, BatchItem *item);

struct Batch
{
	int			n;
	Datum	   *elements;
	bool	   *nulls;
	BatchFill	fill;
	bool		abort_on_fail;
	cJSON	   *item_options;
	/* writes an item's rows, in its context; NULL: llm_complete_batch's one row */
	BatchEmit	emit;
	void	   *extra;			/* the caller's own state */
	/* llm_complete_batch */
	char	   *model;
	char	   *system;
	/* llm_complete_prompt_batch */
	char	   *name;
	const int  *version;
	char	   *label;
	/* the window */
	BatchItem  *slots;
	int			window;
	int			concurrency;	/* transfers at once: window, or the provider's limit */
	int			max_attempts;
	bool		limits_known;	/* from the first item that calls a model */
	int			next;			/* next item to prepare */
	int			emitted;		/* next item whose row is to be written */
	MemoryContext items_context;
	LlmEngine  *engine;
	Tuplestorestate *store;
	TupleDesc	desc;
};

/* Runs every element, writing rows to batch->store in element order. */
extern void llm_batch_run(Batch *batch, int concurrency);
/* The set-returning function's result store, in materialize mode. */
extern Tuplestorestate *llm_batch_begin_rows(FunctionCallInfo fcinfo, TupleDesc *desc);
/* The concurrency argument argno, checked against the ceilings. */
extern int	llm_batch_concurrency(FunctionCallInfo fcinfo, int argno);
/* The options argument argno: NULL or an object. */
extern cJSON *llm_batch_options(FunctionCallInfo fcinfo, int argno);
/* "error" given explicitly: the first failure aborts the statement. */
extern bool llm_batch_abort_on_failure(const cJSON *options);
/* Options for the elements: failures come back as values, not raised. */
extern cJSON *llm_batch_element_options(const cJSON *options);
/* The elements of a one-dimensional array (what names it in the error). */
extern void llm_batch_deconstruct(ArrayType *array, Oid type, int16 len, bool byval, char align,
								  const char *what, Datum **elements, bool **nulls, int *n);

#endif							/* LLMEXT_SQL_BATCH_H */
