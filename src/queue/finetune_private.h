/*
 * finetune_private.h — what finetune.c (states, the turn), finetune_files.c
 * (writing and uploading the files) and finetune_remote.c (the job at the
 * provider) share about the fine-tuning job being handled.
 */
#ifndef LLMEXT_FINETUNE_PRIVATE_H
#define LLMEXT_FINETUNE_PRIVATE_H

#include "postgres.h"

#include "net/engine.h"
#include "queue/remote.h"
#include "store/catalog.h"

/* One due job of llm.finetune_jobs, read at the start of a turn. */
typedef struct FtJob
{
	int64		id;
	char	   *state;
	Oid			submitter;
	Oid			login;
	char	   *base_model;
	char	   *training_set;
	int			training_version;
	char	   *validation_set;	/* NULL: none */
	int			validation_version;
	char	   *method;
	cJSON	   *hyperparameters;
	char	   *suffix;
	bool		has_seed;
	int			seed;
	char	   *training_file_id;
	char	   *validation_file_id;
	char	   *provider_job_id;
	char	   *provider_status;
	int			attempts;
	char	   *tag;			/* LLM_FINETUNE_META_JOB: the id as text */
	/* set by connect_model (finetune.c) */
	LlmModel   *model;
	LlmRemoteAuth auth;
} FtJob;

/* finetune.c: failed attempts and requests to the provider */
extern void ft_fail_job(FtJob *job, const char *error);
extern void ft_attempt_failed(FtJob *job, bool retry, double retry_after_ms, const char *error);
extern bool ft_check_response(FtJob *job, const LlmHttpResponse *resp, const char *what);
extern char *ft_body_of(const LlmHttpResponse *resp);
extern bool ft_stop_requested(void);

/* finetune_files.c: the training and validation files */
extern bool ft_upload_set(FtJob *job, const char *set, int version, bool held_out,
						  bool verify, const char *column_name, char **file_id);
extern void ft_close_open_file(void);

/* finetune_remote.c: the job at the provider */
extern void ft_create_job(FtJob *job);
extern void ft_record_created(FtJob *job, const char *provider_id);
extern void ft_poll_job(FtJob *job);
extern void ft_cancel_job(FtJob *job);
extern void ft_forget_interval(int64 id);

#endif							/* LLMEXT_FINETUNE_PRIVATE_H */
