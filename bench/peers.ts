/**
 * Peers the benchmarks compare against but the package does not depend on. BullMQ pulls in native optional
 * packages for other platforms that the registry mirror here does not carry, which would break `npm ci` from the
 * lockfile; so it is installed on first use into bench/.peers (ignored by git) with `npm install`, which tolerates
 * missing optional packages, and loaded from there.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** The BullMQ version compared against. */
export const BULLMQ_VERSION = '5.81.5';

const dir = fileURLToPath(new URL('./.peers/', import.meta.url));

/** The parts of BullMQ the bridge suite uses. */
export interface BullMQ {
  Queue: new (
    name: string,
    options: object,
  ) => {
    on(event: 'error', listener: (error: Error) => void): unknown;
    waitUntilReady(): Promise<unknown>;
    add(
      name: string,
      data: object,
    ): Promise<{ id?: string; waitUntilFinished(events: unknown, ttl?: number): Promise<unknown> }>;
    addBulk(jobs: Array<{ name: string; data: object; opts?: object }>): Promise<Array<{ id?: string }>>;
    close(): Promise<void>;
  };
  QueueEvents: new (
    name: string,
    options: object,
  ) => {
    on(event: 'error', listener: (error: Error) => void): unknown;
    on(event: 'completed', listener: (args: { jobId: string }) => void): unknown;
    on(event: 'failed', listener: (args: { jobId: string; failedReason: string }) => void): unknown;
    waitUntilReady(): Promise<unknown>;
    close(): Promise<void>;
  };
  Worker: new (
    name: string,
    processor: (job: unknown) => unknown,
    options: object,
  ) => {
    on(event: 'error', listener: (error: Error) => void): unknown;
    waitUntilReady(): Promise<unknown>;
    close(): Promise<void>;
  };
}

/** Installs BullMQ into bench/.peers if it is not there yet, and loads it. */
export function loadBullMQ(): BullMQ {
  if (!existsSync(`${dir}node_modules/bullmq/package.json`)) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}package.json`, JSON.stringify({ name: 'bench-peers', private: true }));
    execFileSync(
      'npm',
      ['install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', `bullmq@${BULLMQ_VERSION}`],
      { cwd: dir, stdio: 'ignore' },
    );
  }
  return createRequire(`${dir}package.json`)('bullmq') as BullMQ;
}
