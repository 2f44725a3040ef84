/**
 * What every RunStore implementation shares apart from its storage: the checks of its arguments (so MemoryStore and
 * the SQL stores refuse the same input with the same ValidationError), the JSON form of results, and the `list`
 * cursor.
 */
import { ValidationError } from '../errors.js';
import type {
  StepRecord,
  ParkInput,
  RunEventInput,
  RunQuery,
  RunStatus,
  SignalInput,
  StepInput,
  StoredError,
  TerminalRunStatus,
} from './store.js';

/** Every status a run can have. */
export const RUN_STATUSES: readonly RunStatus[] = [
  'queued',
  'running',
  'completed',
  'failed',
  'cancelled',
  'timed-out',
  'dead-lettered',
];

/** The kinds a node may append (`queued` and `adopted` are the store's own). */
const APPENDABLE = new Set<string>([
  'started',
  'retrying',
  'deferred',
  'interrupted',
  'released',
  'completed',
  'failed',
  'cancelled',
  'timed-out',
  'dead-lettered',
]);

/** Default and largest page of `list`, and default of `deadLetters`. */
export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;

/** Refuses events the store may not record (ValidationError naming the event). */
export function checkEvents(events: readonly RunEventInput[]): void {
  events.forEach((event, i) => {
    if (!APPENDABLE.has(event.kind)) {
      throw new ValidationError(
        `events[${i}].kind`,
        `A node cannot append a '${String(event.kind)}' event: 'queued', 'adopted', 'parked' and 'signalled' are written by the store itself (insert, claim, park, signal); append one of ${[...APPENDABLE].join(', ')}`,
      );
    }
    if (typeof event.runId !== 'string' || event.runId === '') {
      throw new ValidationError(`events[${i}].runId`, 'An event needs the id of its run (a non-empty string)');
    }
    if (typeof event.nodeId !== 'string' || event.nodeId === '') {
      throw new ValidationError(`events[${i}].nodeId`, 'An event needs the id of the node that writes it');
    }
    if (!Number.isFinite(event.at)) {
      throw new ValidationError(`events[${i}].at`, 'An event needs its time, `at`, in epoch milliseconds');
    }
    if (event.cost !== undefined && !(Number.isFinite(event.cost) && event.cost >= 0)) {
      throw new ValidationError(`events[${i}].cost`, `A cost is a finite number ≥ 0 (got ${String(event.cost)})`);
    }
  });
}

/** Refuses a claim whose limit is not a positive integer. */
export function checkClaim(limit: number, maxRecoveries: number): void {
  if (!Number.isInteger(limit) || limit < 1) {
    throw new ValidationError('limit', `A claim takes at least one run: limit must be an integer ≥ 1 (got ${limit})`);
  }
  if (!Number.isInteger(maxRecoveries) || maxRecoveries < 1) {
    throw new ValidationError('maxRecoveries', `maxRecoveries must be an integer ≥ 1 (got ${maxRecoveries})`);
  }
}

/** Refuses a lease that is not a number of milliseconds ≥ 0 (0 ends the lease at once). */
export function checkLease(leaseMs: number): void {
  if (!Number.isFinite(leaseMs) || leaseMs < 0) {
    throw new ValidationError('leaseMs', `A lease lasts a number of milliseconds ≥ 0 (got ${leaseMs})`);
  }
}

/** Refuses a run without an id, duplicate ids within one `insert`, and a `notBefore` that is not a time. */
export function checkNewRuns(runs: readonly { readonly id: string; readonly notBefore?: number | null }[]): void {
  const seen = new Set<string>();
  runs.forEach((run, i) => {
    if (typeof run.id !== 'string' || run.id === '') {
      throw new ValidationError(`runs[${i}].id`, 'A run needs an id (a non-empty string)');
    }
    if (run.notBefore != null && !isEpoch(run.notBefore)) {
      throw new ValidationError(`runs[${i}].notBefore`, 'notBefore is a time in epoch milliseconds, or null');
    }
    if (seen.has(run.id)) {
      throw new ValidationError(
        `runs[${i}].id`,
        `Run id ${run.id} appears twice in one insert: give each run its own id`,
      );
    }
    seen.add(run.id);
  });
}

/** `value` as JSON can hold it (a deep copy), or `null` when JSON cannot (a BigInt, a cycle, `undefined`). */
export function jsonValue(value: unknown): unknown {
  try {
    const text = JSON.stringify(value);
    return text === undefined ? null : (JSON.parse(text) as unknown);
  } catch {
    return null;
  }
}

/** Where a page of `list` ends: the last run's `createdAt` and id (newest first, ties by id descending). */
export interface ListPosition {
  readonly createdAt: number;
  readonly id: string;
}

/** The checked filters of a `list` query. */
export interface ListFilters {
  readonly tenantId: string | undefined;
  readonly type: string | undefined;
  readonly idempotencyKey: string | undefined;
  readonly statuses: readonly RunStatus[] | undefined;
  readonly since: number | undefined;
  readonly until: number | undefined;
  readonly limit: number;
  readonly after: ListPosition | undefined;
}

export function encodeCursor(position: ListPosition): string {
  return Buffer.from(JSON.stringify([position.createdAt, position.id]), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): ListPosition {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(parsed) && parsed.length === 2) {
      const [createdAt, id] = parsed as [unknown, unknown];
      if (typeof createdAt === 'number' && Number.isFinite(createdAt) && typeof id === 'string') {
        return { createdAt, id };
      }
    }
  } catch {
    // Falls through to the error below.
  }
  throw new ValidationError('cursor', 'The cursor is not one `list` returned: pass back a page cursor unchanged');
}

/** Checks a `list` query and gives its filters. */
export function listFilters(query: RunQuery = {}): ListFilters {
  const limit = query.limit ?? DEFAULT_PAGE;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
    throw new ValidationError('limit', `A page holds 1 to ${MAX_PAGE} runs (got ${limit})`);
  }
  let statuses: readonly RunStatus[] | undefined;
  if (query.status !== undefined) {
    statuses = typeof query.status === 'string' ? [query.status] : query.status;
    for (const status of statuses) {
      if (!RUN_STATUSES.includes(status)) {
        throw new ValidationError(
          'status',
          `Unknown run status '${String(status)}': one of ${RUN_STATUSES.join(', ')}`,
        );
      }
    }
  }
  for (const field of ['since', 'until'] as const) {
    const value = query[field];
    if (value !== undefined && !Number.isFinite(value)) {
      throw new ValidationError(field, `${field} is a time in epoch milliseconds (got ${value})`);
    }
  }
  return {
    tenantId: query.tenantId,
    type: query.type,
    idempotencyKey: query.idempotencyKey,
    statuses,
    since: query.since,
    until: query.until,
    limit,
    after: query.cursor === undefined ? undefined : decodeCursor(query.cursor),
  };
}

/** Refuses a time that is not a number of epoch milliseconds (Infinity is allowed: "everything before now"). */
export function checkTime(value: number, field: string): void {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new ValidationError(field, `${field} is a time in epoch milliseconds (got ${String(value)})`);
  }
}

/** Checks the limit of `deadLetters` or `prune`. */
export function checkLimit(limit: number, field = 'limit'): void {
  if (!Number.isInteger(limit) || limit < 1) {
    throw new ValidationError(field, `${field} must be an integer ≥ 1 (got ${limit})`);
  }
}

/** The terminal statuses, which are also the kinds of terminal events. */
export const TERMINAL_STATUSES: readonly TerminalRunStatus[] = [
  'completed',
  'failed',
  'cancelled',
  'timed-out',
  'dead-lettered',
];

/** The status a terminal event kind ends a run with (its own name), or `undefined` for a non-terminal kind. */
export function terminalStatusOf(kind: string): TerminalRunStatus | undefined {
  return (TERMINAL_STATUSES as readonly string[]).includes(kind) ? (kind as TerminalRunStatus) : undefined;
}

/** The message of a run that `claim` dead-lettered, with `count` (the SQL stores pass `%s` for `format()`). */
export function recoveryDeadLetterMessage(count: string): string {
  return `The run was taken over from a node that died while holding it ${count} time(s) and was dead-lettered: it may be what kills its nodes`;
}

/** The error of a run that `claim` dead-lettered: taken from a dead node `recoveries` times. */
export function recoveryDeadLetterError(recoveries: number): StoredError {
  return {
    name: 'TaskDeadLetteredError',
    message: recoveryDeadLetterMessage(String(recoveries)),
    code: 'TASK_DEAD_LETTERED',
  };
}

const STEP_KINDS = new Set<string>(['task', 'step', 'signal', 'sleep']);
const STEP_STATUSES = new Set<string>(['running', 'waiting', 'completed', 'failed']);

/** The largest step position and attempt count the stores hold (the SQL stores' `integer` columns). */
export const MAX_STEP_INTEGER = 2_147_483_647;

/** Whether `value` is a time the stores hold: a finite number of epoch milliseconds within ±2^53. */
export function isEpoch(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && Math.abs(value) <= Number.MAX_SAFE_INTEGER;
}

/** Refuses step records a store may not write (ValidationError naming the field). */
export function checkSteps(steps: readonly StepInput[], field = 'steps'): void {
  steps.forEach((step, i) => {
    const at = `${field}[${i}]`;
    if (typeof step.runId !== 'string' || step.runId === '') {
      throw new ValidationError(`${at}.runId`, 'A step needs the id of its run (a non-empty string)');
    }
    if (!Number.isInteger(step.seq) || step.seq < 0 || step.seq > MAX_STEP_INTEGER) {
      throw new ValidationError(
        `${at}.seq`,
        `A step's position is an integer from 0 to ${MAX_STEP_INTEGER} (got ${String(step.seq)})`,
      );
    }
    if (typeof step.name !== 'string' || step.name === '') {
      throw new ValidationError(`${at}.name`, 'A step needs a name (a non-empty string)');
    }
    if (!STEP_KINDS.has(step.kind)) {
      throw new ValidationError(
        `${at}.kind`,
        `A step is one of ${[...STEP_KINDS].join(', ')} (got '${String(step.kind)}')`,
      );
    }
    if (!STEP_STATUSES.has(step.status)) {
      throw new ValidationError(
        `${at}.status`,
        `A step's status is one of ${[...STEP_STATUSES].join(', ')} (got '${String(step.status)}')`,
      );
    }
    if (!isEpoch(step.startedAt)) {
      throw new ValidationError(`${at}.startedAt`, 'A step needs its start time in epoch milliseconds');
    }
    for (const key of ['endedAt', 'wakeAt'] as const) {
      const value = step[key];
      if (value != null && !isEpoch(value)) {
        throw new ValidationError(`${at}.${key}`, `${key} is a time in epoch milliseconds, or null`);
      }
    }
    if (step.cost !== undefined && !(Number.isFinite(step.cost) && step.cost >= 0)) {
      throw new ValidationError(`${at}.cost`, `A step's cost is a finite number ≥ 0 (got ${String(step.cost)})`);
    }
    if (
      step.attempts !== undefined &&
      !(Number.isInteger(step.attempts) && step.attempts >= 0 && step.attempts <= MAX_STEP_INTEGER)
    ) {
      throw new ValidationError(
        `${at}.attempts`,
        `A step's attempts are an integer from 0 to ${MAX_STEP_INTEGER} (got ${String(step.attempts)})`,
      );
    }
    if (step.signalId != null && !(Number.isSafeInteger(step.signalId) && step.signalId >= 1)) {
      throw new ValidationError(
        `${at}.signalId`,
        `signalId is the id of a signal (an integer ≥ 1, from history()), or null (got ${String(step.signalId)})`,
      );
    }
  });
}

/** Refuses parks a store may not apply. */
export function checkParks(parks: readonly ParkInput[]): void {
  parks.forEach((park, i) => {
    if (typeof park.runId !== 'string' || park.runId === '') {
      throw new ValidationError(`parks[${i}].runId`, 'A park needs the id of its run (a non-empty string)');
    }
    if (typeof park.nodeId !== 'string' || park.nodeId === '') {
      throw new ValidationError(`parks[${i}].nodeId`, 'A park needs the id of the node that owns the run');
    }
    if (!isEpoch(park.at)) {
      throw new ValidationError(`parks[${i}].at`, 'A park needs its time, `at`, in epoch milliseconds');
    }
    if (park.notBefore !== null && !isEpoch(park.notBefore)) {
      throw new ValidationError(`parks[${i}].notBefore`, 'notBefore is a time in epoch milliseconds, or null');
    }
    if (!Array.isArray(park.waitingFor) || park.waitingFor.some((n) => typeof n !== 'string' || n === '')) {
      throw new ValidationError(`parks[${i}].waitingFor`, 'waitingFor is a list of signal names (non-empty strings)');
    }
    if (park.notBefore === null && park.waitingFor.length === 0) {
      throw new ValidationError(
        `parks[${i}]`,
        'A parked run must wait for something: give notBefore, or signal names in waitingFor',
      );
    }
    checkSteps(park.steps, `parks[${i}].steps`);
    park.steps.forEach((step, j) => {
      if (step.runId !== park.runId) {
        throw new ValidationError(
          `parks[${i}].steps[${j}].runId`,
          `A park writes steps of its own run only: this step is of run ${step.runId}, the park of ${park.runId}`,
        );
      }
    });
  });
}

/** Refuses a signal a store may not deliver. */
export function checkSignal(signal: SignalInput): void {
  if (typeof signal.runId !== 'string' || signal.runId === '') {
    throw new ValidationError('runId', 'A signal needs the id of the run it is sent to (a non-empty string)');
  }
  if (typeof signal.name !== 'string' || signal.name === '') {
    throw new ValidationError('name', 'A signal needs a name (a non-empty string): the name run.signal() waits for');
  }
  if (signal.actor !== null && typeof signal.actor !== 'string') {
    throw new ValidationError('actor', "A signal's actor is a string (who sent it), or null");
  }
  if (!isEpoch(signal.at)) {
    throw new ValidationError('at', 'A signal needs its time, `at`, in epoch milliseconds');
  }
  if (typeof signal.nodeId !== 'string' || signal.nodeId === '') {
    throw new ValidationError('nodeId', 'A signal needs the id of the node that sends it');
  }
  if (signal.tenantId !== undefined && typeof signal.tenantId !== 'string') {
    throw new ValidationError('tenantId', 'tenantId is a string when given');
  }
}

/** Refuses a schedule name that is not a non-empty string. */
export function checkScheduleName(name: string): void {
  if (typeof name !== 'string' || name === '') {
    throw new ValidationError('name', 'A schedule needs a name (a non-empty string)');
  }
}

/** Refuses a schedule tick that is not a time the stores hold (a finite number of epoch ms within ±2^53). */
export function checkTick(tickMs: number): void {
  if (!isEpoch(tickMs)) {
    throw new ValidationError('tickMs', `tickMs is a time in epoch milliseconds (got ${String(tickMs)})`);
  }
}

/** The record a store keeps of a step as a node wrote it (its JSON copied, the defaults filled in). */
export function stepRecordOf(step: StepInput): StepRecord {
  return {
    runId: step.runId,
    seq: step.seq,
    name: step.name,
    kind: step.kind,
    status: step.status,
    result: step.status === 'completed' ? jsonValue(step.result ?? null) : null,
    error: step.error ?? null,
    cost: step.cost ?? 0,
    childId: step.childId ?? null,
    agentId: step.agentId ?? null,
    attempts: step.attempts ?? 0,
    startedAt: step.startedAt,
    endedAt: step.endedAt ?? null,
    wakeAt: step.wakeAt ?? null,
  };
}
