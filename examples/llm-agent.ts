/**
 * An LLM agent fleet, set up the way a team calling a model provider would: a large model (better, slower,
 * dearer, rate-limited, and down for a while) and a small one (fast, cheap, reliable), each in its own pool.
 *
 * - Rate limits: the engine paces calls to the large model, and a 429 with a retry-after pauses that model and
 *   puts the task back in its queue without spending an attempt.
 * - Breakers: during the outage the large agent's breaker opens and quarantines it, then probes and closes.
 * - Fallback: the caller asks the small model when the large one is quarantined, paused, or failed the call.
 * - Budgets: each tenant has a budget in cents; one spends it and is refused, the other carries on.
 *
 * No network: the provider below is simulated and seeded. Run it with `node --import tsx examples/llm-agent.ts`.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { UnifiedOrchestrator, isOrchestratorError, type Agent } from 'unified-orchestrator';

type Model = 'large' | 'small';
interface Answer {
  model: Model;
  text: string;
  tokens: number;
}

const CENTS_PER_TOKEN: Record<Model, number> = { large: 0.03, small: 0.002 };
const BUDGETS: Record<string, number> = { acme: 35, globex: 500 }; // cents per tenant per hour; acme is on the small plan
// What the provider really allows on the large model: 10 calls a second, in bursts of 3. Our configured limit
// (10 a second, in bursts of 10) is a little looser, as a limit copied from the docs often is.
const LARGE_BUCKET = { burst: 3, perSecond: 10 };
const OUTAGE = { afterAnswers: 6, ms: 1_200 }; // the large model goes down after 6 answers, for 1.2 s

// --- A simulated provider: stands in for the vendor SDK --------------------------------------------

/** What an HTTP client's error looks like: a status, and on a 429 the retry-after that the library reads. */
class ProviderError extends Error {
  override readonly name = 'ProviderError';
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** A seeded PRNG (Park-Miller): the same token counts and reading times on every run. */
const seeded = (seed: number) => (): number => (seed = (seed * 16_807) % 2_147_483_647) / 2_147_483_647;

const calls = { large: { answered: 0, rateLimited: 0, failed: 0 }, small: { answered: 0 } };
const random = seeded(42);
let largeTokens = LARGE_BUCKET.burst;
let refilledAt = performance.now();
let outageEndsAt: number | undefined;

async function complete(model: Model, prompt: string, signal: AbortSignal): Promise<{ text: string; tokens: number }> {
  const now = performance.now();
  if (model === 'large') {
    largeTokens = Math.min(LARGE_BUCKET.burst, largeTokens + ((now - refilledAt) * LARGE_BUCKET.perSecond) / 1_000);
    refilledAt = now;
    if (largeTokens < 1) {
      calls.large.rateLimited++;
      throw new ProviderError(429, 'rate limited', ((1 - largeTokens) * 1_000) / LARGE_BUCKET.perSecond);
    }
    largeTokens -= 1;
    if (outageEndsAt === undefined && calls.large.answered >= OUTAGE.afterAnswers) outageEndsAt = now + OUTAGE.ms;
    if (now < (outageEndsAt ?? 0)) {
      await delay(20, undefined, { signal });
      calls.large.failed++;
      throw new ProviderError(503, 'model overloaded');
    }
  }
  const tokens = 150 + Math.floor(random() * 300);
  // The signal stops the "request" at once when the task times out or is cancelled.
  await delay(model === 'large' ? 40 + tokens / 10 : 15 + tokens / 25, undefined, { signal });
  calls[model].answered++;
  return { text: `${model} answer to ${prompt}`, tokens };
}

// --- The fleet -------------------------------------------------------------------------------------

/** The agent of one model: it calls the provider with the task's signal and reports what the call cost. */
function modelAgent(model: Model): Agent<{ prompt: string }, Answer> {
  return {
    async execute(ctx) {
      const { text, tokens } = await complete(model, ctx.payload.prompt, ctx.signal);
      ctx.reportCost(tokens * CENTS_PER_TOKEN[model]);
      return { model, text, tokens };
    },
  };
}

const orchestrator = new UnifiedOrchestrator({
  // One agent per model, taking 4 requests at once: breakers are per agent, so the large agent's breaker is the
  // large model's. No spares and no growth: a fresh agent would not make a failing model answer.
  pools: [
    {
      role: 'large',
      capabilities: ['chat', 'large'],
      create: () => modelAgent('large'),
      minAgents: 1,
      maxAgents: 1,
      concurrency: 4,
      warmSpares: 0,
    },
    {
      role: 'small',
      capabilities: ['chat', 'small'],
      create: () => modelAgent('small'),
      minAgents: 1,
      maxAgents: 1,
      concurrency: 4,
      warmSpares: 0,
    },
  ],
  defaultTimeoutMs: 5_000, // per attempt; the signal handed to the provider ends a timed-out call at once
  // Every task that requires 'large' waits its turn under this limit; a retry-after error pauses it.
  rateLimits: { large: { requests: 10, intervalMs: 1_000 } },
  // Scaled down from production values so that the outage trips the breakers within the demo.
  agentBreaker: { errorThresholdPercentage: 50, volumeThreshold: 4, windowMs: 1_000, resetTimeoutMs: 400 },
  budgets: { limits: BUDGETS }, // over the default window of one hour
});

// --- What the caller knows about the large model, kept current by events -----------------------------

let largeOpen = false; // the large agent's breaker is open: it is quarantined
let largePaused = false; // a 429 paused the 'large' rate limit
const seen = { opened: 0, closed: 0, deferred429: 0, failed429: 0 };
const is429 = (error: unknown): boolean => error instanceof ProviderError && error.status === 429;
orchestrator.on('breaker:state', ({ agentId, to }) => {
  if (agentId === undefined || orchestrator.agent(agentId)?.role !== 'large') return;
  largeOpen = to === 'open'; // half-open takes one probe task: send work again, or it never recovers
  if (to === 'open') seen.opened++;
  if (to === 'closed') seen.closed++;
});
orchestrator.on('ratelimit:paused', ({ name }) => {
  if (name === 'large') largePaused = true;
});
orchestrator.on('ratelimit:resumed', ({ name }) => {
  if (name === 'large') largePaused = false;
});
// A deferred task is announced as retrying, but it spends no attempt (these tasks have only one).
orchestrator.on('task:retrying', ({ error }) => {
  if (is429(error)) seen.deferred429++;
});
orchestrator.on('task:failed', ({ error }) => {
  if (is429(error)) seen.failed429++;
});

// Every accepted task must end exactly once: count the terminal events of each id.
const accepted = new Set<string>();
const endings = new Map<string, number>();
const ended = ({ taskId }: { taskId: string }): void => void endings.set(taskId, (endings.get(taskId) ?? 0) + 1);
orchestrator.on('task:completed', ended).on('task:failed', ended);

// --- The caller: large first, small as the fallback ----------------------------------------------------

// Why `requires: ['chat', model]` rather than `requires: ['chat'], prefers: ['large']`: a rate limit covers the
// tasks that *require* its capability, so a task that merely prefers 'large' gets no pacing and a 429 fails it.
// The price: a task that requires a quarantined model waits for it, hence the explicit fallback in `ask`.
function runOn(model: Model, tenantId: string, prompt: string): Promise<Answer> {
  // delegate (rather than submit) to learn the task's id; a refusal such as BUDGET_EXCEEDED throws here.
  const handle = orchestrator.delegate<Answer>({
    type: 'chat',
    requires: ['chat', model],
    payload: { prompt },
    tenantId,
  });
  accepted.add(handle.id);
  return handle.result;
}

const fellBack = { 'breaker open': 0, 'rate-limited': 0, 'after a 5xx': 0, 'after a 429': 0 };
const tenants = new Map(Object.keys(BUDGETS).map((id) => [id, { answered: 0, refused: 0, codes: new Set<string>() }]));

async function ask(tenantId: string, prompt: string): Promise<void> {
  const tenant = tenants.get(tenantId)!;
  try {
    // Don't queue behind a quarantined or paused model: ask the small one.
    let fallback: keyof typeof fellBack | undefined = largeOpen
      ? 'breaker open'
      : largePaused
        ? 'rate-limited'
        : undefined;
    if (!fallback) {
      try {
        await runOn('large', tenantId, prompt);
      } catch (err) {
        if (!(err instanceof ProviderError)) throw err; // a refusal: the small model would refuse it too
        fallback = err.status === 429 ? 'after a 429' : 'after a 5xx'; // one attempt, so the agent's own error
      }
    }
    if (fallback) {
      await runOn('small', tenantId, prompt);
      fellBack[fallback]++;
    }
    tenant.answered++;
  } catch (err) {
    if (!isOrchestratorError(err) || err.code !== 'BUDGET_EXCEEDED') throw err;
    tenant.refused++;
    tenant.codes.add(err.code);
  }
}

await orchestrator.start();
// Four users, two per tenant, each asking ten questions and reading each answer for a moment.
const users = ['acme', 'globex', 'acme', 'globex'];
const QUESTIONS = 10;
const reading = seeded(7);
await Promise.all(
  users.map(async (tenantId, u) => {
    for (let i = 0; i < QUESTIONS; i++) {
      await ask(tenantId, `question ${u}.${i}`);
      await delay(150 + reading() * 150);
    }
  }),
);
await orchestrator.stop();

// --- Summary -----------------------------------------------------------------------------------------

const s = orchestrator.stats();
const failed = s.failed + s.timedOut + s.cancelled + s.deadLettered;
const once = [...accepted].every((id) => endings.get(id) === 1) && endings.size === accepted.size;
const reasons = Object.entries(fellBack)
  .map(([why, count]) => `${why} ${count}`)
  .join(', ');
console.log(
  `large model: ${calls.large.answered} calls answered, ${calls.large.rateLimited} answered 429, ${calls.large.failed} answered 503`,
);
console.log(`small model: ${calls.small.answered} calls answered`);
console.log(`large breaker: opened ${seen.opened} times, closed again ${seen.closed} times`);
console.log(`fell back to small: ${Object.values(fellBack).reduce((a, b) => a + b)} (${reasons})`);
console.log(
  `429s absorbed: ${seen.deferred429} of ${calls.large.rateLimited} re-queued without spending an attempt; tasks failed by a 429: ${seen.failed429}`,
);
// Spend can end a little over the limit: admission is checked at submit, and running tasks still report their cost.
for (const [id, t] of tenants) {
  console.log(
    `tenant ${id}: spent ${orchestrator.resources.spend(id).toFixed(1)} of ${BUDGETS[id]} cents, ${t.answered} answered, ${t.refused} refused (${[...t.codes].join(', ') || 'none'})`,
  );
}
const total = (key: 'answered' | 'refused'): number => [...tenants.values()].reduce((sum, t) => sum + t[key], 0);
console.log(
  `requests: ${users.length * QUESTIONS} asked = ${total('answered')} answered + ${total('refused')} refused`,
);
console.log(`tasks: ${s.submitted} submitted = ${s.completed} completed + ${failed} failed + ${s.rejected} refused`);
console.log(
  `every accepted task ended exactly once: ${once ? 'yes' : 'NO'} (${accepted.size} accepted, ${endings.size} ended)`,
);
console.log(`orchestrator: ${s.state}, ${s.resources.tracked} timers and listeners left`); // so the process exits
