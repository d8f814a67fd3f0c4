/*
 * llmext.c — module entry: settings, and routing cJSON through palloc.
 */
#include "llmext.h"

#include "queue/finetune.h"
#include "queue/provider_batch.h"
#include "queue/queue.h"
#include "queue/worker.h"
#include "store/cache.h"
#include "store/ledger.h"
#include "store/shmem.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include <limits.h>
#include <cjson/cJSON.h>

PG_MODULE_MAGIC;

char	   *llm_default_model = NULL;
int			llm_request_timeout_ms = 120000;
int			llm_connect_timeout_ms = 10000;
int			llm_max_response_bytes = 16 * 1024 * 1024;
int			llm_callback_timeout_ms = 5000;
int			llm_call_io_days = 30;
int			llm_max_response_bytes_limit = 16 * 1024 * 1024;
int			llm_max_template_bytes = 1024 * 1024;
int			llm_max_template_nodes = 100000;
int			llm_max_rendered_bytes = 4 * 1024 * 1024;
int			llm_max_request_bytes = 8 * 1024 * 1024;
int			llm_max_batch_concurrency = 16;
char	   *llm_key_env_allowed = NULL;
char	   *llm_allowed_hosts = NULL;

void		_PG_init(void);

/*
 * cJSON allocates through these, so its memory belongs to the current
 * memory context and is reclaimed when an ERROR unwinds.  (libcurl, by
 * contrast, keeps its own allocator: see engine.c.)
 */
static void *
cjson_palloc(size_t size)
{
	return palloc(size == 0 ? 1 : size);
}

static void
cjson_pfree(void *pointer)
{
	if (pointer != NULL)
		pfree(pointer);
}

void
_PG_init(void)
{
	cJSON_Hooks hooks = {cjson_palloc, cjson_pfree};

	cJSON_InitHooks(&hooks);

	DefineCustomStringVariable("llmext.default_model",
							   "Model used when a call names none.",
							   "A name registered with llm_model_create.",
							   &llm_default_model,
							   NULL,
							   PGC_USERSET, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.request_timeout",
							"Longest wait for a provider's whole answer.",
							NULL,
							&llm_request_timeout_ms,
							120000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.connect_timeout",
							"Longest wait for a connection to a provider.",
							NULL,
							&llm_connect_timeout_ms,
							10000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.max_response_bytes",
							"Largest provider response body accepted.",
							"A larger answer is refused with SQLSTATE LL003.",
							&llm_max_response_bytes,
							16 * 1024 * 1024, 1024, MaxAllocSize / 2,
							PGC_USERSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	/*
	 * The ceilings: PGC_SUSET, so that no llm_user can take more of the
	 * server's memory than a superuser allowed.  The upper bounds keep every
	 * buffer they size (times JSON escaping, times cJSON's doubling) below
	 * MaxAllocSize, so that nothing fails as an internal error.
	 */
	DefineCustomIntVariable("llmext.max_response_bytes_limit",
							"Ceiling on llmext.max_response_bytes.",
							"A larger llmext.max_response_bytes counts as this.",
							&llm_max_response_bytes_limit,
							16 * 1024 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.max_template_bytes",
							"Largest prompt template accepted.",
							NULL,
							&llm_max_template_bytes,
							1024 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.max_template_nodes",
							"Most parts (variables, sections, runs of text) a prompt template may have.",
							NULL,
							&llm_max_template_nodes,
							100000, 10, 10 * 1000 * 1000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.max_rendered_bytes",
							"Largest text a prompt template may render to.",
							NULL,
							&llm_max_rendered_bytes,
							4 * 1024 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.max_request_bytes",
							"Largest request sent to a provider, and largest jsonb argument (messages, vars, options) accepted.",
							NULL,
							&llm_max_request_bytes,
							8 * 1024 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.max_batch_concurrency",
							"Ceiling on the concurrency a batch may ask for.",
							NULL,
							&llm_max_batch_concurrency,
							16, 1, 1024,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	/*
	 * Where keys may come from and where they may go.  Superuser only: an
	 * llm_admin must not be able to send the server's environment (PGDATA,
	 * another service's secret) to a host of its choosing.  Checked when a
	 * provider is created and again on every call, so that a tightened
	 * setting also holds for providers created before.
	 */
	DefineCustomStringVariable("llmext.key_env_allowed",
							   "Environment variables that may hold a provider's key (key_env).",
							   "Comma-separated names; \"*\" matches any run of characters.",
							   &llm_key_env_allowed,
							   "*_API_KEY",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("llmext.allowed_hosts",
							   "Hosts that providers' base URLs may point at.",
							   "Comma-separated host patterns, each optionally with \":port\"; \"*\" matches any run of characters, and \"*\" alone any URL.",
							   &llm_allowed_hosts,
							   "*",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("llmext.callback_timeout",
							"Longest time a request's callback may run in the background worker.",
							"A callback running longer is cancelled and the error recorded on its request.",
							&llm_callback_timeout_ms,
							5000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("llmext.keep_call_io",
							 "Whether calls keep their prompt variables, input and answer in llm.call_io.",
							 "What production calls keep so that they can become evaluation cases and training examples (llm_feedback); the worker deletes them after llmext.call_io_days.",
							 &llm_keep_call_io,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.call_io_days",
							"Days llm.call_io keeps a call's variables, input and answer (0: for ever).",
							"The background worker deletes older rows once a minute.",
							&llm_call_io_days,
							30, 0, 36500,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.queue_full_wait",
							"Longest wait of a backend for a place in the full queue of entries.",
							"Then the backend writes the entry in its own transaction.",
							&llm_queue_full_wait_ms,
							2000, 0, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.worker_concurrency",
							"Queued requests the background worker keeps in flight at once.",
							NULL,
							&llm_worker_concurrency,
							64, 1, 4096,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.batch_api_wait",
							"How long the first request queued for a provider's Batch API waits for others before the worker sends them as a batch.",
							"A batch also goes as soon as llmext.batch_api_max_requests requests for one model are waiting.",
							&llm_batch_api_wait_ms,
							60000, 0, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.batch_api_max_requests",
							"The most requests the worker puts in one provider batch.",
							"OpenAI takes up to 50,000 requests (and 200 MB) per batch.",
							&llm_batch_api_max_requests,
							50000, 1, 50000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.batch_api_max_bytes",
							"The largest input file the worker uploads for one provider batch.",
							"Requests whose lines do not fit go in the next batch; one whose line alone does not fit ends in error.",
							&llm_batch_api_max_bytes,
							200 * 1024 * 1024, 1024, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.batch_api_poll_interval",
							"How long the worker waits between two polls of a batch at a provider's Batch API.",
							NULL,
							&llm_batch_api_poll_ms,
							60000, 10, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.finetune_poll_interval",
							"How long the worker first waits between two polls of a running fine-tuning job.",
							"The wait doubles while the job reports nothing new, up to llmext.finetune_poll_max_interval, and is back to this after news.",
							&llm_finetune_poll_interval_ms,
							30000, 10, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.finetune_poll_max_interval",
							"The longest wait between two polls of a running fine-tuning job.",
							NULL,
							&llm_finetune_poll_max_ms,
							600000, 10, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("llmext.finetune_crash_after_create",
							 "Test hook: the worker kills itself right after a provider accepts a fine-tuning job.",
							 "Only for testing recovery: the job is found again by its metadata, not created twice.",
							 &llm_finetune_crash_after_create,
							 false,
							 PGC_SIGHUP, GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("llmext.batch_api_crash_after_create",
							 "Test hook: the worker kills itself right after a provider accepts a batch.",
							 "Only for testing recovery: the batch is found again by its metadata, not created twice.",
							 &llm_batch_api_crash_after_create,
							 false,
							 PGC_SIGHUP, GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);
	DefineCustomEnumVariable("llmext.cache",
							 "Whether deterministic calls use the response cache.",
							 "on: read and write; read_only: only read; off: neither.",
							 &llm_cache_mode,
							 LLM_CACHE_ON, llm_cache_mode_options,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("llmext.cache_ttl",
							"How long a cached answer is served.",
							"0 means cached answers never expire.",
							&llm_cache_ttl_s,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	/*
	 * Settings that size shared memory or name the workers exist only when
	 * preloading: PostgreSQL refuses to create them later.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomStringVariable("llmext.database",
								   "Database served by the background worker when llmext.databases is empty.",
								   NULL,
								   &llm_database,
								   "postgres",
								   PGC_POSTMASTER, 0,
								   NULL, NULL, NULL);
		DefineCustomStringVariable("llmext.databases",
								   "Comma-separated databases, each served by its own background worker.",
								   "Empty means the one database named by llmext.database.",
								   &llm_databases,
								   "",
								   PGC_POSTMASTER, GUC_LIST_INPUT,
								   NULL, NULL, NULL);
		DefineCustomIntVariable("llmext.queue_entries",
								"Ledger rows and cache entries that can wait in shared memory for the worker.",
								NULL,
								&llm_pending_capacity,
								4096, 64, 1024 * 1024,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
		DefineCustomIntVariable("llmext.queue_memory",
								"Shared memory for the text of waiting entries.",
								NULL,
								&llm_pending_memory_mb,
								256, 8, 64 * 1024,
								PGC_POSTMASTER, GUC_UNIT_MB,
								NULL, NULL, NULL);
		llm_shmem_install();
		llm_worker_register_all();
	}

	MarkGUCPrefixReserved("llmext");
}
