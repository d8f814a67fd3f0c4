/* Unit tests of openai_finetune.c: job bodies, list queries, files, jobs, events, checkpoints. */
#include "unit.h"

#include <math.h>
#include <stdlib.h>

#include "providers/openai.h"
#include "providers/provider.h"

static void
test_job_body(void)
{
	cJSON	   *hp = cJSON_Parse("{\"n_epochs\":3,\"batch_size\":\"auto\"}");
	LlmFinetuneSpec spec = {
		.remote_model = "gpt-4o-mini-2024-07-18", .training_file = "file-t",
		.validation_file = "file-v", .method = "supervised", .hyperparameters = hp,
		.suffix = "support", .has_seed = true, .seed = 42, .job_tag = "7",
		.database_tag = "7311/16384"
	};
	char	   *body = openai_finetune_request(&spec);

	CHECK_STR(body, "{\"model\":\"gpt-4o-mini-2024-07-18\",\"training_file\":\"file-t\","
			  "\"validation_file\":\"file-v\",\"suffix\":\"support\",\"seed\":42,"
			  "\"method\":{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":"
			  "{\"n_epochs\":3,\"batch_size\":\"auto\"}}},"
			  "\"metadata\":{\"llmext_job\":\"7\",\"llmext_database\":\"7311/16384\"}}");
	free(body);

	/* no validation file, suffix, seed nor hyperparameters: left out */
	spec.validation_file = NULL;
	spec.suffix = NULL;
	spec.has_seed = false;
	spec.method = "dpo";
	cJSON_Delete(hp);
	hp = cJSON_Parse("{}");
	spec.hyperparameters = hp;
	body = openai_finetune_request(&spec);
	CHECK_STR(body, "{\"model\":\"gpt-4o-mini-2024-07-18\",\"training_file\":\"file-t\","
			  "\"method\":{\"type\":\"dpo\",\"dpo\":{}},"
			  "\"metadata\":{\"llmext_job\":\"7\",\"llmext_database\":\"7311/16384\"}}");
	free(body);
	cJSON_Delete(hp);
}

static void
test_list_query(void)
{
	char	   *q = openai_finetune_list_query("12", NULL);

	CHECK_STR(q, "?metadata%5Bllmext_job%5D=12&limit=100");
	free(q);
	q = openai_finetune_list_query("a b&c", "ftjob-1");
	CHECK_STR(q, "?metadata%5Bllmext_job%5D=a%20b%26c&limit=100&after=ftjob-1");
	free(q);
}

static void
test_file(void)
{
	char		err[128];
	const char *body = "{\"id\":\"file-abc\",\"object\":\"file\",\"bytes\":120000,"
		"\"created_at\":1710263812,\"filename\":\"train.jsonl\",\"purpose\":\"fine-tune\","
		"\"status\":\"processed\",\"status_details\":null,\"new_field\":[1]}";
	char	   *id = openai_parse_file(body, strlen(body), err, sizeof(err));

	CHECK_STR(id, "file-abc");
	free(id);
	CHECK(openai_parse_file("{\"object\":\"file\"}", 17, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "no id") != NULL);
	CHECK(openai_parse_file("{\"id\":\"\"}", 9, err, sizeof(err)) == NULL);
	CHECK(openai_parse_file("nope", 4, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "not valid JSON") != NULL);
}

static void
test_job(void)
{
	char		err[128];
	LlmFinetuneJob job;
	const char *running = "{\"object\":\"fine_tuning.job\",\"id\":\"ftjob-1\",\"created_at\":1,"
		"\"error\":null,\"fine_tuned_model\":null,\"finished_at\":null,\"status\":\"running\","
		"\"trained_tokens\":null,\"metadata\":{\"llmext_job\":\"3\",\"llmext_database\":\"1/2\"}}";
	const char *done = "{\"id\":\"ftjob-1\",\"status\":\"succeeded\","
		"\"fine_tuned_model\":\"ft:gpt-4o-mini:org:support:abc\",\"trained_tokens\":123456}";
	const char *failed = "{\"id\":\"ftjob-2\",\"status\":\"failed\","
		"\"error\":{\"code\":\"invalid_training_file\",\"message\":\"line 3 is bad\",\"param\":null}}";
	const char *odd = "{\"id\":\"ftjob-3\",\"status\":\"paused\",\"trained_tokens\":-5,\"metadata\":null}";

	CHECK(openai_parse_finetune_job(running, strlen(running), &job, err, sizeof(err)));
	CHECK_STR(job.id, "ftjob-1");
	CHECK_STR(job.status, "running");
	CHECK(job.fine_tuned_model == NULL);
	CHECK(job.trained_tokens == -1);
	CHECK(job.error_message == NULL);
	CHECK_STR(job.job_tag, "3");
	CHECK_STR(job.database_tag, "1/2");
	llm_finetune_job_free(&job);

	CHECK(openai_parse_finetune_job(done, strlen(done), &job, err, sizeof(err)));
	CHECK_STR(job.fine_tuned_model, "ft:gpt-4o-mini:org:support:abc");
	CHECK(job.trained_tokens == 123456);
	CHECK(job.job_tag == NULL);
	llm_finetune_job_free(&job);

	CHECK(openai_parse_finetune_job(failed, strlen(failed), &job, err, sizeof(err)));
	CHECK_STR(job.error_code, "invalid_training_file");
	CHECK_STR(job.error_message, "line 3 is bad");
	llm_finetune_job_free(&job);

	/* an unknown status is kept as it is; a negative count is no count */
	CHECK(openai_parse_finetune_job(odd, strlen(odd), &job, err, sizeof(err)));
	CHECK_STR(job.status, "paused");
	CHECK(job.trained_tokens == -1);
	llm_finetune_job_free(&job);

	CHECK(!openai_parse_finetune_job("{\"status\":\"running\"}", 20, &job, err, sizeof(err)));
	CHECK(strstr(err, "no id") != NULL);
	CHECK(!openai_parse_finetune_job("[1]", 3, &job, err, sizeof(err)));
}

static void
test_lists(void)
{
	char		err[128];
	LlmFinetuneList list;
	const char *jobs = "{\"object\":\"list\",\"data\":[{\"id\":\"ftjob-1\",\"status\":\"queued\","
		"\"metadata\":{\"llmext_job\":\"9\"}},{\"no\":\"id\"},{\"id\":\"ftjob-2\",\"status\":\"x\"}],"
		"\"has_more\":true}";
	const char *events = "{\"object\":\"list\",\"data\":["
		"{\"object\":\"fine_tuning.job.event\",\"id\":\"ev-2\",\"created_at\":1700000001,"
		"\"level\":\"info\",\"message\":\"Step 2/10\",\"type\":\"metrics\",\"data\":{\"step\":2}},"
		"{\"id\":\"ev-1\",\"created_at\":1700000000,\"level\":\"warn\",\"message\":\"hi\"}],"
		"\"has_more\":false}";
	const char *checkpoints = "{\"object\":\"list\",\"data\":["
		"{\"object\":\"fine_tuning.job.checkpoint\",\"id\":\"ftckpt-1\",\"created_at\":1700000100,"
		"\"fine_tuned_model_checkpoint\":\"ft:m:o:s:ckpt-step-10\",\"step_number\":10,"
		"\"fine_tuning_job_id\":\"ftjob-1\",\"metrics\":{\"step\":10,\"train_loss\":0.5,"
		"\"train_mean_token_accuracy\":0.9,\"valid_loss\":0.75,\"valid_mean_token_accuracy\":0.8,"
		"\"full_valid_loss\":0.7}},{\"id\":\"ftckpt-2\",\"metrics\":{\"step\":20}}],"
		"\"first_id\":\"ftckpt-1\",\"last_id\":\"ftckpt-2\",\"has_more\":false}";

	CHECK(openai_parse_finetune_list(jobs, strlen(jobs), LLM_FT_LIST_JOBS, &list, err, sizeof(err)));
	CHECK(list.n == 2);
	CHECK_STR(list.jobs[0].job_tag, "9");
	CHECK_STR(list.jobs[1].status, "x");
	CHECK(list.has_more);
	CHECK_STR(list.last_id, "ftjob-2");
	llm_finetune_list_free(&list);

	CHECK(openai_parse_finetune_list(events, strlen(events), LLM_FT_LIST_EVENTS, &list, err, sizeof(err)));
	CHECK(list.n == 2);
	CHECK_STR(list.events[0].id, "ev-2");
	CHECK(list.events[0].created_at == 1700000001.0);
	CHECK_STR(list.events[0].type, "metrics");
	CHECK_STR(list.events[0].data, "{\"step\":2}");
	CHECK_STR(list.events[1].level, "warn");
	CHECK(list.events[1].type == NULL && list.events[1].data == NULL);
	CHECK(!list.has_more);
	llm_finetune_list_free(&list);

	CHECK(openai_parse_finetune_list(checkpoints, strlen(checkpoints), LLM_FT_LIST_CHECKPOINTS,
									 &list, err, sizeof(err)));
	CHECK(list.n == 2);
	CHECK(list.checkpoints[0].step == 10);
	CHECK_STR(list.checkpoints[0].model_checkpoint, "ft:m:o:s:ckpt-step-10");
	CHECK(list.checkpoints[0].train_loss == 0.5);
	CHECK(list.checkpoints[0].valid_loss == 0.75);
	CHECK(list.checkpoints[0].train_accuracy == 0.9);
	CHECK(list.checkpoints[0].valid_accuracy == 0.8);
	CHECK(strstr(list.checkpoints[0].metrics, "\"full_valid_loss\":0.7") != NULL);
	/* step from metrics when step_number is missing; absent metrics are NaN */
	CHECK(list.checkpoints[1].step == 20);
	CHECK(isnan(list.checkpoints[1].train_loss));
	CHECK(isnan(list.checkpoints[1].created_at));
	llm_finetune_list_free(&list);

	CHECK(!openai_parse_finetune_list("{\"object\":\"list\"}", 17, LLM_FT_LIST_EVENTS, &list,
									  err, sizeof(err)));
	CHECK(strstr(err, "no data") != NULL);
}

void
test_finetune(void)
{
	const LlmProviderRoutine *r = llm_provider_routine("openai");

	CHECK(r != NULL && r->files_path != NULL && strcmp(r->jobs_path, "/fine_tuning/jobs") == 0);
	CHECK_STR(r->files_purpose, "fine-tune");
	test_job_body();
	test_list_query();
	test_file();
	test_job();
	test_lists();
}
