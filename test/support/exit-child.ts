/**
 * Runs a TypeScript script in a real Node process (under tsx), for the tests that prove a process exits on its own
 * once it has stopped what it started.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** What the process did: its exit code (`hung` when it had not exited within the limit) and its output. */
export interface ChildExit {
  readonly code: number | null | 'hung';
  readonly out: string;
}

/** Runs `script` with `args`; resolves with its exit code and output, or `hung` (and kills it) after `limitMs`. */
export function runToExit(script: string, args: readonly string[], limitMs: number): Promise<ChildExit> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      resolve({ code: 'hung', out });
    }, limitMs);
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}
