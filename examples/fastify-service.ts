/**
 * A Fastify 5 service that owns one UnifiedOrchestrator: the shape to copy into your own service.
 *
 * - `POST /summarize` validates its body and runs ONE task per request, for the caller's tenant, with a deadline;
 *   the task is cancelled when the client hangs up, and library errors become HTTP statuses by their `code`.
 * - `GET /metrics` serves the orchestrator's metrics and the service's own from one prom-client registry.
 * - `GET /healthz` and `GET /readyz` answer from `orchestrator.health()`.
 * - SIGTERM / SIGINT: stop accepting, let in-flight requests finish, stop the orchestrator, exit on its own.
 *
 *   PORT=3000 node --import tsx examples/fastify-service.ts
 *   curl -s localhost:3000/summarize -H 'content-type: application/json' -H 'x-tenant-id: acme' \
 *     -d '{"text": "Pools first. Then the rest."}'
 */
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify, { type FastifyError, type FastifyReply } from 'fastify';
import { Counter, Registry } from 'prom-client';
import { isOrchestratorError, retryAfterMs, UnifiedOrchestrator, type Agent } from 'unified-orchestrator';

/** `delayMs` stands in for the model's latency, so that you (and the tests) can make a request time out. */
type SummarizeJob = { text: string; delayMs: number };
type Summary = { summary: string; words: number; agentId: string };

// An agent of the summarizer pool; in your service, a model client. It hands ctx.signal on, so that a timed-out or
// cancelled task stops its work (and frees its slot) at once instead of running on for nobody.
const createSummarizer = (): Agent<SummarizeJob, Summary> => ({
  async execute(ctx) {
    const { text, delayMs } = ctx.payload;
    await sleep(delayMs, undefined, { signal: ctx.signal }); // the model call: rejects as soon as the signal aborts
    const words = text.split(/\s+/).filter(Boolean).length;
    ctx.reportCost(words); // counts against the tenant's budget, as the model's tokens would
    return { summary: text.split(/(?<=[.!?])\s/)[0] ?? '', words, agentId: ctx.agentId };
  },
});

// The service owns the registry: the orchestrator's metrics go on it, next to the service's own.
const registry = new Registry();
const responses = new Counter({
  name: 'summarizer_http_responses_total',
  help: 'HTTP responses of the summarizer service, by route and status code.',
  labelNames: ['route', 'status'],
  registers: [registry],
});

const orchestrator = new UnifiedOrchestrator({
  // Each agent takes 2 requests at once; the pool keeps 2 agents warm and grows to 8 under load.
  pools: [
    {
      role: 'summarizer',
      capabilities: ['summarize'],
      create: createSummarizer,
      minAgents: 2,
      maxAgents: 8,
      concurrency: 2,
    },
  ],
  maxQueueSize: 200, // backpressure: past 200 waiting, QUEUE_FULL (503) instead of an ever longer wait
  budgets: { windowMs: 3_600_000, limits: { trial: 100 } }, // the 'trial' tenant gets 100 words an hour
  health: { sla: { types: { summarize: { p99Ms: 5_000, errorRate: 0.05 } } } },
  metrics: { registry },
});

/** How long a request may wait for a free agent, on top of its timeoutMs. */
const MAX_QUEUE_WAIT_MS = 5_000;

const app = Fastify({ logger: { level: process.env['LOG_LEVEL'] ?? 'warn' } });

app.addHook('onResponse', async (request, reply) => {
  responses.inc({ route: request.routeOptions.url ?? 'unmatched', status: reply.statusCode }); // bounded labels
});

// Fastify's own errors (a body that fails the schema, malformed JSON, a body too large) in the shape of ours.
app.setErrorHandler((error: FastifyError, request, reply) => {
  const status = error.statusCode ?? 500;
  if (status >= 500) request.log.error({ err: error }, 'request failed');
  const code = error.validation ? 'VALIDATION_ERROR' : status >= 500 ? 'INTERNAL' : error.code;
  return reply.code(status).send({ error: { code, message: status >= 500 ? 'internal error' : error.message } });
});

/** The one place that decides how a refused or failed task reads over HTTP: by `code`, never by the message. */
function httpErrorOf(error: unknown, reply: FastifyReply): { status: number; code: string; retryAfterS?: number } {
  // The hint the error carries (a budget's window, an agent's vendor 429 passed on), else our own guess.
  const retryAfter = (guessMs: number): number => Math.ceil((retryAfterMs(error) ?? guessMs) / 1_000);
  // With one attempt an agent's own error arrives as it was thrown.
  if (!isOrchestratorError(error)) return { status: 502, code: 'AGENT_FAILED', retryAfterS: retryAfter(1_000) };
  const { code } = error;
  switch (code) {
    case 'VALIDATION_ERROR': // e.g. a payload over maxPayloadBytes
      return { status: 400, code };
    case 'BUDGET_EXCEEDED': // this tenant's quota, not the service's capacity
      return { status: 429, code, retryAfterS: retryAfter(60_000) };
    case 'QUEUE_FULL':
    case 'RESOURCE_PRESSURE':
    case 'ORCHESTRATOR_STOPPED':
    case 'ORCHESTRATOR_NOT_STARTED':
      return { status: 503, code, retryAfterS: retryAfter(1_000) }; // busy or going away: another replica may answer
    // (No ORCHESTRATOR_HALTED: a halt never fails a task, it holds it; the request's own deadline covers that.)
    case 'NO_CAPABLE_AGENT': // no pool serves the capability: a deployment mistake, not load
      return { status: 503, code };
    case 'TASK_TIMEOUT': // the attempt ran past timeoutMs, or the whole task past deadlineMs (error.scope says which)
      return { status: 504, code };
    case 'TASK_CANCELLED': // the client hung up, or a stop cut the drain short
      if (reply.raw.destroyed) return { status: 499, code }; // nobody left to answer (nginx's "client closed request")
      return { status: 503, code, retryAfterS: retryAfter(1_000) };
    case 'TASK_DEAD_LETTERED': // only with maxAttempts > 1: every attempt failed
      return { status: 502, code };
    default:
      return { status: 500, code };
  }
}

/**
 * Aborts when the client disconnects before it got its answer. Not Fastify's `request.signal`: that one fires on the
 * request's 'close', which Node also emits once a POST body was read, so it would cancel every task
 * (fastify/fastify#6725).
 */
function disconnected(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort(new Error('the client disconnected'));
  });
  return controller.signal;
}

interface SummarizeRoute {
  Headers: { 'x-tenant-id': string };
  Body: { text: string; timeoutMs: number; delayMs: number }; // the schema fills in the defaults
}

app.post<SummarizeRoute>(
  '/summarize',
  {
    schema: {
      headers: {
        type: 'object',
        required: ['x-tenant-id'],
        properties: { 'x-tenant-id': { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,63}$' } },
      },
      body: {
        type: 'object',
        required: ['text'],
        properties: {
          text: { type: 'string', minLength: 1, maxLength: 20_000 },
          timeoutMs: { type: 'integer', minimum: 50, maximum: 10_000, default: 2_000 }, // the caller's, within limits
          delayMs: { type: 'integer', minimum: 0, maximum: 10_000, default: 100 },
        },
      },
    },
  },
  async (request, reply) => {
    const { text, timeoutMs, delayMs } = request.body;
    try {
      // One task per request, and one attempt (the default): a retry would run past the caller's deadline.
      return await orchestrator.submit<Summary>({
        type: 'summarize',
        requires: ['summarize'],
        payload: { text, delayMs } satisfies SummarizeJob,
        tenantId: request.headers['x-tenant-id'], // budgets, and fair queueing between tenants
        timeoutMs, // bounds the attempt: the agent's ctx.signal aborts and the request gets TASK_TIMEOUT
        // Bounds the whole task, the wait for a free agent included (a burst, an operator's halt): also TASK_TIMEOUT.
        deadlineMs: timeoutMs + MAX_QUEUE_WAIT_MS,
        signal: disconnected(reply), // aborting it cancels the task, waiting or running
      });
    } catch (error) {
      const { status, code, retryAfterS } = httpErrorOf(error, reply);
      if (status === 500 || code === 'AGENT_FAILED') request.log.error({ err: error }, 'summarize failed');
      if (retryAfterS !== undefined) reply.header('retry-after', retryAfterS);
      // An agent's own error may carry its vendor's internals: the client gets the code only.
      const message = isOrchestratorError(error) ? error.message : 'the summarizer failed';
      return reply.code(status).send({ error: { code, message } });
    }
  },
);

app.get('/metrics', async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()));

// Liveness: only 'unhealthy' (cannot recover by itself) fails it; 'degraded' (an SLA breach, a full queue) does not.
app.get('/healthz', async (_request, reply) => {
  const report = orchestrator.health();
  return reply.code(report.status === 'unhealthy' ? 503 : 200).send(report);
});

// Readiness: traffic only while the orchestrator runs (not before start, not while stopping) and is not unhealthy.
app.get('/readyz', async (_request, reply) => {
  const ready = orchestrator.ready();
  return reply.code(ready ? 200 : 503).send({ ready, state: orchestrator.state });
});

// Shutdown, in order. app.close() stops accepting (new requests get 503) and waits until every in-flight request is
// answered, that is until its task ended. Those answers say `Connection: close`; without it Fastify 5.12 waits out
// the keep-alive timeout (72 s) for their connections (fastify/fastify#7044).
let draining = false;
app.addHook('preClose', async () => {
  draining = true;
});
app.addHook('onSend', async (_request, reply) => {
  if (draining) reply.header('connection', 'close');
});
// Then onClose: the orchestrator drains what is left (work not tied to a request), disposes its agents and releases
// its timers, so nothing holds the event loop and the process exits by itself, without process.exit().
app.addHook('onClose', async () => {
  await orchestrator.stop({ drain: true, timeoutMs: 15_000 });
});

let closing: Promise<void> | undefined;
const shutdown = (signal: NodeJS.Signals): void => {
  if (closing) {
    console.log(`${signal}: already draining`);
    return;
  }
  console.log(`${signal}: no longer accepting; draining in-flight requests`);
  closing = app.close().then(
    () => console.log('stopped'),
    (error: unknown) => {
      console.error('shutdown failed', error);
      process.exitCode = 1;
    },
  );
};
// A supervisor may send SIGTERM again while the drain runs: it must not cut the drain short.
process.on('SIGTERM', shutdown);
process.once('SIGINT', shutdown); // a second Ctrl-C kills at once: the handler is gone

await orchestrator.start(); // warm the pools before taking traffic: the first request finds agents ready
const address = await app.listen({ port: Number(process.env['PORT'] ?? 3000), host: '127.0.0.1' });
console.log(`listening on ${address}`);
