/**
 * What an operator sees of workflow runs: the workflow metrics on /metrics (runs by outcome, parks, step durations,
 * replayed steps, active runs), the workflow events, a span per execution with a child span per step, and the
 * audit entry of a signal with its actor.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  MemoryStore,
  UnifiedOrchestrator,
  type AuditEntry,
  type OrchestratorEvents,
  type SpanLike,
  type TracerLike,
} from '../../src/index.js';
import { eventually } from '../support/agents.js';

const made: UnifiedOrchestrator[] = [];
afterEach(async () => {
  await Promise.all(made.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 1_000 })));
});

interface Recorded {
  name: string;
  attributes: Record<string, unknown>;
  parent: unknown;
  status: { code: number; message?: string } | undefined;
  ended: boolean;
  span: SpanLike;
}

function recorder(): { tracer: TracerLike; spans: Recorded[] } {
  const spans: Recorded[] = [];
  const tracer: TracerLike = {
    startSpan(name, options, context) {
      const rec = {
        name,
        attributes: { ...options?.attributes },
        parent: context,
        status: undefined,
        ended: false,
      } as Recorded;
      rec.span = {
        addEvent: () => undefined,
        setAttributes: (a) => Object.assign(rec.attributes, a),
        setStatus: (s) => (rec.status = s),
        recordException: () => undefined,
        spanContext: () => ({ traceId: '1'.repeat(32) }),
        end: () => {
          if (rec.ended) throw new Error('span ended twice');
          rec.ended = true;
        },
      };
      spans.push(rec);
      return rec.span;
    },
  };
  return { tracer, spans };
}

/** A node with one `text` agent reporting 3 cost units a task, and a workflow that drafts, waits for approval, and publishes. */
async function node(options: Partial<ConstructorParameters<typeof UnifiedOrchestrator>[0]> = {}) {
  const o = new UnifiedOrchestrator({
    pools: [
      {
        role: 'writer',
        capabilities: ['text'],
        minAgents: 1,
        maxAgents: 1,
        create: () => ({
          execute: (ctx) => {
            ctx.reportCost(3);
            return `draft of ${String(ctx.payload)}`;
          },
        }),
      },
    ],
    durability: { claimIntervalMs: 20 },
    ...options,
  });
  made.push(o);
  o.workflow('review', {}, async (run, doc: string) => {
    const draft = await run.task<string>('draft', { type: 'draft', requires: ['text'], payload: doc });
    const approval = await run.signal<{ ok: boolean }>('approval');
    return run.step('publish', () => ({ draft, published: approval.ok }));
  });
  await o.start();
  return o;
}

describe('workflow observability', () => {
  it('counts runs, parks, steps and replays on /metrics', async () => {
    const o = await node();
    const handle = o.startWorkflow('review', 'doc-1');
    await eventually(async () => (await o.runs.get(handle.id))?.waitingFor.includes('approval') ?? false);
    await o.signal(handle.id, 'approval', { ok: true });
    expect(await handle.result).toEqual({ draft: 'draft of doc-1', published: true });
    const text = (await o.metrics())!.body;
    const value = (series: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(series + ' '));
      return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
    };
    expect(value('unified_orchestrator_workflow_runs_total{workflow="review",outcome="completed"}')).toBe(1);
    expect(value('unified_orchestrator_workflow_parks_total{workflow="review"}')).toBe(1);
    // The replay after the signal returned the draft from its checkpoint; the wait, the signal and publish ran.
    expect(value('unified_orchestrator_workflow_steps_replayed_total{workflow="review"}')).toBe(1);
    expect(
      value('unified_orchestrator_workflow_step_duration_seconds_count{workflow="review",kind="task",ok="true"}'),
    ).toBe(1);
    expect(
      value('unified_orchestrator_workflow_step_duration_seconds_count{workflow="review",kind="signal",ok="true"}'),
    ).toBe(1);
    expect(value('unified_orchestrator_workflow_runs_active')).toBe(0);
    expect((await o.runs.get(handle.id))?.cost).toBe(3);
  });

  it('emits workflow events, audits the signal with its actor, and traces each execution with its steps', async () => {
    const { tracer, spans } = recorder();
    const o = await node({ tracing: { tracer }, audit: { actor: 'service' } });
    const seen: string[] = [];
    const on = <E extends keyof OrchestratorEvents>(event: E) => o.on(event, () => seen.push(event));
    on('workflow:started');
    on('workflow:step');
    on('workflow:paused');
    on('workflow:ended');
    const audits: AuditEntry[] = [];
    o.on('audit', (e) => audits.push(e));
    const handle = o.startWorkflow('review', 'doc-2');
    await eventually(() => seen.includes('workflow:paused'));
    expect(await o.signal(handle.id, 'approval', { ok: false }, { actor: 'alice' })).toBe(true);
    await handle.result;
    expect(seen).toEqual([
      'workflow:started',
      'workflow:step', // draft
      'workflow:paused', // parked on the approval
      'workflow:started', // woken by the signal
      'workflow:step', // approval
      'workflow:step', // publish
      'workflow:ended',
    ]);
    expect(audits.find((a) => a.action === 'workflow.signal')).toMatchObject({
      actor: 'alice',
      detail: { runId: handle.id, signal: 'approval', delivered: true },
    });
    expect(o.tracing).toBe(true); // @opentelemetry/api is a dev dependency here
    const runs = spans.filter((s) => s.name === 'workflow review');
    expect(runs).toHaveLength(2);
    expect(runs.map((s) => s.attributes['workflow.outcome'])).toEqual(['parked', 'completed']);
    expect(runs.every((s) => s.ended)).toBe(true);
    const steps = spans.filter((s) => s.name.startsWith('step '));
    expect(steps.map((s) => s.name)).toEqual(['step draft', 'step approval', 'step publish']);
    expect(steps.every((s) => s.parent !== undefined && s.ended)).toBe(true);
  });

  it('reports runs of a version no node has, until a node with it takes them', async () => {
    const store = new MemoryStore();
    const durability = { claimIntervalMs: 20, unclaimedAfterMs: 100 };
    const api = new UnifiedOrchestrator({ store, durability });
    made.push(api);
    api.workflow('etl', { version: '1' }, async () => 'v1');
    await api.start();
    const handle = api.startWorkflow('etl', null, { version: '2' });
    await handle.stored;
    await eventually(async () => (await api.runs.get(handle.id))?.owner === null);
    // Looked for every unclaimedAfterMs / 2.
    await eventually(() => (api.stats().durable?.unclaimed.length ?? 0) > 0, 3_000);
    expect(api.stats().durable?.unclaimed).toEqual([
      expect.objectContaining({ type: 'workflow:etl', requires: ['workflow:etl@2'], count: 1 }),
    ]);
    const health = api.health().components.store!;
    expect(health.status).toBe('degraded');
    expect(health.detail).toContain('1 × workflow:etl [workflow:etl@2]');
    expect((await api.metrics())!.body).toContain('unified_orchestrator_runs_unclaimed 1');
    // A node with version 2 takes it; the report clears at the next look.
    const worker = new UnifiedOrchestrator({ store, durability, metrics: false });
    made.push(worker);
    worker.workflow('etl', { version: '2' }, async () => 'v2');
    await worker.start();
    expect(await handle.result).toBe('v2');
    await eventually(() => api.stats().durable?.unclaimed.length === 0, 3_000);
    expect(api.health().components.store!.status).toBe('healthy');
  });
});
