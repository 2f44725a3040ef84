/**
 * The operator CLI (`unified-orchestrator`, src/bin.ts) run as a real child process against a real redis-server and
 * a cluster of UnifiedOrchestrators with RedisBridges in this process: status, halt and resume, the traffic split,
 * shadow mode, rollback, a node joining during a halt, and the exit codes of failures and wrong usage.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { hostname, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  OrchestratorsCompatibilityAdapter,
  RedisBridge,
  TrafficRouter,
  UnifiedOrchestrator,
  type AuditEntry,
  type LegacyOrchestrator,
  type NodeInfo,
  type TrafficRouterEvents,
} from 'unified-orchestrator';
import { nodeKey, publishControl, readStanding, writeNode } from '../../src/bridge/redis-control.js';
import { MessageSigner } from '../../src/bridge/signing.js';
import { wait } from '../support/agents.js';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SECRET = `cli-tests-secret-${randomBytes(8).toString('hex')}`;
const WRONG_SECRET = 'not-the-cluster-secret-at-all-0123';
/** One namespace per run of this file; each cluster takes its own suffix of it. */
const RUN_NS = namespace('uo-cli');
const AGENT_MS = 300;

// --- The CLI as a child process ---------------------------------------------------------------------

interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** The child's pid: the CLI signs its messages `from: cli@<host>:<pid>`. */
  readonly pid: number;
  readonly ms: number;
}

/** Children still running (none may be left when the file ends). */
const children = new Set<ChildProcess>();

/**
 * Runs `unified-orchestrator <args>` with UO_SECRET set to the cluster's secret; `env` adds to (or, with `undefined`,
 * removes from) the environment. A child that hangs is killed after 25 s and reported with code null.
 */
function cli(args: readonly string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  const started = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/bin.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, UO_SECRET: SECRET, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 25_000);
  return new Promise((resolve, reject) => {
    child.once('error', (error) => {
      clearTimeout(killer);
      children.delete(child);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(killer);
      children.delete(child);
      resolve({ code, stdout, stderr, pid: child.pid!, ms: Date.now() - started });
    });
  });
}

/** The `from` the CLI run `r` signed its messages with. */
const cliFrom = (r: CliResult): string => `cli@${hostname()}:${r.pid}`;

/** The CLI's JSON answer: the lists these tests map or sort are typed, every other field is compared whole. */
interface CliJson {
  readonly [field: string]: unknown;
  /** `status` and `traffic`: one entry per live node. */
  readonly nodes: ReadonlyArray<{ readonly nodeId: string }>;
  /** A command that waits: the nodes that confirmed it. */
  readonly confirmed: readonly string[];
}

/** Parses the CLI's one JSON object (and fails with the output when it is not one). */
function json(r: CliResult): CliJson {
  try {
    return JSON.parse(r.stdout) as CliJson;
  } catch {
    throw new Error(`expected one JSON object on stdout, got:\n${r.stdout}\nstderr:\n${r.stderr}`);
  }
}

/** The table row of `nodeId` in the CLI's human output. */
function row(output: string, nodeId: string): string {
  const line = output.split('\n').find((l) => l.startsWith(`${nodeId} `));
  if (!line) throw new Error(`no row for ${nodeId} in:\n${output}`);
  return line;
}

async function eventually(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await wait(10);
  }
}

async function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

// --- The cluster ------------------------------------------------------------------------------------

/** A legacy implementation that answers every call itself (nothing here routes calls; the routers only follow the split). */
const fakeLegacy: LegacyOrchestrator = {
  spawnAgent: async (role) => `legacy-agent-${role}`,
  delegateTaskToAgent: async () => 'legacy-task',
  getAgentStatus: async (id) => ({ error: { code: 'AGENT_NOT_FOUND', message: id } }),
  getTaskStatus: async (id) => ({ error: { code: 'TASK_NOT_FOUND', message: id } }),
  shutdownAgent: async (id) => ({ agent_id: id, status: 'terminated' }),
};

interface TestNode {
  readonly id: string;
  readonly orchestrator: UnifiedOrchestrator;
  readonly bridge: RedisBridge;
  readonly adapter: OrchestratorsCompatibilityAdapter;
  readonly router: TrafficRouter;
  /** Attempts the node's agents started. */
  executions: number;
  /** The abort reasons of attempts cut short. */
  readonly aborts: unknown[];
  readonly halted: Array<{ reason: string; interrupted: number; held: number; from?: string }>;
  readonly resumed: Array<{ released: number; from?: string }>;
  readonly rollbacks: Array<TrafficRouterEvents['traffic:rollback']>;
  /** The node's audit trail. */
  readonly audit: AuditEntry[];
}

class Cluster {
  readonly nodes: TestNode[] = [];
  /** Nodes made from now on seal their messages encrypted (RedisBridge's `encrypt`). */
  encrypt = false;
  constructor(
    readonly redis: TestRedis,
    readonly ns: string,
  ) {}

  /** Builds a node (router made before start, so it also hears the standing state replayed on joining). */
  node(id: string): TestNode {
    const bridge = new RedisBridge({
      url: this.redis.url,
      secret: SECRET,
      namespace: this.ns,
      nodeId: id,
      heartbeatMs: 200,
      encrypt: this.encrypt,
    });
    const node = {
      id,
      bridge,
      executions: 0,
      aborts: [],
      halted: [],
      resumed: [],
      rollbacks: [],
      audit: [],
    } as unknown as { -readonly [K in keyof TestNode]: TestNode[K] };
    node.orchestrator = new UnifiedOrchestrator({
      pressure: false,
      bridge,
      pools: [
        {
          role: 'writer',
          capabilities: ['text'],
          minAgents: 1,
          maxAgents: 1,
          concurrency: 2,
          warmSpares: 0,
          create: () => ({
            async execute(ctx) {
              node.executions++;
              try {
                await wait(AGENT_MS, ctx.signal);
              } catch (error) {
                node.aborts.push(error);
                throw error;
              }
              return { node: id, payload: ctx.payload };
            },
          }),
        },
      ],
    });
    node.orchestrator.on('halted', (e) => node.halted.push(e));
    node.orchestrator.on('audit', (e) => node.audit.push(e));
    node.orchestrator.on('resumed', (e) => node.resumed.push(e));
    node.adapter = new OrchestratorsCompatibilityAdapter(node.orchestrator);
    node.router = new TrafficRouter({ legacy: fakeLegacy, unified: node.adapter, orchestrator: node.orchestrator });
    node.router.on('traffic:rollback', (e) => node.rollbacks.push(e));
    this.nodes.push(node);
    return node;
  }

  async start(...ids: string[]): Promise<TestNode[]> {
    const nodes = ids.map((id) => this.node(id));
    for (const n of nodes) await n.orchestrator.start();
    // Every node sees the others in the registry.
    await eventually(
      async () => (await nodes[0]!.orchestrator.cluster()).length >= this.nodes.length,
      'nodes registered',
    );
    return nodes;
  }

  /** The registry entries as a node reads them. */
  async registry(): Promise<NodeInfo[]> {
    return this.nodes[0]!.orchestrator.cluster();
  }

  async stop(): Promise<void> {
    const nodes = this.nodes.splice(0);
    await Promise.allSettled(nodes.map((n) => n.router.close()));
    await Promise.allSettled(nodes.map((n) => n.orchestrator.stop({ drain: false, timeoutMs: 2_000 })));
    for (const n of nodes) n.adapter.close();
  }
}

let redis: TestRedis;
const clusters: Cluster[] = [];
let clusterSeq = 0;

function newCluster(): Cluster {
  const c = new Cluster(redis, `${RUN_NS}:${++clusterSeq}`);
  clusters.push(c);
  return c;
}

/** `cli` pointed at a cluster's Redis and namespace through the environment. */
const cliFor =
  (c: Cluster) =>
  (args: readonly string[], env: Record<string, string | undefined> = {}): Promise<CliResult> =>
    cli(args, { UO_REDIS_URL: c.redis.url, UO_NAMESPACE: c.ns, ...env });

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await Promise.allSettled(clusters.splice(0).map((c) => c.stop()));
  const left = [...children];
  for (const child of left) child.kill('SIGKILL');
  if (redis?.owned) await redis.stop();
  if (left.length > 0) throw new Error(`${left.length} CLI child process(es) were still running (killed)`);
});

// --- The acceptance scenario --------------------------------------------------------------------------

/** Suites on a real Redis: skipped without redis-server (the run says so once), failing instead under CI. */
const describeRedis = describe.skipIf(REDIS_SERVER.skip);

describeRedis('operator CLI: a two-node cluster', { timeout: 30_000 }, () => {
  let cluster: Cluster;
  let run: ReturnType<typeof cliFor>;
  let a: TestNode;
  let b: TestNode;
  const ids = (): string[] => cluster.nodes.map((n) => n.id).sort();

  beforeAll(async () => {
    cluster = newCluster();
    run = cliFor(cluster);
    [a, b] = (await cluster.start('node-a', 'node-b')) as [TestNode, TestNode];
  });

  it('status lists both nodes, running, and the cluster setting (human and --json)', async () => {
    const [human, machine] = await Promise.all([run(['status']), run(['--json', 'status'])]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain(`Cluster ${cluster.ns} at ${redis.url}`);
    expect(human.stdout).toContain('2 live node(s)');
    expect(human.stdout).toContain('Cluster setting: running; traffic not set (all legacy)');
    for (const id of ['node-a', 'node-b']) {
      expect(row(human.stdout, id)).toMatch(new RegExp(`^${id}\\s+running\\s+\\w+\\s+no\\s+-\\s+0\\s+0\\s+2/2\\s`));
    }
    expect(human.stdout).toContain('Pools');
    expect(human.stdout).toContain('Queues: empty');

    expect(machine.code, machine.stderr).toBe(0);
    const out = json(machine);
    expect(out).toMatchObject({
      ok: true,
      namespace: cluster.ns,
      rejected: 0,
      standing: { halted: null, traffic: null },
    });
    expect(out['nodes']).toHaveLength(2);
    expect(out['nodes'].map((n) => n.nodeId).sort()).toEqual(['node-a', 'node-b']);
    for (const n of out['nodes'] as NodeInfo[]) {
      expect(n).toMatchObject({ roles: ['writer'], capabilities: ['text'], slots: 2, freeSlots: 2 });
      expect(n.status).toMatchObject({ state: 'running', halted: null, traffic: null, running: 0, waiting: 0 });
      expect(n.status!.pools).toEqual([{ role: 'writer', members: 1, busy: 0, minAgents: 1, maxAgents: 1 }]);
      expect(n.status!.breakers).toEqual({ open: 0, halfOpen: 0, dependenciesOpen: [] });
    }
  });

  /** The tasks submitted on A before the halt (payload = index), then one submitted on B during it. */
  const tasks: Array<Promise<unknown>> = [];
  /** How many of `tasks` A got before the halt. */
  let onA = 0;

  it('halt "incident 42": confirmed by 2 of 2, running attempts aborted, nothing runs while halted', async () => {
    // More work than A's two slots: two run, the rest wait. Topped up until the halt lands, so that however long the
    // CLI takes to start, the halt finds attempts running and tasks waiting.
    const submit = (): void => {
      tasks.push(a.orchestrator.submit({ type: 'write', requires: ['text'], payload: onA++ }));
    };
    for (let i = 0; i < 6; i++) submit();
    const topUp = setInterval(() => {
      if (a.orchestrator.controlState().halted === null && a.orchestrator.stats().waiting < 4) submit();
    }, 20);
    let haltRun: CliResult;
    try {
      await eventually(() => a.orchestrator.stats().running === 2, 'two tasks running on A');
      expect(a.orchestrator.stats().waiting).toBeGreaterThan(0);
      haltRun = await run(['halt', 'incident 42']);
    } finally {
      clearInterval(topUp);
    }
    expect(haltRun.code, haltRun.stderr).toBe(0);
    expect(haltRun.stdout).toContain(`Sent halt (incident 42) to namespace ${cluster.ns}.`);
    expect(haltRun.stdout).toMatch(/Confirmed by 2 of 2 node\(s\): node-[ab], node-[ab]\./);

    for (const n of [a, b]) {
      expect(n.orchestrator.controlState()).toEqual({
        halted: 'incident 42',
        haltedBy: cliFrom(haltRun),
        traffic: null,
      });
      expect(n.halted).toHaveLength(1);
      expect(n.halted[0]!.reason).toBe('incident 42');
      expect(n.halted[0]!.from).toMatch(/^cli@/);
      expect(n.halted[0]!.from).toBe(cliFrom(haltRun));
      // The audit trail names the operator and the node.
      expect(n.audit.filter((e) => e.action === 'orchestrator.halt')).toEqual([
        expect.objectContaining({
          actor: `cli:${userInfo().username}@${hostname()}`,
          node: n.id,
          detail: expect.objectContaining({ reason: 'incident 42' }),
        }),
      ]);
    }
    // A's running attempts were cut short with the halt; its other tasks are held.
    const haltOnA = a.halted[0]!;
    expect(haltOnA.interrupted).toBeGreaterThanOrEqual(1);
    expect(haltOnA.held).toBeGreaterThanOrEqual(1);
    expect(a.aborts).toHaveLength(haltOnA.interrupted);
    for (const reason of a.aborts) expect(reason).toMatchObject({ code: 'ORCHESTRATOR_HALTED', reason: 'incident 42' });
    expect(b.aborts).toEqual([]);
    expect(a.orchestrator.stats().running).toBe(0);

    // Work submitted during the halt is accepted and waits; nothing executes anywhere.
    tasks.push(b.orchestrator.submit({ type: 'write', requires: ['text'], payload: 'during halt' }));
    const before = [a.executions, b.executions];
    await wait(500);
    expect([a.executions, b.executions]).toEqual(before);
    expect(a.orchestrator.stats().running).toBe(0);
    expect(b.orchestrator.stats().waiting).toBe(1);
  });

  it('status shows the cluster HALTED and each node halted with its waiting work', async () => {
    const r = await run(['status']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Cluster setting: HALTED (incident 42)');
    expect(row(r.stdout, 'node-a')).toMatch(/\byes: incident 42\b/);
    expect(row(r.stdout, 'node-b')).toMatch(/\byes: incident 42\b/);
    // A's held tasks show as waiting, in its row and in the queues.
    expect(row(r.stdout, 'node-a')).toMatch(/yes: incident 42\s+-\s+0\s+[1-9]\d*\s+2\/2/);
    expect(r.stdout).toMatch(/Queues\nNODE\s+CLASS\s+WAITING\n/);
    expect(r.stdout).toMatch(/node-a\s+text\s+[1-9]/);
  });

  it('resume: confirmed by both nodes, and every submitted task completes (none lost)', async () => {
    const r = await run(['--json', 'resume']);
    expect(r.code, r.stderr).toBe(0);
    const out = json(r);
    expect(out).toMatchObject({ ok: true, command: 'resume', waited: true, unconfirmed: [] });
    expect(out['sent']).toEqual({
      kind: 'resume',
      from: cliFrom(r),
      actor: `cli:${userInfo().username}@${hostname()}`,
    });
    expect([...out['confirmed']].sort()).toEqual(ids());
    for (const n of [a, b]) {
      expect(n.orchestrator.controlState().halted).toBeNull();
      expect(n.resumed).toHaveLength(1);
      expect(n.resumed[0]!.from).toBe(cliFrom(r));
    }

    const results = await Promise.all(tasks);
    expect(results).toHaveLength(onA + 1);
    for (let i = 0; i < onA; i++) expect(results[i]).toEqual({ node: 'node-a', payload: i });
    expect(results[onA]).toEqual({ node: 'node-b', payload: 'during halt' });
    // Each task ran once to completion; only the interrupted attempts ran twice.
    expect(a.executions).toBe(onA + a.aborts.length);
    expect(b.executions).toBe(1);
    expect(a.orchestrator.stats()).toMatchObject({ completed: onA, failed: 0, waiting: 0, running: 0 });
  });

  it('traffic set 50, then shadow on: every router follows; `traffic` shows the split', async () => {
    const set = await run(['--json', 'traffic', 'set', '50']);
    expect(set.code, set.stderr).toBe(0);
    const out = json(set);
    expect(out).toMatchObject({
      ok: true,
      command: 'traffic 50% to unified',
      sent: { kind: 'traffic', value: { percent: 50 } },
      unconfirmed: [],
    });
    expect([...out['confirmed']].sort()).toEqual(ids());
    for (const n of [a, b]) {
      expect(n.router.percent).toBe(50);
      expect(n.router.shadow).toBe(false);
      expect(n.orchestrator.controlState().traffic).toEqual({ percent: 50, shadow: false });
    }

    const shadow = await run(['shadow', 'on']);
    expect(shadow.code, shadow.stderr).toBe(0);
    expect(shadow.stdout).toContain('Sent shadow on');
    expect(shadow.stdout).toContain('Confirmed by 2 of 2 node(s)');
    for (const n of [a, b]) {
      expect(n.router.shadow).toBe(true);
      expect(n.router.percent).toBe(50);
      expect(n.orchestrator.controlState().traffic).toEqual({ percent: 50, shadow: true });
    }

    const [human, machine] = await Promise.all([run(['traffic']), run(['--json', 'traffic'])]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain('Cluster setting: running; traffic 50% unified, shadow on');
    for (const id of ['node-a', 'node-b'])
      expect(row(human.stdout, id)).toMatch(new RegExp(`^${id}\\s+50% unified, shadow on$`));
    expect(machine.code, machine.stderr).toBe(0);
    const t = json(machine);
    expect(t['ok']).toBe(true);
    expect(t['traffic']).toEqual({ percent: 50, shadow: true });
    expect([...t['nodes']].sort((x, y) => x.nodeId.localeCompare(y.nodeId))).toEqual([
      { nodeId: 'node-a', traffic: { percent: 50, shadow: true } },
      { nodeId: 'node-b', traffic: { percent: 50, shadow: true } },
    ]);
  });

  it('rollback "bad p95": every router back to 0% with shadow off, with a traffic:rollback event on each', async () => {
    const r = await run(['--json', 'rollback', 'bad', 'p95']);
    expect(r.code, r.stderr).toBe(0);
    const out = json(r);
    expect(out).toMatchObject({
      ok: true,
      sent: { kind: 'rollback', reason: 'bad p95', from: cliFrom(r) },
      unconfirmed: [],
    });
    expect([...out['confirmed']].sort()).toEqual(ids());
    for (const n of [a, b]) {
      expect(n.router.percent).toBe(0);
      expect(n.router.shadow).toBe(false);
      expect(n.orchestrator.controlState().traffic).toEqual({ percent: 0, shadow: false });
      expect(n.rollbacks).toEqual([{ reason: 'bad p95', source: 'cluster', from: cliFrom(r) }]);
    }
  });

  it('a node that joins during a halt starts halted and adopts the standing split; resume releases it', async () => {
    const set = await run(['traffic', 'set', '30']);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain('Confirmed by 2 of 2 node(s)');
    const shadow = await run(['--json', 'shadow', 'on']);
    expect(shadow.code, shadow.stderr).toBe(0);
    expect(json(shadow)).toMatchObject({ ok: true, command: 'shadow on', unconfirmed: [] });
    const halt = await run(['--json', 'halt', 'late', 'joiner']);
    expect(halt.code, halt.stderr).toBe(0);
    const out = json(halt);
    expect(out).toMatchObject({
      ok: true,
      command: 'halt (late joiner)',
      sent: { kind: 'halt', reason: 'late joiner', from: cliFrom(halt) },
      unconfirmed: [],
    });
    expect([...out['confirmed']].sort()).toEqual(['node-a', 'node-b']);

    const [c] = (await cluster.start('node-c')) as [TestNode];
    expect(c.orchestrator.controlState()).toEqual({
      halted: 'late joiner',
      haltedBy: cliFrom(halt),
      traffic: { percent: 30, shadow: true },
    });
    expect(c.halted.map((e) => ({ reason: e.reason, from: e.from }))).toEqual([
      { reason: 'late joiner', from: cliFrom(halt) },
    ]);
    // Its router (made before start) heard the replay; one made after start reads the standing split too.
    expect([c.router.percent, c.router.shadow]).toEqual([30, true]);
    const later = new TrafficRouter({ legacy: fakeLegacy, unified: c.adapter, orchestrator: c.orchestrator });
    expect([later.percent, later.shadow]).toEqual([30, true]);
    await later.close();

    const held = c.orchestrator.submit({ type: 'write', requires: ['text'], payload: 'on c' });
    await wait(400);
    expect(c.executions).toBe(0);

    const resume = await run(['resume']);
    expect(resume.code, resume.stderr).toBe(0);
    expect(resume.stdout).toMatch(/Confirmed by 3 of 3 node\(s\): .*node-c/);
    await expect(held).resolves.toEqual({ node: 'node-c', payload: 'on c' });
    for (const n of cluster.nodes) expect(n.orchestrator.controlState().halted).toBeNull();
  });
});

// --- Failures and usage ------------------------------------------------------------------------------

/** Registers `ghost`, a node signed with the cluster's secret whose status never changes: it never confirms. */
async function writeGhost(connection: Redis, ns: string): Promise<void> {
  const status = {
    state: 'running',
    health: 'healthy',
    halted: null,
    traffic: null,
    running: 0,
    waiting: 0,
    queues: {},
    pools: [],
    breakers: { open: 0, halfOpen: 0, dependenciesOpen: [] },
  } as const;
  const info: NodeInfo = {
    nodeId: 'ghost',
    roles: [],
    capabilities: [],
    serves: [],
    freeSlots: 0,
    slots: 0,
    heartbeatAt: Date.now(),
    status,
  };
  await writeNode(connection, new MessageSigner(SECRET, ns, 60_000), ns, info, 30_000).exec();
}

describeRedis('operator CLI: failures, --strict and --no-wait', { timeout: 30_000 }, () => {
  let cluster: Cluster;
  let run: ReturnType<typeof cliFor>;
  afterEach(async () => {
    await cluster?.stop();
  });
  const twoNodes = async (): Promise<[TestNode, TestNode]> => {
    cluster = newCluster();
    run = cliFor(cluster);
    return (await cluster.start('node-a', 'node-b')) as [TestNode, TestNode];
  };

  it('a control message signed with another secret is rejected by every node, which keep running', async () => {
    const nodes = await twoNodes();
    const before = nodes.map((n) => n.bridge.stats().rejected);
    // What a CLI with the wrong secret would publish if it did not refuse to (see the next test).
    const forger = new Redis(redis.url);
    try {
      await publishControl(forger, new MessageSigner(WRONG_SECRET, cluster.ns, 60_000), cluster.ns, {
        kind: 'halt',
        reason: 'forged',
        from: 'cli@forger',
      });
    } finally {
      forger.disconnect();
    }
    await eventually(
      () => nodes.every((n, i) => n.bridge.stats().rejected > before[i]!),
      'both nodes rejected the message',
    );
    await wait(300);
    for (const n of nodes) {
      expect(n.orchestrator.controlState().halted).toBeNull();
      expect(n.halted).toEqual([]);
    }
  });

  // With the wrong secret no registry entry verifies: the CLI refuses to send rather than take the cluster for empty.
  it('wrong secret: halt sends nothing and exits 1 naming the signature check', async () => {
    const nodes = await twoNodes();
    const r = await run(['--timeout', '1500', 'halt', 'forged'], { UO_SECRET: WRONG_SECRET });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('failed the signature check');
    expect(r.stderr).toContain('Nothing was sent.');
    await wait(300);
    for (const n of nodes) expect(n.orchestrator.controlState().halted).toBeNull();
  });

  // A message the nodes would reject must not replace the standing state they replay to nodes that join later.
  it('wrong secret: a refused resume leaves the standing halt alone, so a node joining later starts halted', async () => {
    const [a] = await twoNodes();
    await a.orchestrator.halt('real incident');
    await eventually(
      async () => (await cluster.registry()).every((n) => n.status?.halted === 'real incident'),
      'both nodes halted',
    );
    const refused = await run(['--timeout', '1000', 'resume'], { UO_SECRET: WRONG_SECRET });
    expect(refused.code).toBe(1);
    for (const n of cluster.nodes) expect(n.orchestrator.controlState().halted).toBe('real incident');
    const [late] = (await cluster.start('node-late')) as [TestNode];
    expect(late.orchestrator.controlState().halted).toBe('real incident');
  });

  it('an encrypted fleet: without --encrypt the CLI sends nothing and says to pass it; with it, halt and resume work', async () => {
    cluster = newCluster();
    cluster.encrypt = true;
    run = cliFor(cluster);
    const nodes = await cluster.start('node-a', 'node-b');
    const plain = await run(['--timeout', '1500', 'halt', 'unheard']);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toContain('encrypted: pass --encrypt');
    expect(plain.stderr).toContain('Nothing was sent.');
    const halted = await run(['--timeout', '3000', 'halt', 'sealed'], { UO_ENCRYPT: '1' });
    expect(halted.code).toBe(0);
    for (const n of nodes) expect(n.orchestrator.controlState().halted).toBe('sealed');
    const resumed = await run(['--encrypt', '--timeout', '3000', 'resume']);
    expect(resumed.code).toBe(0);
    for (const n of nodes) expect(n.orchestrator.controlState().halted).toBeNull();
    for (const n of nodes) expect(n.bridge.stats().rejected).toBe(0);
  });

  it('status --strict with the wrong secret exits 1: the entries fail the signature check', async () => {
    await twoNodes();
    const r = await run(['status', '--strict'], { UO_SECRET: WRONG_SECRET });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('Warning: 2 entries failed the signature check');
    expect(r.stdout).toMatch(/Problems:\n(.*\n)*\s+- 2 registry or control entries failed the signature check/);
  });

  it('a node that never confirms: exit 1 naming it; with --no-wait exit 0 at once', async () => {
    const [a, b] = await twoNodes();
    // A registry entry signed with the cluster's secret whose status never changes: a node that hears nothing.
    const ghost = new Redis(redis.url);
    try {
      await writeGhost(ghost, cluster.ns);

      const halt = await run(['--timeout', '1500', 'halt', 'ghost', 'test']);
      expect(halt.code).toBe(1);
      expect(halt.stderr).toMatch(/Confirmed by 2 of 3 node\(s\): node-[ab], node-[ab]\./);
      expect(halt.stderr).toContain('Not confirmed within 1500 ms: ghost.');
      for (const n of [a, b]) expect(n.orchestrator.controlState().halted).toBe('ghost test');

      const noWait = await run(['--json', '--no-wait', '--timeout', '8000', 'traffic', 'set', '10']);
      expect(noWait.code, noWait.stderr).toBe(0);
      expect(json(noWait)).toMatchObject({
        ok: true,
        waited: false,
        unconfirmed: [],
        sent: { kind: 'traffic', value: { percent: 10 } },
      });
      // Waiting would have taken the whole timeout: the ghost never applies 10%.
      expect(noWait.ms).toBeLessThan(8_000);
      // The nodes apply it all the same.
      await eventually(() => [a, b].every((n) => n.router.percent === 10), 'routers at 10%');
      const human = await run(['--no-wait', 'resume']);
      expect(human.code, human.stderr).toBe(0);
      expect(human.stdout).toContain('3 live node(s); not waiting for them to confirm.');
      await eventually(() => [a, b].every((n) => n.orchestrator.controlState().halted === null), 'nodes resumed');
    } finally {
      ghost.disconnect();
    }
  });

  it('a node that leaves the registry before confirming is not counted as confirmed: exit 1 naming it', async () => {
    const [a, b] = await twoNodes();
    const ghost = new Redis(redis.url);
    try {
      await writeGhost(ghost, cluster.ns);
      const halt = run(['--timeout', '8000', 'halt', 'gone', 'test']);
      // Once the halt stands (the CLI read its targets, the ghost among them, and sent it), the ghost's entry goes.
      const signer = new MessageSigner(SECRET, cluster.ns, 60_000);
      await eventually(
        async () => (await readStanding(ghost, signer, cluster.ns)).messages.some((m) => m.kind === 'halt'),
        'the halt stands',
        15_000,
      );
      await ghost.del(nodeKey(cluster.ns, 'ghost'));
      const out = await halt;
      expect(out.code).toBe(1);
      expect(out.stderr).toMatch(/Confirmed by 2 of 3 node\(s\): node-[ab], node-[ab]\./);
      expect(out.stderr).toContain('Left the registry before confirming: ghost.');
      for (const n of [a, b]) expect(n.orchestrator.controlState().halted).toBe('gone test');
    } finally {
      ghost.disconnect();
    }
  });

  it('status --strict: exit 0 when every node is healthy and agrees, exit 1 when one is halted locally', async () => {
    const [, b] = await twoNodes();
    const dir = await mkdtemp(join(tmpdir(), 'uo-cli-'));
    try {
      const secretFile = join(dir, 'secret');
      await writeFile(secretFile, `${SECRET}\n`);
      // The secret from --secret-file, with UO_SECRET unset.
      const healthy = await run(['status', '--strict', '--secret-file', secretFile], { UO_SECRET: undefined });
      expect(healthy.code, healthy.stdout + healthy.stderr).toBe(0);
      expect(healthy.stdout).not.toContain('Problems');

      await b.orchestrator.halt('local maintenance', { local: true });
      await eventually(
        async () =>
          (await cluster.registry()).find((n) => n.nodeId === 'node-b')?.status?.halted === 'local maintenance',
        'node-b reports its halt',
      );
      const split = await run(['--json', 'status', '--strict']);
      expect(split.code).toBe(1);
      const out = json(split);
      expect(out['ok']).toBe(false);
      expect(out['standing']).toEqual({ halted: null, traffic: null });
      expect(out['problems']).toEqual(['node-b is halted but the cluster is running']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('Redis unreachable: exit 1 with "cannot reach Redis"', async () => {
    const port = await closedPort();
    const r = await cli(['--redis', `redis://127.0.0.1:${port}`, '--namespace', 'nowhere', 'status']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot reach Redis at redis://127.0.0.1:${port}`);
    expect(r.stdout).toBe('');
  });

  it('wrong usage exits 2 with the usage text; --help exits 0', async () => {
    const url = `redis://127.0.0.1:${redis.port}`;
    const cases: Array<[args: string[], message: string, env?: Record<string, string | undefined>]> = [
      [[], 'No command given'],
      [['frobnicate'], 'Unknown command: frobnicate'],
      [['traffic', 'set', '150'], 'The percentage must be a number from 0 to 100, got 150'],
      [['traffic', 'set', 'abc'], 'The percentage must be a number from 0 to 100, got abc'],
      [['shadow', 'maybe'], 'Expected `shadow on` or `shadow off`'],
      [['status'], 'The cluster secret is needed', { UO_SECRET: undefined }],
      [['status', '--secret-file', '/nonexistent/uo-secret'], 'Cannot read the secret file /nonexistent/uo-secret'],
    ];
    const [help, ...results] = await Promise.all([
      cli(['--help']),
      ...cases.map(([args, , env]) => cli(['--redis', url, ...args], env)),
    ]);
    results.forEach((r, i) => {
      const [args, message] = cases[i]!;
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toContain(`unified-orchestrator: ${message}`);
      expect(r.stderr).toContain('Usage: unified-orchestrator <command> [options]');
      expect(r.stdout).toBe('');
    });
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: unified-orchestrator <command> \[options\]/);
    expect(help.stdout).toContain('traffic set <percent>');
    expect(help.stderr).toBe('');
  });
});
