/**
 * Admission: the guardrails a valid task must pass to be accepted, before the engine looks for an agent.
 *
 * Graceful degradation: under critical resource pressure, a task below the pressure monitor's priority floor is
 * shed with ResourcePressureError. Budgets: a tenant whose cost budget is spent has its new tasks refused with
 * BudgetExceededError (the same error, built by {@link budgetExceededError}, that reports a charge over the limit).
 * The refusals that depend on routing (no capable agent, queue full) stay with the engine, which knows by then
 * whether the task must wait.
 */
import { BudgetExceededError, ClusterLimitsUnavailableError, ResourcePressureError } from '../errors.js';
import type { TenantBudgets } from '../resources/budgets.js';
import type { ResourceManager } from '../resources/resource-manager.js';
import type { TaskSpec } from './task.js';

/** Why the task is refused, or `undefined` when it may be accepted. */
export function admissionRefusal(
  resources: Pick<ResourceManager, 'pressureMonitor' | 'budgets'>,
  spec: TaskSpec,
  now: number,
): Error | undefined {
  const pressure = resources.pressureMonitor;
  if (pressure !== undefined && pressure.level === 'critical' && spec.priority < pressure.options.priorityFloor) {
    return new ResourcePressureError('critical', {
      priority: spec.priority,
      priorityFloor: pressure.options.priorityFloor,
    });
  }
  const { budgets } = resources;
  if (spec.tenantId !== undefined && budgets.active) {
    if (budgets.exhausted(spec.tenantId, now)) return budgetExceededError(budgets, spec.tenantId, now);
    // Cluster-wide budgets fail closed while Redis does not answer (see src/resources/cluster-limits.ts).
    const away = budgets.cluster?.unavailable;
    if (away !== undefined && budgets.limitOf(spec.tenantId) !== Infinity)
      return new ClusterLimitsUnavailableError(spec.tenantId, away.retryMs, away.reason);
  }
  return undefined;
}

/** The tenant's budget as it stands at `now`, as an error: spent, limit, window, and when it is under again. */
export function budgetExceededError(budgets: TenantBudgets, tenantId: string, now: number): BudgetExceededError {
  return new BudgetExceededError(
    tenantId,
    budgets.spent(tenantId, now),
    budgets.limitOf(tenantId),
    budgets.windowMs,
    budgets.msUntilUnder(tenantId, now),
  );
}
