import { describe, expect, it } from 'vitest';
import { AGENT_STATES, canTransition, IllegalStateTransitionError, type AgentState } from 'unified-orchestrator';
import { assertTransition } from '../../src/pool/agent-state.js';

const LEGAL: ReadonlyArray<[AgentState, AgentState]> = [
  ['INITIALIZING', 'IDLE'],
  ['INITIALIZING', 'FAILED'],
  ['INITIALIZING', 'TERMINATED'],
  ['IDLE', 'BUSY'],
  ['IDLE', 'DRAINING'],
  ['IDLE', 'UNHEALTHY'],
  ['BUSY', 'IDLE'],
  ['BUSY', 'DRAINING'],
  ['BUSY', 'UNHEALTHY'],
  ['DRAINING', 'TERMINATED'],
  ['DRAINING', 'FAILED'],
  ['UNHEALTHY', 'IDLE'],
  ['UNHEALTHY', 'BUSY'],
  ['UNHEALTHY', 'DRAINING'],
  ['UNHEALTHY', 'FAILED'],
  ['FAILED', 'TERMINATED'],
];

describe('agent lifecycle state machine', () => {
  it('allows exactly the edges of the lifecycle', () => {
    const legal = new Set(LEGAL.map(([a, b]) => `${a}>${b}`));
    for (const from of AGENT_STATES) {
      for (const to of AGENT_STATES) {
        if (from === to) continue;
        expect(canTransition(from, to), `${from} -> ${to}`).toBe(legal.has(`${from}>${to}`));
      }
    }
  });

  it('throws IllegalStateTransitionError with both states on an illegal transition', () => {
    for (const [from, to] of [
      ['TERMINATED', 'IDLE'],
      ['IDLE', 'TERMINATED'],
      ['BUSY', 'INITIALIZING'],
      ['FAILED', 'IDLE'],
    ] as const) {
      let caught: unknown;
      try {
        assertTransition('a-1', from, to);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(IllegalStateTransitionError);
      expect(caught).toMatchObject({ code: 'ILLEGAL_STATE_TRANSITION', agentId: 'a-1', from, to });
    }
  });

  it('does not throw on a legal transition', () => {
    for (const [from, to] of LEGAL) expect(() => assertTransition('a-1', from, to)).not.toThrow();
  });
});
