/**
 * Stress: a million tasks (quick: 50,000) of mixed priorities through 75 agents, 20% of attempts failing, each
 * task allowed 3 attempts with no backoff delay, at most 20,000 in flight. Reports tasks per minute and checks the
 * engine's promise: every accepted task reached exactly one terminal state.
 *
 * The check counts terminal events (`task:completed` + `task:failed`) per task id against the ids handed out by
 * `delegate`, compares the outcomes with `stats()`, and requires `stats()` to balance with nothing left waiting,
 * running or backing off.
 */
import { UnifiedOrchestrator, type Agent, type TaskOutcome } from 'unified-orchestrator';
import { randomInt, runWindowed, seededRandom, type WindowedRun } from './load.js';
import { FLEET, type BenchSettings } from './settings.js';

export interface StressChecks {
  /** Terminal events seen. Must equal the tasks accepted. */
  readonly terminalEvents: number;
  /** Terminal events for an id that was not live (a second terminal state, or an unknown id). Must be 0. */
  readonly strayTerminalEvents: number;
  /** Accepted tasks that never reached a terminal state. Must be 0. */
  readonly unfinished: number;
  /** submitted = completed + failed + cancelled + timedOut + deadLettered + rejected + deduplicated. */
  readonly statsBalanced: boolean;
  /** waiting, running and backingOff all 0 at the end. */
  readonly idleAtEnd: boolean;
  /** Outcome counts from events equal those in `stats()`, and each settled promise agrees. */
  readonly eventsMatchStats: boolean;
}

export interface StressResult {
  readonly tasks: number;
  readonly window: number;
  readonly failureRate: number;
  readonly maxAttempts: number;
  readonly elapsedMs: number;
  readonly tasksPerSec: number;
  readonly tasksPerMinute: number;
  readonly attempts: number;
  readonly failedAttempts: number;
  readonly outcomes: Readonly<Record<TaskOutcome, number>>;
  readonly checks: StressChecks;
  /** Every check above holds. */
  readonly everyTaskTerminalOnce: boolean;
}

export async function benchStress(settings: BenchSettings): Promise<StressResult> {
  const { tasks, window, failureRate, maxAttempts } = settings.stress;
  const random = seededRandom(0x5eed);
  const failure = new Error('simulated agent failure'); // one instance: the cost under test is the engine's, not new Error()
  let attempts = 0;
  let failedAttempts = 0;
  const agent: Agent = {
    async execute() {
      attempts++;
      if (random() < failureRate) {
        failedAttempts++;
        throw failure;
      }
    },
  };
  const orchestrator = new UnifiedOrchestrator({
    pools: [
      {
        role: 'worker',
        capabilities: ['work'],
        create: () => agent,
        minAgents: FLEET,
        maxAgents: FLEET,
        warmSpares: 0,
      },
    ],
    retry: { baseDelayMs: 0, maxDelayMs: 0 },
  });

  const live = new Set<string>();
  const outcomes: Record<TaskOutcome, number> = {
    completed: 0,
    failed: 0,
    cancelled: 0,
    'timed-out': 0,
    'dead-lettered': 0,
  };
  let terminalEvents = 0;
  let strayTerminalEvents = 0;
  const terminal = (taskId: string, outcome: TaskOutcome): void => {
    terminalEvents++;
    outcomes[outcome]++;
    if (!live.delete(taskId)) strayTerminalEvents++;
  };
  orchestrator.on('task:completed', (e) => terminal(e.taskId, 'completed'));
  orchestrator.on('task:failed', (e) => terminal(e.taskId, e.outcome));

  await orchestrator.start();
  let run: WindowedRun;
  try {
    run = await runWindowed(tasks, window, () => {
      const handle = orchestrator.delegate({
        type: 'stress',
        requires: ['work'],
        priority: randomInt(random, -1_000, 1_000),
        maxAttempts,
      });
      live.add(handle.id);
      return handle.result;
    });
  } finally {
    await orchestrator.stop();
  }
  const s = orchestrator.stats();
  const accepted = s.submitted - s.rejected - s.deduplicated;
  const checks: StressChecks = {
    terminalEvents,
    strayTerminalEvents,
    unfinished: live.size,
    statsBalanced:
      s.submitted === s.completed + s.failed + s.cancelled + s.timedOut + s.deadLettered + s.rejected + s.deduplicated,
    idleAtEnd: s.waiting === 0 && s.running === 0 && s.backingOff === 0,
    eventsMatchStats:
      outcomes.completed === s.completed &&
      outcomes.failed === s.failed &&
      outcomes.cancelled === s.cancelled &&
      outcomes['timed-out'] === s.timedOut &&
      outcomes['dead-lettered'] === s.deadLettered &&
      run.fulfilled === s.completed &&
      run.rejected === s.failed + s.cancelled + s.timedOut + s.deadLettered + s.rejected,
  };
  const everyTaskTerminalOnce =
    accepted === tasks &&
    terminalEvents === accepted &&
    strayTerminalEvents === 0 &&
    checks.unfinished === 0 &&
    checks.statsBalanced &&
    checks.idleAtEnd &&
    checks.eventsMatchStats;
  const tasksPerSec = (tasks * 1_000) / run.elapsedMs;
  return {
    tasks,
    window,
    failureRate,
    maxAttempts,
    elapsedMs: run.elapsedMs,
    tasksPerSec,
    tasksPerMinute: tasksPerSec * 60,
    attempts,
    failedAttempts,
    outcomes,
    checks,
    everyTaskTerminalOnce,
  };
}
