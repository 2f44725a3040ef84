/**
 * Fuzz target 4a–c: bridge messages, without Redis.
 *
 * (a) MessageSigner.open with random `m` / `s` (strings and not), and with sealed messages that were truncated, extended,
 *     edited, re-signed for another kind, namespace or secret, or given another message's signature: `undefined` unless
 *     exactly what `seal` produced; a sealed message opens to its body, and a control message opens once when fresh.
 * (b) parseTraffic and stickySlots with random values never throw, parseTraffic answers nothing or a well-formed
 *     setting, and stickySlots gives no slot to a value parseTraffic rejects.
 * (c) `broadcast` of random and hostile ControlMessage-like objects on a two-node MemoryBridge cluster (a MemoryHub):
 *     it throws (synchronously) only typed errors, its promise settles, both nodes keep running with a well-formed and
 *     identical control state, and a resume releases the work a halt held.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MemoryBridge,
  MemoryHub,
  UnifiedOrchestrator,
  type AuditEntry,
  type ControlMessage,
  type ControlState,
} from 'unified-orchestrator';
import { parseTraffic, stickySlots } from '../../src/bridge/bridge.js';
import { MessageSigner } from '../../src/bridge/signing.js';
import {
  build,
  describeError,
  expectTyped,
  json,
  keyArb,
  konst,
  objectArb,
  params,
  processGuard,
  prototypeGuard,
  SAFE_WRAPS,
  settleWithin,
  show,
  STRICT,
  TARGET_TIMEOUT_MS,
  validOr,
  valueArb,
  WRAPS,
  type ValueRecipe,
} from './arbitraries.js';

const SECRET = 'fuzz-suite-shared-secret-0123456789';

/** No unhandled rejection or uncaught exception anywhere in this file's targets. */
let fileGuard: ReturnType<typeof processGuard>;
beforeAll(() => {
  fileGuard = processGuard();
});
afterAll(async () => {
  try {
    await fileGuard.check();
  } finally {
    fileGuard.dispose();
  }
});
const NS = 'fuzz';
const KINDS = ['tasks', 'results', 'control', 'node'] as const;

// --- (a) MessageSigner ----------------------------------------------------------------------------------------------------

const hex = (length: number): fc.Arbitrary<string> =>
  fc.string({ minLength: length, maxLength: length, unit: fc.constantFrom(...'0123456789abcdef') });
const kindArb = fc.oneof(fc.constantFrom(...KINDS), fc.string({ maxLength: 8 }));
const bodyArb = fc.dictionary(keyArb, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 });

type Tamper =
  | { readonly on: 'm'; readonly op: 'replace' | 'delete' | 'insert'; readonly at: number; readonly char: string }
  | { readonly on: 'm'; readonly op: 'truncate'; readonly keep: number }
  | { readonly on: 'm'; readonly op: 'append'; readonly text: string }
  | { readonly on: 's'; readonly op: 'digit'; readonly at: number; readonly digit: string }
  | { readonly on: 's'; readonly op: 'truncate'; readonly keep: number }
  | { readonly on: 's'; readonly op: 'append'; readonly text: string }
  | { readonly on: 's'; readonly op: 'uppercase' }
  | { readonly on: 'kind'; readonly kind: string }
  | { readonly on: 'namespace' | 'secret' | 'swap' };

const tamperArb: fc.Arbitrary<Tamper> = fc.oneof(
  fc.record({
    on: fc.constant('m' as const),
    op: fc.constantFrom('replace' as const, 'delete' as const, 'insert' as const),
    at: fc.nat(),
    char: fc.string({ minLength: 1, maxLength: 1, unit: 'binary' }),
  }),
  fc.record({ on: fc.constant('m' as const), op: fc.constant('truncate' as const), keep: fc.nat() }),
  fc.record({
    on: fc.constant('m' as const),
    op: fc.constant('append' as const),
    text: fc.string({ minLength: 1, maxLength: 4 }),
  }),
  fc.record({
    on: fc.constant('s' as const),
    op: fc.constant('digit' as const),
    at: fc.nat(63),
    digit: fc.constantFrom(...'0123456789abcdef'),
  }),
  fc.record({ on: fc.constant('s' as const), op: fc.constant('truncate' as const), keep: fc.nat(63) }),
  fc.record({
    on: fc.constant('s' as const),
    op: fc.constant('append' as const),
    text: fc.string({ minLength: 1, maxLength: 4 }),
  }),
  // An upper-case signature decodes to the same bytes and is accepted: a (harmless) known deviation, strict-only.
  ...(STRICT ? [fc.constant({ on: 's' as const, op: 'uppercase' as const })] : []),
  fc.record({ on: fc.constant('kind' as const), kind: kindArb }),
  fc.constantFrom({ on: 'namespace' as const }, { on: 'secret' as const }, { on: 'swap' as const }),
);

const OTHER_NAMESPACE = new MessageSigner(SECRET, `${NS}-other`, 60_000);
const OTHER_SECRET = new MessageSigner(`${SECRET}-other`, NS, 60_000);

/** Applies a tamper; `undefined` when it changes nothing (then the message is still exactly valid). */
function tamper(
  t: Tamper,
  sealed: { m: string; s: string },
  kind: string,
  other: { m: string; s: string },
): { kind: string; m: string; s: string; signer?: MessageSigner } | undefined {
  const { m, s } = sealed;
  const at = (text: string, i: number): number => (text.length === 0 ? 0 : i % (text.length + 1));
  let out: { kind: string; m: string; s: string; signer?: MessageSigner };
  switch (t.on) {
    case 'm': {
      let next = m;
      if (t.op === 'replace') next = m.slice(0, at(m, t.at)) + t.char + m.slice(at(m, t.at) + 1);
      if (t.op === 'delete') next = m.slice(0, at(m, t.at)) + m.slice(at(m, t.at) + 1);
      if (t.op === 'insert') next = m.slice(0, at(m, t.at)) + t.char + m.slice(at(m, t.at));
      if (t.op === 'truncate') next = m.slice(0, t.keep % Math.max(1, m.length));
      if (t.op === 'append') next = m + t.text;
      out = { kind, m: next, s };
      break;
    }
    case 's': {
      let next = s;
      if (t.op === 'digit') next = s.slice(0, t.at) + t.digit + s.slice(t.at + 1);
      if (t.op === 'truncate') next = s.slice(0, t.keep);
      if (t.op === 'append') next = s + t.text;
      if (t.op === 'uppercase') next = s.toUpperCase();
      out = { kind, m, s: next };
      break;
    }
    case 'kind':
      out = { kind: t.kind, m, s };
      break;
    case 'namespace':
      out = { kind, m, s, signer: OTHER_NAMESPACE };
      break;
    case 'secret':
      out = { kind, m, s, signer: OTHER_SECRET };
      break;
    case 'swap':
      out = { kind, m, s: other.s };
      break;
  }
  return out.kind === kind && out.m === m && out.s === s && out.signer === undefined ? undefined : out;
}

describe('fuzz: MessageSigner.open', () => {
  const signer = new MessageSigner(SECRET, NS, 60_000);
  /** Another node: every seal has a new id, so one receiver sees each message for the first time. */
  const receiver = new MessageSigner(SECRET, NS, 60_000);

  it(
    'random m and s never open and never throw',
    () => {
      const protos = prototypeGuard();
      // Non-string values come as recipes, built inside the property (fast-check must not hold hostile values).
      const mArb = fc.oneof(
        fc.string(),
        fc.string({ unit: 'binary' }),
        fc.json(),
        fc.constant('{"id":"x","ts":0}'),
        valueArb('field'),
      );
      const sArb = fc.oneof(
        hex(64),
        fc.string({ minLength: 64, maxLength: 64 }),
        fc.string(),
        hex(63),
        hex(65),
        valueArb('field'),
      );
      const value = (v: string | ValueRecipe): unknown => (typeof v === 'string' ? v : build(v));
      fc.assert(
        fc.property(kindArb, mArb, sArb, fc.boolean(), (kind, m, s, fresh) => {
          expect(signer.open(kind, value(m), value(s), fresh)).toBeUndefined();
          protos.check();
        }),
        params(10_000),
      );
    },
    TARGET_TIMEOUT_MS,
  );

  it(
    'a sealed message opens to its body, exactly once when fresh; any change to it, its kind, namespace or secret is refused',
    () => {
      const protos = prototypeGuard();
      fc.assert(
        fc.property(fc.constantFrom(...KINDS), bodyArb, tamperArb, bodyArb, (kind, body, t, otherBody) => {
          const sealed = signer.seal(kind, body);
          const other = signer.seal(kind, otherBody);
          const opened = signer.open<Record<string, unknown>>(kind, sealed.m, sealed.s);
          expect(opened, 'the sealed message opens').toEqual(JSON.parse(sealed.m));
          expect(typeof opened?.id === 'string' && typeof opened.ts === 'number').toBe(true);
          const changed = tamper(t, sealed, kind, other);
          if (changed)
            expect(
              (changed.signer ?? signer).open(changed.kind, changed.m, changed.s),
              `tampered (${t.on}) must not open`,
            ).toBeUndefined();
          // Control messages must arrive once: a fresh open remembers the id, and a replay is refused.
          expect(receiver.open(kind, sealed.m, sealed.s, true)).toBeDefined();
          expect(receiver.open(kind, sealed.m, sealed.s, true), 'a replay').toBeUndefined();
          protos.check();
        }),
        params(10_000),
      );
    },
    TARGET_TIMEOUT_MS,
  );

  it('a valid sealed control message round-trips', () => {
    const control = fc.record(
      {
        kind: fc.constantFrom('halt', 'resume', 'drain', 'traffic', 'rollback', 'config'),
        reason: fc.string(),
        value: fc.jsonValue({ maxDepth: 2 }),
        from: fc.string({ minLength: 1 }),
      },
      { requiredKeys: ['kind'] },
    );
    fc.assert(
      fc.property(control, (message) => {
        const sent = signer.seal('control', message);
        const got = receiver.open<ControlMessage>('control', sent.m, sent.s, true);
        expect(got).toBeDefined();
        const { id: _id, ts: _ts, ...rest } = got!;
        expect(rest).toEqual(JSON.parse(JSON.stringify(message)));
      }),
      params(10_000),
    );
  });
});

// --- (b) parseTraffic and stickySlots -------------------------------------------------------------------------------------

/**
 * Wrappers for objects read by property access (destructuring, `in`, `message.kind`): inherited getters are read too,
 * so a prototype that throws is as hostile there as a throwing trap (strict-only, like them).
 */
const readWrap = fc.constantFrom(...(STRICT ? WRAPS : SAFE_WRAPS.filter((w) => w !== 'inheritsHostile')));

/** Not an object whose prototype throws on the names parseTraffic reads (strict-only: see readWrap). */
const readable = (r: ValueRecipe): boolean => STRICT || !(r.k === 'obj' && r.wrap === 'inheritsHostile');

const percent = (zone: 'field' | 'container'): fc.Arbitrary<ValueRecipe> =>
  validOr(
    fc.oneof(
      json(fc.integer({ min: 0, max: 100 })),
      json(fc.double({ min: -50, max: 150 })),
      konst('-0', 'NaN', 'Infinity', 'MIN_VALUE', 'undefined'),
    ),
    zone,
  ).filter(readable);
const trafficValue: fc.Arbitrary<ValueRecipe> = fc.oneof(
  {
    weight: 6,
    arbitrary: objectArb(
      { percent: percent('field'), shadow: validOr(fc.oneof(json(fc.boolean()), konst('undefined'))) },
      {
        extra: 2,
        wrap: fc.oneof({ weight: 6, arbitrary: fc.constant('plain' as const) }, { weight: 2, arbitrary: readWrap }),
      },
    ),
  },
  // A bare percent, or anything else (an object is destructured: the container zone).
  { weight: 2, arbitrary: percent('container') },
  { weight: 2, arbitrary: valueArb(STRICT ? 'payload' : 'container').filter(readable) },
);

/** Whether `value` sets the percent (or the shadow flag): parseTraffic takes it from the value whatever the current one. */
function sets(value: unknown, part: 'percent' | 'shadow'): boolean {
  const a = parseTraffic(value, { percent: 13.5, shadow: false });
  const b = parseTraffic(value, { percent: 86.5, shadow: true });
  return a !== undefined && b !== undefined && a[part] === b[part];
}

describe('fuzz: parseTraffic and stickySlots', () => {
  it(
    'never throw; a rejected value takes no standing slot',
    () => {
      const protos = prototypeGuard();
      const current = fc.option(
        fc.record({ percent: fc.double({ min: 0, max: 100, noNaN: true }), shadow: fc.boolean() }),
        { nil: undefined },
      );
      const kind = fc.oneof(
        fc.constantFrom('halt', 'resume', 'drain', 'traffic', 'traffic', 'traffic', 'rollback', 'config'),
        fc.string({ maxLength: 6 }),
      );
      fc.assert(
        fc.property(trafficValue, current, kind, (recipe, base, k) => {
          const value = build(recipe, 'value');
          const parsed = parseTraffic(value, base);
          if (parsed !== undefined) {
            expect(
              Number.isFinite(parsed.percent) && parsed.percent >= 0 && parsed.percent <= 100,
              `percent ${parsed.percent}`,
            ).toBe(true);
            expect(typeof parsed.shadow).toBe('boolean');
          }
          const slots = stickySlots({ kind: k as ControlMessage['kind'], value });
          expect(Array.isArray(slots)).toBe(true);
          if (k === 'halt' || k === 'resume') expect(slots).toEqual(['halt']);
          else if (k === 'rollback') expect(slots).toEqual(['percent', 'shadow']);
          else if (k !== 'traffic') expect(slots).toEqual([]);
          else {
            if (parseTraffic(value, undefined) === undefined)
              expect(slots, 'a rejected traffic value takes no slot').toEqual([]);
            // A slot holds the latest message that sets that part: a message that does not set it must not displace it
            // (`{ percent: undefined, shadow: true }` does: a known bug, checked in strict mode and in known-bugs).
            if (STRICT)
              expect(slots, 'slots are the parts the value sets').toEqual([
                ...(sets(value, 'percent') ? ['percent'] : []),
                ...(sets(value, 'shadow') ? ['shadow'] : []),
              ]);
          }
          protos.check();
        }),
        params(10_000),
      );
    },
    TARGET_TIMEOUT_MS,
  );
});

// --- (c) broadcast on a MemoryHub cluster ---------------------------------------------------------------------------------

const messageArb: fc.Arbitrary<ValueRecipe> = fc.oneof(
  {
    weight: 10,
    arbitrary: objectArb(
      {
        kind: validOr(
          json(
            fc.constantFrom(
              'halt',
              'resume',
              'drain',
              'traffic',
              'traffic',
              'rollback',
              'config',
              'HALT',
              '',
              'constructor',
              '__proto__',
            ),
          ),
        ),
        reason: validOr(json(fc.string({ maxLength: 20 }))),
        value: trafficValue,
        from: validOr(json(fc.constantFrom('A', 'B', 'C', 'cli'))),
        replayed: validOr(json(fc.boolean())),
        actor: validOr(json(fc.constantFrom('ops', 'cli:root@host', ''))),
      },
      {
        extra: 1,
        wrap: fc.oneof({ weight: 6, arbitrary: fc.constant('plain' as const) }, { weight: 2, arbitrary: readWrap }),
      },
    ),
  },
  // Not a message at all. broadcast() spreads whatever it gets into an object: a 256 KB string becomes an object of
  // 262,144 keys (tens of ms per call), so the huge consts are left out as whole messages to keep the target fast.
  {
    weight: 1,
    arbitrary: valueArb(STRICT ? 'payload' : 'container').filter(
      (r) => !(r.k === 'const' && (r.name === 'hugeString' || r.name === 'hugeArray')) && readable(r),
    ),
  },
);

function wellFormed(state: ControlState, who: string): void {
  expect(state.halted === null || typeof state.halted === 'string', `${who}: halted is a string or null`).toBe(true);
  const t = state.traffic;
  if (t !== null) {
    expect(
      typeof t === 'object' &&
        Number.isFinite(t.percent) &&
        t.percent >= 0 &&
        t.percent <= 100 &&
        typeof t.shadow === 'boolean',
      `${who}: traffic ${show(t)}`,
    ).toBe(true);
  }
}

const AUDIT_ACTIONS: ReadonlySet<string> = new Set([
  'agent.spawn',
  'agent.register',
  'agent.terminate',
  'orchestrator.halt',
  'orchestrator.resume',
  'orchestrator.drain',
  'orchestrator.stop',
  'traffic.change',
  'traffic.rollback',
  'budget.halt',
  'deadletter.retry',
]);

describe('fuzz: broadcast on a two-node MemoryBridge cluster', () => {
  const hub = new MemoryHub();
  /** What the nodes' audit sinks received (checked and emptied after every run). */
  const audit: AuditEntry[] = [];
  let a: UnifiedOrchestrator;
  let b: UnifiedOrchestrator;

  const node = (id: string, pools: boolean): UnifiedOrchestrator =>
    new UnifiedOrchestrator({
      pressure: false,
      health: { checkIntervalMs: 60_000 },
      audit: { sink: (entry) => void audit.push(entry) },
      bridge: new MemoryBridge({ hub, nodeId: id }),
      pools: pools
        ? [
            {
              role: 'w',
              capabilities: ['x'],
              minAgents: 2,
              maxAgents: 4,
              concurrency: 4,
              create: () => ({ execute: async (ctx): Promise<unknown> => ctx.payload }),
            },
          ]
        : [],
    });

  beforeAll(async () => {
    a = node('A', true); // serves `x`
    b = node('B', false); // a producer: its tasks are handed to A
    await a.start();
    await b.start();
  });

  afterAll(async () => {
    await a?.stop({ timeoutMs: 5_000 });
    await b?.stop({ timeoutMs: 5_000 });
  });

  it(
    'broadcast throws only typed errors and settles; nodes keep running, agree, and resume releases held work',
    async () => {
      const protos = prototypeGuard();
      let n = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.tuple(fc.constantFrom('A', 'B'), messageArb), { minLength: 1, maxLength: 3 }),
          fc.constantFrom('A', 'B'),
          async (sends, resumer) => {
            n++;
            // Work submitted before the messages: handed from B to A, held by any halt among them.
            const pending = b.submit<number>({ type: 't', requires: ['x'], payload: n });
            for (const [from, recipe] of sends) {
              const sender = from === 'A' ? a : b;
              let sent: Promise<void>;
              try {
                sent = sender.broadcast(build(recipe, 'message') as ControlMessage);
              } catch (error) {
                expectTyped(error);
                continue;
              }
              expect(sent, 'broadcast returns a promise').toBeInstanceOf(Promise);
              const settled = await settleWithin(sent, 2_000, 'broadcast()');
              if (settled.status === 'rejected') expectTyped(settled.reason);
              for (const [who, o] of [
                ['A', a],
                ['B', b],
              ] as const) {
                expect(o.state, `${who} keeps running`).toBe('running');
                wellFormed(o.controlState(), who);
              }
              const [sa, sb] = [a.controlState(), b.controlState()];
              expect({ halted: sa.halted, traffic: sa.traffic }, 'both nodes applied the same control state').toEqual({
                halted: sb.halted,
                traffic: sb.traffic,
              });
            }
            await (resumer === 'A' ? a : b).resume();
            expect([a.controlState().halted, b.controlState().halted], 'resume reaches every node').toEqual([
              null,
              null,
            ]);
            const done = await settleWithin(pending, 3_000, 'the held task after resume');
            if (done.status === 'rejected') throw new Error(`the held task failed: ${describeError(done.reason)}`);
            expect(done.value).toBe(n);
            protos.check(`after run ${n}`);
            // Every control change is on the audit trail, with an actor and a node.
            for (const e of audit.splice(0)) {
              expect(AUDIT_ACTIONS.has(e.action), `audit action ${e.action}`).toBe(true);
              expect(
                typeof e.actor === 'string' &&
                  e.actor.length > 0 &&
                  (e.node === 'A' || e.node === 'B') &&
                  Number.isFinite(e.at),
                `audit entry ${show(e)}`,
              ).toBe(true);
            }
            if (STRICT) {
              // A node joining now replays the standing state: it must end where the running nodes are (known bugs:
              // ties within one millisecond replay out of order, and `percent: undefined` displaces the standing percent).
              const joiner = node(`J${n}`, false);
              await joiner.start();
              try {
                expect(joiner.controlState().traffic, 'a joiner replays the same traffic').toEqual(
                  a.controlState().traffic,
                );
              } finally {
                await joiner.stop();
              }
            }
          },
        ),
        params(10_000),
      );
    },
    TARGET_TIMEOUT_MS,
  );
});
