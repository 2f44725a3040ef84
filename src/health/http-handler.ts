/**
 * An `http.RequestListener` for the operational endpoints, with no web framework needed: mount it on `node:http`
 * (or call it from Express/Fastify for these paths).
 *
 * - `GET /metrics`: Prometheus text format.
 * - `GET /healthz`: 200 while healthy or degraded, 503 when unhealthy; the body is the health report as JSON.
 * - `GET /readyz`: 200 once started and not unhealthy, 503 otherwise (before start, while stopping, or unhealthy).
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { isReady, type HealthReport } from './health-monitor.js';

export interface HttpHandlerTarget {
  health(): HealthReport;
  /** `undefined` when metrics are off (then `/metrics` is 404). */
  metrics(): Promise<{ readonly contentType: string; readonly body: string }> | undefined;
}

export function createHttpHandler(target: HttpHandlerTarget): RequestListener {
  return (req: IncomingMessage, res: ServerResponse): void => {
    void respond(target, req, res).catch((error: unknown) => {
      // Never let a scrape crash the host: answer 500 (if nothing was sent yet) and carry on.
      if (!res.headersSent)
        send(
          res,
          500,
          'text/plain; charset=utf-8',
          `internal error: ${error instanceof Error ? error.message : String(error)}\n`,
        );
      else res.destroy();
    });
  };
}

async function respond(target: HttpHandlerTarget, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
  }
  switch (path) {
    case '/metrics': {
      const metrics = target.metrics();
      if (!metrics) return send(res, 404, 'text/plain; charset=utf-8', 'metrics are off\n');
      const { contentType, body } = await metrics;
      return send(res, 200, contentType, body);
    }
    case '/healthz': {
      const report = target.health();
      return send(res, report.status === 'unhealthy' ? 503 : 200, 'application/json', `${JSON.stringify(report)}\n`);
    }
    case '/readyz': {
      const report = target.health();
      const ready = isReady(report);
      return send(
        res,
        ready ? 200 : 503,
        'application/json',
        `${JSON.stringify({ ready, status: report.status, state: report.components.orchestrator.state })}\n`,
      );
    }
    default:
      return send(res, 404, 'text/plain; charset=utf-8', 'not found: try /metrics, /healthz or /readyz\n');
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.statusCode = status;
  res.setHeader('content-type', contentType);
  res.setHeader('cache-control', 'no-store');
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
