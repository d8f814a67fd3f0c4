/*
 * provider.h — the interface every provider kind implements: a table of
 * routines, one per kind (llm.providers.kind), as pgvector has one per index
 * access method.  Code above src/providers/ asks llm_provider_routine() for
 * the kind of a model's provider and calls through the table; it never tests
 * a kind nor calls a kind's functions by name.
 *
 * Pure code (see core/request.h): strings and trees returned are
 * cJSON_malloc'd (palloc'd in the server).
 */
#ifndef LLMEXT_PROVIDER_H
#define LLMEXT_PROVIDER_H

#include "core/request.h"

/*
 * Fine-tuning.  The metadata keys a job is created with: llmext's job id,
 * and which database (cluster system identifier and database OID) it is
 * in, so that recovery never adopts another database's job with the same
 * id at a shared provider account.
 */
#define LLM_FINETUNE_META_JOB "llmext_job"
#define LLM_FINETUNE_META_DATABASE "llmext_database"

/* What a job is created with. */
typedef struct LlmFinetuneSpec
{
	const char *remote_model;
	const char *training_file;	/* the provider's file ids */
	const char *validation_file;	/* NULL: none */
	const char *method;			/* supervised, dpo, ... */
	const cJSON *hyperparameters;	/* an object, or NULL */
	const char *suffix;			/* NULL: none */
	bool		has_seed;
	int			seed;
	const char *job_tag;		/* LLM_FINETUNE_META_JOB */
	const char *database_tag;	/* LLM_FINETUNE_META_DATABASE */
} LlmFinetuneSpec;

/* A job as the provider reports it; strings are NULL when absent. */
typedef struct LlmFinetuneJob
{
	char	   *id;
	char	   *status;			/* whatever the provider says, unknown values included */
	char	   *fine_tuned_model;
	int64_t		trained_tokens; /* -1: not reported */
	char	   *error_code;
	char	   *error_message;
	char	   *job_tag;		/* metadata, when the provider returns it */
	char	   *database_tag;
} LlmFinetuneJob;

typedef struct LlmFinetuneEvent
{
	char	   *id;
	double		created_at;		/* Unix seconds */
	char	   *level;
	char	   *type;
	char	   *message;
	char	   *data;			/* JSON text, or NULL */
} LlmFinetuneEvent;

typedef struct LlmFinetuneCheckpoint
{
	char	   *id;
	double		created_at;		/* Unix seconds */
	int64_t		step;			/* -1: not reported */
	char	   *model_checkpoint;
	double		train_loss;		/* NAN: not reported */
	double		valid_loss;
	double		train_accuracy;
	double		valid_accuracy;
	char	   *metrics;		/* JSON text of everything sent, or NULL */
} LlmFinetuneCheckpoint;

/* One page of a list: jobs, events or checkpoints. */
typedef struct LlmFinetuneList
{
	int			n;
	LlmFinetuneJob *jobs;
	LlmFinetuneEvent *events;
	LlmFinetuneCheckpoint *checkpoints;
	bool		has_more;
	char	   *last_id;		/* for the next page's "after" */
} LlmFinetuneList;

typedef enum LlmFinetuneListKind
{
	LLM_FT_LIST_JOBS,
	LLM_FT_LIST_EVENTS,
	LLM_FT_LIST_CHECKPOINTS
} LlmFinetuneListKind;

/*
 * Batch mode (a provider's Batch API).  The metadata keys a provider batch
 * is created with: llmext's batch id (llm.provider_batches.id) and the
 * database (LLM_FINETUNE_META_DATABASE), for the same reason as jobs.
 */
#define LLM_BATCH_META_BATCH "llmext_batch"

/* A provider batch as the provider reports it; strings are NULL when absent. */
typedef struct LlmProviderBatch
{
	char	   *id;
	char	   *status;			/* whatever the provider says, unknown values included */
	char	   *output_file_id;
	char	   *error_file_id;
	int64_t		total;			/* request_counts; -1: not reported */
	int64_t		completed;
	int64_t		failed;
	char	   *error_message;	/* a batch-level failure (errors.data[0]): "code: message" */
	char	   *batch_tag;		/* metadata, when the provider returns it */
	char	   *database_tag;
} LlmProviderBatch;

/* One page of the provider's batches. */
typedef struct LlmProviderBatchList
{
	int			n;
	LlmProviderBatch *batches;
	bool		has_more;
	char	   *last_id;		/* for the next page's "after" */
} LlmProviderBatchList;

/* One line of a batch's output or error file. */
typedef struct LlmBatchLine
{
	char	   *custom_id;
	long		status_code;	/* the request's HTTP status; 0: no response */
	char	   *body;			/* the response body as JSON text, or NULL */
	char	   *request_id;		/* the response's request_id, or NULL */
	char	   *error;			/* a failure with no HTTP response: "code: message" */
} LlmBatchLine;

typedef struct LlmProviderRoutine
{
	const char *kind;			/* as in llm.providers.kind */
	/* What base_url must point at, for hints: "an OpenAI-compatible API ..." */
	const char *api_description;
	/* The chat path below base_url, unless the provider's chat_path option says otherwise. */
	const char *chat_path;

	/*
	 * Header lines every request of the kind carries (NULL-terminated, or
	 * NULL): an API version, say.  A provider's headers option naming the
	 * same header replaces the line.
	 */
	const char *const *headers;

	/*
	 * The header line that carries key: in header_name (a provider's
	 * auth_header option), or NULL for the kind's own.
	 */
	char	   *(*auth_header) (const char *header_name, const char *key);

	/* The body of a chat request; params are merged and free of reserved keys. */
	char	   *(*chat_request) (const char *remote_model, const cJSON *messages,
								 const cJSON *params);

	/* Parses a 2xx chat body into result; false with a sentence in err. */
	bool		(*parse_chat_response) (const char *body, size_t len, LlmChatResult *result,
										char *err, size_t errlen);

	/*
	 * Embeddings; embeddings_path is NULL for a kind without them.  The body
	 * of a request for the vectors of inputs (an array of non-empty strings),
	 * and the parser of a 2xx answer that must hold exactly ninputs vectors
	 * of one length (false with a sentence in err).
	 */
	const char *embeddings_path;
	char	   *(*embed_request) (const char *remote_model, const cJSON *inputs,
								  const cJSON *params);
	bool		(*parse_embed_response) (const char *body, size_t len, int ninputs,
										 LlmEmbedResult *result, char *err, size_t errlen);

	/* The message of an error body, or NULL when it has none recognisable. */
	char	   *(*error_message) (const char *body, size_t len);

	/* The request parameter that asks for output as JSON following schema. */
	void		(*add_json_output) (cJSON *params, const char *name, const cJSON *schema);
	/* Whether params already ask for a format of output (then it is kept). */
	bool		(*has_output_format) (const cJSON *params);

	/* The most output tokens params ask for, or -1 when they set no limit. */
	double		(*max_output_tokens) (const cJSON *params);

	/*
	 * Fine-tuning; files_path is NULL for a kind without it.  Paths are
	 * below base_url; a job's own resources are jobs_path/<id>/events and
	 * so on.
	 */
	const char *files_path;		/* POST: multipart upload */
	const char *files_purpose;	/* the form's purpose field */
	const char *jobs_path;
	/* The body of a job create. */
	char	   *(*finetune_request) (const LlmFinetuneSpec *spec);
	/*
	 * The query string (with its "?") that lists the jobs created with
	 * job_tag in their metadata, from after (NULL: the start).
	 */
	char	   *(*finetune_list_query) (const char *job_tag, const char *after);
	/* The id of an uploaded file; NULL with a sentence in err. */
	char	   *(*parse_file) (const char *body, size_t len, char *err, size_t errlen);
	/* A job object; false with a sentence in err. */
	bool		(*parse_finetune_job) (const char *body, size_t len, LlmFinetuneJob *job,
									   char *err, size_t errlen);
	/* A page of jobs, events or checkpoints; false with a sentence in err. */
	bool		(*parse_finetune_list) (const char *body, size_t len, LlmFinetuneListKind kind,
										LlmFinetuneList *list, char *err, size_t errlen);

	/*
	 * Batch mode; batches_path is NULL for a kind without it.  Files go up
	 * through files_path with batch_files_purpose; a file's bytes are at
	 * files_path/<id>/content.  A batch's own resources are
	 * batches_path/<id> and batches_path/<id>/cancel.
	 */
	const char *batches_path;
	const char *batch_files_purpose;
	/* The url a chat request's line names (an absolute path at the provider). */
	const char *batch_chat_url;
	/*
	 * One line of an input file, without its newline: custom_id, the url,
	 * and body (the JSON text of the request, as chat_request made it).
	 */
	char	   *(*batch_line) (const char *custom_id, const char *url, const char *body);
	/* The body of a batch create; window "24h". */
	char	   *(*batch_request) (const char *input_file_id, const char *endpoint,
								  const char *batch_tag, const char *database_tag);
	/* The query string (with its "?") of a page of batches, from after (NULL: the start). */
	char	   *(*batch_list_query) (const char *after);
	/* A batch object; false with a sentence in err. */
	bool		(*parse_batch) (const char *body, size_t len, LlmProviderBatch *batch,
								char *err, size_t errlen);
	/* A page of batches; false with a sentence in err. */
	bool		(*parse_batch_list) (const char *body, size_t len, LlmProviderBatchList *list,
									 char *err, size_t errlen);
	/* One line of an output or error file (no newline); false with a sentence in err. */
	bool		(*parse_batch_line) (const char *line, size_t len, LlmBatchLine *out,
									 char *err, size_t errlen);
} LlmProviderRoutine;

/* The kinds llmext implements, one file each under providers/. */
extern const LlmProviderRoutine openai_routine;	/* openai.c */
extern const LlmProviderRoutine anthropic_routine;	/* anthropic.c */

/* The routines of kind, or NULL when llmext does not implement it. */
extern const LlmProviderRoutine *llm_provider_routine(const char *kind);

/* Frees what the fine-tuning parsers allocated (not the structs themselves). */
extern void llm_finetune_job_free(LlmFinetuneJob *job);
extern void llm_finetune_list_free(LlmFinetuneList *list);
/* Frees what the batch parsers allocated (not the structs themselves). */
extern void llm_provider_batch_free(LlmProviderBatch *batch);
extern void llm_provider_batch_list_free(LlmProviderBatchList *list);
extern void llm_batch_line_free(LlmBatchLine *line);

/* The kind a prompt's output format is written for when no model is known yet. */
#define LLM_DEFAULT_PROVIDER_KIND "openai"

#endif							/* LLMEXT_PROVIDER_H */
