/**
 * Runs `virtcard vpcd` as a child process against a private pcscd and drives
 * OpenSC's command-line tools at the card it serves.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PrivatePcscd } from './private-pcscd.js';

/** Root of the repository (this file runs from dist/test/support/). */
export const REPO_ROOT = resolve(fileURLToPath(new URL('../../../', import.meta.url)));

/** Folder with the shared fixtures: $VIRTCARD_SHARED, or `shared` beside the repository. */
export const SHARED_DIR = process.env['VIRTCARD_SHARED'] ?? resolve(REPO_ROOT, '..', 'shared');

/** The compiled CLI entry point. */
export const VIRTCARD_MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

/** Tools the vpcd integration tests run, with the Debian package of each. */
const TOOLS: ReadonlyArray<[tool: string, debianPackage: string]> = [
  ['opensc-tool', 'opensc'],
  ['pkcs11-tool', 'opensc'],
  ['pkcs15-tool', 'opensc'],
  ['certutil', 'libnss3-tools'],
  ['openssl', 'openssl'],
];

/** Returns why the tools the tests need are missing, or undefined when all are there. */
export function missingToolsReason(): string | undefined {
  for (const [tool, debianPackage] of TOOLS) {
    if (spawnSync('which', [tool]).status !== 0) return `${tool} is missing: apt-get install ${debianPackage}`;
  }
  return undefined;
}

export interface VirtcardProcess {
  readonly child: ChildProcess;
  /** Path of the file that receives the process's stderr (its log). */
  readonly stderrPath: string;
  /** Reads everything the process wrote to stderr so far. */
  stderr(): string;
  /** Stops the process by its PID with SIGTERM and returns its exit code. */
  stop(): Promise<number | null>;
}

/** Starts `node dist/src/cli/main.js vpcd --port PORT ARGS...` with its stderr in `stderrPath`. */
export function startVirtcardVpcd(
  pcscd: PrivatePcscd,
  args: readonly string[],
  stderrPath: string,
  env: NodeJS.ProcessEnv = {},
): VirtcardProcess {
  return startVirtcard(['vpcd', '--port', String(pcscd.vpcdPort), ...args], stderrPath, env);
}

/** Starts `node dist/src/cli/main.js ARGS...` (stdin empty, stdout discarded) with its stderr in `stderrPath`. */
export function startVirtcard(args: readonly string[], stderrPath: string, env: NodeJS.ProcessEnv = {}): VirtcardProcess {
  const stderrFd = openSync(stderrPath, 'w');
  const child = spawn(process.execPath, [VIRTCARD_MAIN, ...args], {
    stdio: ['ignore', 'ignore', stderrFd],
    env: { ...process.env, VIRTCARD_LOG_FORMAT: 'json', ...env },
  });
  closeSync(stderrFd);

  const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
  return {
    child,
    stderrPath,
    stderr: () => readFileSync(stderrPath, 'utf8'),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const code = await Promise.race([exited, sleep(10_000).then(() => 'timeout' as const)]);
      if (code === 'timeout') {
        child.kill('SIGKILL');
        throw new Error(`virtcard (PID ${child.pid}) did not exit within 10 s of SIGTERM`);
      }
      return code;
    },
  };
}

/** Runs a PC/SC client tool against the private pcscd and returns its result. */
export function runTool(pcscd: PrivatePcscd, tool: string, args: readonly string[]): SpawnSyncReturns<string> {
  return spawnSync(tool, args, { env: pcscd.env, encoding: 'utf8', timeout: 60_000 });
}

/** Formats a tool result for an assertion message. */
export function describeRun(result: SpawnSyncReturns<string>): string {
  return `exit ${result.status}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
}

/** Waits until pcscd reports a card in its first vpcd reader, or raises after `timeoutMs`. */
export async function waitForCard(pcscd: PrivatePcscd, virtcard: VirtcardProcess, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (virtcard.child.exitCode !== null) {
      throw new Error(`virtcard exited with code ${virtcard.child.exitCode}:\n${virtcard.stderr()}`);
    }
    if (runTool(pcscd, 'opensc-tool', ['-a']).status === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`pcscd reported no card within ${timeoutMs} ms; virtcard log:\n${virtcard.stderr()}`);
    }
    await sleep(250);
  }
}

/**
 * Waits until pcscd reports no card, or raises after `timeoutMs`. pcscd
 * notices a closed vpcd connection only at its next presence poll, so a test
 * that restarts virtcard waits for this before it starts the next process.
 */
export async function waitForNoCard(pcscd: PrivatePcscd, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (runTool(pcscd, 'opensc-tool', ['-a']).status === 0) {
    if (Date.now() > deadline) throw new Error(`pcscd still reports a card ${timeoutMs} ms after virtcard stopped`);
    await sleep(250);
  }
}
