/*
 * shmem.c — llmext's shared memory (see shmem.h).
 *
 * Fixed-size state (the entry slots, the worker registry) is reserved at
 * server start.  Entry payloads vary from a few hundred bytes to megabytes
 * (a cached answer), so they live in a dynamic shared area that the first
 * backend to need it creates and pins; the others attach to it.
 */
#include "store/shmem.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"

LlmShared  *llm_shared = NULL;
int			llm_pending_capacity = 4096;
int			llm_pending_memory_mb = 256;

static dsa_area *area = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
shared_size(void)
{
	return add_size(offsetof(LlmShared, entries),
					mul_size(llm_pending_capacity, sizeof(LlmPendingEntry)));
}

static void
request_shmem(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(shared_size());
	RequestNamedLWLockTranche("llmext", 1);
}

static void
startup_shmem(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	llm_shared = ShmemInitStruct("llmext", shared_size(), &found);
	if (!found)
	{
		memset(llm_shared, 0, shared_size());
		llm_shared->lock = &(GetNamedLWLockTranche("llmext"))->lock;
		llm_shared->dsa_tranche = LWLockNewTrancheId();
		llm_shared->area_handle = DSM_HANDLE_INVALID;
		llm_shared->next_seq = 1;
		llm_shared->capacity = llm_pending_capacity;
	}
	LWLockRelease(AddinShmemInitLock);
}

void
llm_shmem_install(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = request_shmem;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = startup_shmem;
}

dsa_area *
llm_shared_area(void)
{
	MemoryContext old;

	Assert(llm_shared != NULL);
	if (area != NULL)
		return area;

	old = MemoryContextSwitchTo(TopMemoryContext);
	LWLockRegisterTranche(llm_shared->dsa_tranche, "llmext_area");
	LWLockAcquire(llm_shared->lock, LW_EXCLUSIVE);
	if (llm_shared->area_handle == DSM_HANDLE_INVALID)
	{
		area = dsa_create(llm_shared->dsa_tranche);
		dsa_pin(area);
		dsa_set_size_limit(area, (size_t) llm_pending_memory_mb * 1024 * 1024);
		llm_shared->area_handle = dsa_get_handle(area);
	}
	else
		area = dsa_attach(llm_shared->area_handle);
	dsa_pin_mapping(area);
	LWLockRelease(llm_shared->lock);
	MemoryContextSwitchTo(old);
	return area;
}

Latch *
llm_worker_latch(Oid dboid)
{
	Latch	   *latch = NULL;

	if (llm_shared == NULL)
		return NULL;
	LWLockAcquire(llm_shared->lock, LW_SHARED);
	for (int i = 0; i < LLM_MAX_WORKERS; i++)
	{
		if (llm_shared->workers[i].pid != 0 && llm_shared->workers[i].dboid == dboid)
		{
			latch = llm_shared->workers[i].latch;
			break;
		}
	}
	LWLockRelease(llm_shared->lock);
	return latch;
}
