import { afterEach, describe, expect, it } from 'vitest';
import { UnifiedOrchestrator, type Agent } from 'unified-orchestrator';

let o: UnifiedOrchestrator | undefined;
afterEach(async () => {
  await o?.stop({ drain: false });
  o = undefined;
});

const held = new Set<() => void>();
function holdingAgent(): Agent {
  return { execute: (ctx) => new Promise((resolve) => held.add(() => resolve(ctx.agentId))) };
}

describe('routing over large fleets (sampled tiers)', () => {
  it('never leaves a task waiting while any capable agent is free, however deep in its tier', async () => {
    o = new UnifiedOrchestrator();
    for (let i = 0; i < 500; i++) o.registerAgent(holdingAgent(), { capabilities: ['x'], id: `x-${i}` });
    await o.start();
    // Fill all 500 one by one; each must start at once (none waits while an agent is free).
    for (let i = 0; i < 500; i++) {
      void o.submit({ type: 't', requires: ['x'] });
      expect(o.stats().waiting).toBe(0);
    }
    expect(o.stats().running).toBe(500);
    void o.submit({ type: 't', requires: ['x'] });
    expect(o.stats().waiting).toBe(1);
    for (const release of held) release();
    held.clear();
  });

  it('spreads equal agents round-robin, and prefers a better tier even when it holds one agent among thousands', async () => {
    o = new UnifiedOrchestrator();
    for (let i = 0; i < 2_000; i++)
      o.registerAgent({ execute: (ctx) => ctx.agentId }, { capabilities: ['x', 'a', 'b', 'c'], id: `gen-${i}` });
    o.registerAgent({ execute: (ctx) => ctx.agentId }, { capabilities: ['x'], id: 'specialist' });
    await o.start();
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await o.submit<string>({ type: 't', requires: ['x'] }));
    expect(ids.every((id) => id === 'specialist')).toBe(true);

    const spread = new Set<string>();
    for (let i = 0; i < 40; i++) spread.add(await o.submit<string>({ type: 't', requires: ['x', 'a'] }));
    expect(spread.size).toBe(40); // consecutive tasks go to different generalists
  });
});
