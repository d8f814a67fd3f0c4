/*
 * openai_finetune.c — OpenAI fine-tuning: file uploads, job bodies, job
 * objects, and the lists of jobs, events and checkpoints.  Tolerant like
 * openai.c: unknown keys are ignored, a status is kept as the text the
 * provider sent whatever it is, and every field but an object's id may be
 * missing or null.
 *
 * Pure code (see request.h).
 */
#include "providers/openai.h"

#include "providers/provider.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* the largest count a double holds exactly: 2^53 */
#define FT_MAX_COUNT 9007199254740992.0

char *
openai_string_member(const cJSON *object, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

	return cJSON_IsString(item) ? llm_strdup(item->valuestring) : NULL;
}

int64_t
openai_count_member(const cJSON *object, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

	if (!cJSON_IsNumber(item) || !(item->valuedouble >= 0))
		return -1;
	if (item->valuedouble > FT_MAX_COUNT)
		return (int64_t) FT_MAX_COUNT;
	return (int64_t) item->valuedouble;
}

static double
number_of(const cJSON *object, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

	return cJSON_IsNumber(item) && isfinite(item->valuedouble) ? item->valuedouble : NAN;
}

static char *
json_of(const cJSON *object, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

	return item != NULL && !cJSON_IsNull(item) ? cJSON_PrintUnformatted(item) : NULL;
}

char *
openai_finetune_request(const LlmFinetuneSpec *spec)
{
	cJSON	   *body = cJSON_CreateObject();
	cJSON	   *method = cJSON_CreateObject();
	cJSON	   *inner = cJSON_CreateObject();
	cJSON	   *metadata = cJSON_CreateObject();
	const char *type = spec->method ? spec->method : "supervised";
	char	   *text;

	cJSON_AddStringToObject(body, "model", spec->remote_model);
	cJSON_AddStringToObject(body, "training_file", spec->training_file);
	if (spec->validation_file != NULL)
		cJSON_AddStringToObject(body, "validation_file", spec->validation_file);
	if (spec->suffix != NULL)
		cJSON_AddStringToObject(body, "suffix", spec->suffix);
	if (spec->has_seed)
		cJSON_AddNumberToObject(body, "seed", spec->seed);
	/* method: {"type": t, t: {"hyperparameters": {...}}}; empty ones are left out */
	cJSON_AddStringToObject(method, "type", type);
	if (cJSON_IsObject(spec->hyperparameters) && spec->hyperparameters->child != NULL)
		cJSON_AddItemToObject(inner, "hyperparameters", cJSON_Duplicate(spec->hyperparameters, true));
	cJSON_AddItemToObject(method, type, inner);
	cJSON_AddItemToObject(body, "method", method);
	cJSON_AddStringToObject(metadata, LLM_FINETUNE_META_JOB, spec->job_tag);
	if (spec->database_tag != NULL)
		cJSON_AddStringToObject(metadata, LLM_FINETUNE_META_DATABASE, spec->database_tag);
	cJSON_AddItemToObject(body, "metadata", metadata);
	text = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	return text;
}

/* Percent-encodes everything but RFC 3986's unreserved characters. */
void
openai_append_encoded(char *out, size_t *len, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '_' || c == '.' || c == '~')
			out[(*len)++] = (char) c;
		else
		{
			out[(*len)++] = '%';
			out[(*len)++] = hex[c >> 4];
			out[(*len)++] = hex[c & 15];
		}
	}
	out[*len] = '\0';
}

/* ?metadata[llmext_job]=<tag>&limit=100[&after=<id>], brackets encoded */
char *
openai_finetune_list_query(const char *job_tag, const char *after)
{
	size_t		size = 64 + 3 * (strlen(LLM_FINETUNE_META_JOB) + strlen(job_tag) +
								 (after ? strlen(after) : 0));
	char	   *q = cJSON_malloc(size);
	size_t		len = 0;

	q[0] = '\0';
	strcpy(q, "?metadata%5B");
	len = strlen(q);
	openai_append_encoded(q, &len, LLM_FINETUNE_META_JOB);
	strcpy(q + len, "%5D=");
	len += 4;
	openai_append_encoded(q, &len, job_tag);
	strcpy(q + len, "&limit=100");
	len += strlen("&limit=100");
	if (after != NULL)
	{
		strcpy(q + len, "&after=");
		len += strlen("&after=");
		openai_append_encoded(q, &len, after);
	}
	return q;
}

char *
openai_parse_file(const char *body, size_t len, char *err, size_t errlen)
{
	cJSON	   *root = cJSON_ParseWithLength(body, len);
	char	   *id = openai_string_member(root, "id");

	if (root == NULL)
		snprintf(err, errlen, "the response body is not valid JSON");
	else if (id == NULL || id[0] == '\0')
		snprintf(err, errlen, "the file object has no id");
	cJSON_Delete(root);
	if (id != NULL && id[0] == '\0')
	{
		cJSON_free(id);
		id = NULL;
	}
	return id;
}

static bool
job_from(const cJSON *object, LlmFinetuneJob *job, char *err, size_t errlen)
{
	const cJSON *error = cJSON_GetObjectItemCaseSensitive(object, "error");
	const cJSON *metadata = cJSON_GetObjectItemCaseSensitive(object, "metadata");

	memset(job, 0, sizeof(*job));
	job->trained_tokens = -1;
	job->id = openai_string_member(object, "id");
	if (job->id == NULL || job->id[0] == '\0')
	{
		snprintf(err, errlen, "the fine-tuning job object has no id");
		llm_finetune_job_free(job);
		return false;
	}
	job->status = openai_string_member(object, "status");
	job->fine_tuned_model = openai_string_member(object, "fine_tuned_model");
	job->trained_tokens = openai_count_member(object, "trained_tokens");
	if (cJSON_IsObject(error))
	{
		const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");

		job->error_code = cJSON_IsString(code) ? llm_strdup(code->valuestring)
			: cJSON_IsNumber(code) ? cJSON_PrintUnformatted(code) : NULL;
		job->error_message = openai_string_member(error, "message");
	}
	else if (cJSON_IsString(error))
		job->error_message = llm_strdup(error->valuestring);
	if (cJSON_IsObject(metadata))
	{
		job->job_tag = openai_string_member(metadata, LLM_FINETUNE_META_JOB);
		job->database_tag = openai_string_member(metadata, LLM_FINETUNE_META_DATABASE);
	}
	return true;
}

bool
openai_parse_finetune_job(const char *body, size_t len, LlmFinetuneJob *job,
						  char *err, size_t errlen)
{
	cJSON	   *root = cJSON_ParseWithLength(body, len);
	bool		ok;

	memset(job, 0, sizeof(*job));
	if (!cJSON_IsObject(root))
	{
		snprintf(err, errlen, "the response body is not a JSON object");
		cJSON_Delete(root);
		return false;
	}
	ok = job_from(root, job, err, errlen);
	cJSON_Delete(root);
	return ok;
}

static void
event_from(const cJSON *object, LlmFinetuneEvent *event)
{
	event->id = openai_string_member(object, "id");
	event->created_at = number_of(object, "created_at");
	event->level = openai_string_member(object, "level");
	event->type = openai_string_member(object, "type");
	event->message = openai_string_member(object, "message");
	event->data = json_of(object, "data");
}

static void
checkpoint_from(const cJSON *object, LlmFinetuneCheckpoint *cp)
{
	const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(object, "metrics");

	cp->id = openai_string_member(object, "id");
	cp->created_at = number_of(object, "created_at");
	cp->step = openai_count_member(object, "step_number");
	if (cp->step < 0)
		cp->step = openai_count_member(metrics, "step");
	cp->model_checkpoint = openai_string_member(object, "fine_tuned_model_checkpoint");
	cp->train_loss = number_of(metrics, "train_loss");
	cp->valid_loss = number_of(metrics, "valid_loss");
	cp->train_accuracy = number_of(metrics, "train_mean_token_accuracy");
	cp->valid_accuracy = number_of(metrics, "valid_mean_token_accuracy");
	cp->metrics = cJSON_IsObject(metrics) ? cJSON_PrintUnformatted(metrics) : NULL;
}

bool
openai_parse_finetune_list(const char *body, size_t len, LlmFinetuneListKind kind,
						   LlmFinetuneList *list, char *err, size_t errlen)
{
	cJSON	   *root = cJSON_ParseWithLength(body, len);
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
	const cJSON *item;
	int			size;

	memset(list, 0, sizeof(*list));
	if (!cJSON_IsArray(data))
	{
		snprintf(err, errlen, root == NULL ? "the response body is not valid JSON"
				 : "the list has no data array");
		cJSON_Delete(root);
		return false;
	}
	size = cJSON_GetArraySize(data);
	if (kind == LLM_FT_LIST_JOBS)
		list->jobs = cJSON_malloc(sizeof(LlmFinetuneJob) * (size + 1));
	else if (kind == LLM_FT_LIST_EVENTS)
		list->events = cJSON_malloc(sizeof(LlmFinetuneEvent) * (size + 1));
	else
		list->checkpoints = cJSON_malloc(sizeof(LlmFinetuneCheckpoint) * (size + 1));
	cJSON_ArrayForEach(item, data)
	{
		char	   *id = openai_string_member(item, "id");
		char		ignored[8];

		/* an item without an id cannot be stored nor paged past: skipped */
		if (!cJSON_IsObject(item) || id == NULL || id[0] == '\0')
		{
			cJSON_free(id);
			continue;
		}
		if (list->last_id != NULL)
			cJSON_free(list->last_id);
		list->last_id = id;
		if (kind == LLM_FT_LIST_JOBS)
		{
			if (job_from(item, &list->jobs[list->n], ignored, sizeof(ignored)))
				list->n++;
		}
		else if (kind == LLM_FT_LIST_EVENTS)
		{
			memset(&list->events[list->n], 0, sizeof(LlmFinetuneEvent));
			event_from(item, &list->events[list->n++]);
		}
		else
		{
			memset(&list->checkpoints[list->n], 0, sizeof(LlmFinetuneCheckpoint));
			checkpoint_from(item, &list->checkpoints[list->n++]);
		}
	}
	list->has_more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "has_more"));
	cJSON_Delete(root);
	return true;
}
