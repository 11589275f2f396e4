#!/usr/bin/env node
// The `virtcard` executable; the subcommands are registered in cli/program.ts.
import { runCli } from './program.js';

try {
  process.exitCode = await runCli(process.argv);
} catch (error) {
  // Expected failures (invalid options, a missing file, an unreachable token) carry a message
  // written for the user, so print it without a stack trace.
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`virtcard: ${message}\n`);
  if (process.env['VIRTCARD_LOG_LEVEL'] === 'debug' && error instanceof Error && error.stack) {
    process.stderr.write(`${error.stack}\n`);
  }
  process.exitCode = 1;
}
