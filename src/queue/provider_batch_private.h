/*
 * provider_batch_private.h — what provider_batch.c (states, the turn, the
 * batch at the provider) and provider_batch_files.c (the input file of
 * lines, the output files' answers) share about the batch being handled.
 */
#ifndef LLMEXT_PROVIDER_BATCH_PRIVATE_H
#define LLMEXT_PROVIDER_BATCH_PRIVATE_H

#include "postgres.h"

#include "queue/queue.h"
#include "queue/remote.h"
#include "store/catalog.h"

/* A line's custom_id is this prefix and the request's id. */
#define PB_CUSTOM_ID_PREFIX "llmext-"

/* One due row of llm.provider_batches, read at the start of a turn. */
typedef struct PbBatch
{
	int64		id;
	char	   *state;
	char	   *model_name;
	char	   *input_file_id;
	char	   *provider_batch_id;
	char	   *provider_status;
	char	   *output_file_id;
	char	   *error_file_id;
	char	   *batch_error;	/* the provider's reason for a failed batch */
	int			attempts;
	/* set by connect_model (provider_batch.c) */
	LlmModel   *model;
	LlmRemoteAuth auth;
	LlmQueue   *queue;			/* where answers are written */
	bool		(*stop) (void);
} PbBatch;

/* provider_batch.c */
extern void pb_attempt_failed(PbBatch *batch, const LlmRemoteError *error);

/* provider_batch_files.c */
extern bool pb_upload_input(PbBatch *batch, int *lines);
extern bool pb_read_answers(PbBatch *batch, const char *file_id);
extern void pb_close_open_file(void);

#endif							/* LLMEXT_PROVIDER_BATCH_PRIVATE_H */
