/*
 * budget.h — spending limits, checked before a provider request.
 */
#ifndef LLMEXT_BUDGET_H
#define LLMEXT_BUDGET_H

/*
 * Raises an ERROR (SQLSTATE LL402) when a budget that applies to the
 * current role is spent for its period: ledger rows plus queued spend.
 */
extern void llm_budget_check(void);

#endif							/* LLMEXT_BUDGET_H */
