/*
 * budget.h — spending limits, checked before a provider request.
 */
#ifndef LLMEXT_BUDGET_H
#define LLMEXT_BUDGET_H

struct LlmFailure;

/*
 * The refusal (SQLSTATE LL402) when a budget that applies to the current
 * role is spent for its period (ledger plus queued spend), else NULL.
 */
extern struct LlmFailure *llm_budget_check(void);

#endif							/* LLMEXT_BUDGET_H */
