/*
 * provider.c — the table of provider kinds (see provider.h).
 *
 * Pure code.
 */
#include "providers/provider.h"

#include <string.h>

static const LlmProviderRoutine *const kinds[] = {
	&openai_routine,
	&anthropic_routine,
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

void
llm_finetune_job_free(LlmFinetuneJob *job)
{
	cJSON_free(job->id);
	cJSON_free(job->status);
	cJSON_free(job->fine_tuned_model);
	cJSON_free(job->error_code);
	cJSON_free(job->error_message);
	cJSON_free(job->job_tag);
	cJSON_free(job->database_tag);
	memset(job, 0, sizeof(*job));
}

void
llm_finetune_list_free(LlmFinetuneList *list)
{
	for (int i = 0; i < list->n; i++)
	{
		if (list->jobs)
			llm_finetune_job_free(&list->jobs[i]);
		if (list->events)
		{
			LlmFinetuneEvent *e = &list->events[i];

			cJSON_free(e->id);
			cJSON_free(e->level);
			cJSON_free(e->type);
			cJSON_free(e->message);
			cJSON_free(e->data);
		}
		if (list->checkpoints)
		{
			LlmFinetuneCheckpoint *c = &list->checkpoints[i];

			cJSON_free(c->id);
			cJSON_free(c->model_checkpoint);
			cJSON_free(c->metrics);
		}
	}
	cJSON_free(list->jobs);
	cJSON_free(list->events);
	cJSON_free(list->checkpoints);
	cJSON_free(list->last_id);
	memset(list, 0, sizeof(*list));
}

void
llm_provider_batch_free(LlmProviderBatch *batch)
{
	cJSON_free(batch->id);
	cJSON_free(batch->status);
	cJSON_free(batch->output_file_id);
	cJSON_free(batch->error_file_id);
	cJSON_free(batch->error_message);
	cJSON_free(batch->batch_tag);
	cJSON_free(batch->database_tag);
	memset(batch, 0, sizeof(*batch));
}

void
llm_provider_batch_list_free(LlmProviderBatchList *list)
{
	for (int i = 0; i < list->n; i++)
		llm_provider_batch_free(&list->batches[i]);
	cJSON_free(list->batches);
	cJSON_free(list->last_id);
	memset(list, 0, sizeof(*list));
}

void
llm_batch_line_free(LlmBatchLine *line)
{
	cJSON_free(line->custom_id);
	cJSON_free(line->body);
	cJSON_free(line->request_id);
	cJSON_free(line->error);
	memset(line, 0, sizeof(*line));
}
