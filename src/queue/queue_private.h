/*
 * queue_private.h — what queue.c (claiming, sending) and queue_write.c
 * (writing outcomes, callbacks) share about the worker's queue.
 */
#ifndef LLMEXT_QUEUE_PRIVATE_H
#define LLMEXT_QUEUE_PRIVATE_H

#include "postgres.h"

#include "call/call.h"
#include "net/engine.h"
#include "executor/spi.h"
#include "lib/ilist.h"
#include "queue/queue.h"
#include "utils/timestamp.h"

/* One claimed request, from its claim until its outcome is written. */
typedef struct QueuedCall
{
	dlist_node	node;
	MemoryContext context;		/* everything of this request; deleted when it ends */
	int64		id;
	int32		priority;
	char	   *tag;			/* its batch, or NULL */
	Oid			submitter;		/* its acting role */
	Oid			login;			/* its login role (InvalidOid: dropped since) */
	int			attempts;
	Oid			callback;
	LlmCallRequest req;
	LlmCallResult result;
	LlmPreparedCall *call;
	char	   *error;			/* set when it could not even be prepared */
	/* the outcome, decided before it is written */
	const char *state;			/* done or error; NULL: retry */
	char	   *outcome_error;
	double		retry_delay_ms;
} QueuedCall;

struct LlmQueue
{
	MemoryContext context;
	LlmEngine  *engine;
	int			running;
	dlist_head	in_flight;		/* sent, waiting for the provider */
	/*
	 * Claimed, prepared and admitted, waiting for a place: a finished
	 * transfer's place is refilled from here at once, with no transaction,
	 * while the next claim tops this up.  In claim order (priority, then
	 * id), so that a later claim of a higher priority goes first.
	 */
	dlist_head	ready;
	int			nready;
	dlist_head	done;			/* finished, waiting to be written */
	/*
	 * After rate limits held requests back, claiming rows only to put them
	 * back would churn the table: each claim then takes only as many rows as
	 * our own transfers have freed since the last, and one more, and waits
	 * for one to end or for claim_after.
	 */
	bool		held;
	int			freed_while_held;
	TimestampTz claim_after;
	/* the earliest run_after this worker gave a row it put back; 0: none */
	TimestampTz next_due;
	/* where the last claim stopped, in (priority DESC, id) order */
	bool		cursor_valid;
	int32		cursor_priority;
	int64		cursor_id;
	TimestampTz cursor_until;
	/*
	 * Evaluation answers written and not yet scored (eval_collect.c): they
	 * are scored in sets, once there are enough or the first has waited long
	 * enough.  Lost with the worker; its successor scores what is left.
	 */
	int64	   *eval_ids;
	int			n_eval_ids;
	int			max_eval_ids;
	TimestampTz eval_since;
};

/*
 * The columns of llm.requests a claimed request is read from, in this
 * order (llm_queue_call_of_row reads some by position).
 */
#define LLM_QUEUE_ROW_COLUMNS \
	"id, submitted_by, attempts, model, messages::text, options::text, prompt_name," \
	" prompt_version, callback::oid, tag, priority, login_role, vars::text"

extern QueuedCall *llm_queue_call_of_row(LlmQueue *queue, HeapTuple tuple, TupleDesc desc);
/* Prepares a request as its submitter (llm_call_prepare); errors become qc->error. */
extern void llm_queue_prepare(QueuedCall *qc);

/* A plan kept for the life of the worker. */
extern SPIPlanPtr llm_queue_keep_plan(const char *sql, int nargs, Oid *types);

/* A row put back to run after delay_ms: the worker wakes up for it. */
extern void llm_queue_expect_due(LlmQueue *queue, double delay_ms);

/*
 * The time limit of user code the worker runs, llmext.callback_timeout:
 * cancels it once it runs past, and again every tick while it goes on.
 */
extern void llm_queue_timer_start(void);
extern void llm_queue_timer_stop(void);
extern bool llm_queue_timer_overran(void);

/* Evaluation answers, scored in sets (eval_collect.c). */
extern void llm_queue_note_eval(LlmQueue *queue, QueuedCall *qc);
extern long llm_queue_eval_wait_ms(LlmQueue *queue, TimestampTz now, long wait_ms);

/* The batches with requests claimed and not yet ended here, as a text[]. */
extern Datum llm_queue_busy_tags(LlmQueue *queue);

#endif							/* LLMEXT_QUEUE_PRIVATE_H */
