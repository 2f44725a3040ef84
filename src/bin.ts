#!/usr/bin/env node
/** The `unified-orchestrator` operator command; see `unified-orchestrator --help`. */
import { run } from './cli/cli.js';

run(process.argv.slice(2), {
  env: process.env,
  write: (text) => process.stdout.write(text),
  error: (text) => process.stderr.write(text),
}).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(
      `unified-orchestrator: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
