#!/usr/bin/env node
// Placeholder entry point; the subcommands are registered in cli/program.ts.
import { runCli } from './program.js';

process.exitCode = await runCli(process.argv);
