/**
 * Helpers shared by the benchmark scripts: running a child process for its
 * output, parsing the "<count> APDUs in <seconds> s" lines the loop programs
 * print, and medians.
 */
import { spawn } from 'node:child_process';

export interface CommandResult {
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit, in seconds. */
  seconds: number;
}

/** Runs `command` with `args` and resolves with its output; rejects on a non-zero exit or after `timeoutMs`. */
export function runCommand(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (code === 0) {
        resolve({ stdout, stderr, seconds });
      } else {
        const reason = signal ? `signal ${signal}` : `exit code ${code}`;
        reject(new Error(`${command} ${args.join(' ')} failed with ${reason}:\n${stderr.trim() || stdout.trim()}`));
      }
    });
  });
}

/** Parses "<count> APDUs in <seconds> s" and returns APDUs per second. */
export function parseRate(output: string, source: string): number {
  const match = /(\d+) APDUs in ([\d.]+) s/.exec(output);
  if (!match) throw new Error(`${source} printed no "<count> APDUs in <seconds> s" line; its output was:\n${output}`);
  return Number(match[1]) / Number(match[2]);
}

/** Returns the median of `values`; NaN for an empty list. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
