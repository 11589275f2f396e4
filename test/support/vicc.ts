/**
 * Starts vsmartcard's `vicc` (an ISO 7816 card emulator in Python) as a card
 * for a vpcd reader: a card that virtcard did not write.
 *
 * Debian 12's packages need two fixes, which this helper applies through
 * PYTHONPATH without touching the system. python3-virtualsmartcard installs
 * its module under /usr/lib/python3/site-packages/virtualsmartcard, which is
 * not on Python's path. It also imports `Crypto`, while Debian's
 * python3-pycryptodome provides the same code as `Cryptodome`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const DEBIAN_MODULE_PATH = '/usr/lib/python3/site-packages/virtualsmartcard';
const DEBIAN_CRYPTODOME = '/usr/lib/python3/dist-packages/Cryptodome';

export interface ViccCard {
  /** Stops vicc by its PID; vpcd then reports the card as removed. */
  stop(): Promise<void>;
}

let shimFolder: string | undefined;

function pythonPath(existing: string | undefined): string {
  const parts = [DEBIAN_MODULE_PATH];
  const hasCrypto = spawnSync('/usr/bin/python3', ['-c', 'import Crypto']).status === 0;
  if (!hasCrypto && existsSync(DEBIAN_CRYPTODOME)) {
    if (shimFolder === undefined) {
      shimFolder = mkdtempSync(join(tmpdir(), 'virtcard-vicc-'));
      symlinkSync(DEBIAN_CRYPTODOME, join(shimFolder, 'Crypto'));
      process.once('exit', () => rmSync(shimFolder!, { recursive: true, force: true }));
    }
    parts.push(shimFolder);
  }
  return [...parts, ...(existing ? [existing] : [])].join(':');
}

/** Returns why vicc cannot run here, or undefined when it can. */
export function viccUnavailableReason(): string | undefined {
  if (spawnSync('which', ['vicc']).status !== 0) return 'vicc is missing: apt-get install vsmartcard-vpicc';
  const check = spawnSync('/usr/bin/python3', ['-c', 'from virtualsmartcard.VirtualSmartcard import VirtualICC'], {
    env: viccEnvironment(),
    encoding: 'utf8',
  });
  if (check.status !== 0) {
    return `vicc cannot load its Python module (apt-get install python3-virtualsmartcard python3-pycryptodome): ${check.stderr.trim().split('\n').pop() ?? ''}`;
  }
  return undefined;
}

/** Returns `environment` with the PYTHONPATH that Debian 12's vicc needs prepended to its own. */
export function viccEnvironment(environment: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...environment, PYTHONPATH: pythonPath(environment['PYTHONPATH']) };
}

/** Returns the arguments of `vicc --type iso7816` connecting to the vpcd reader on 127.0.0.1:`port`. */
export function viccArguments(port: number): string[] {
  return ['--type', 'iso7816', '--hostname', '127.0.0.1', '--port', String(port)];
}

/** Starts `vicc --type iso7816` connecting to the vpcd reader on `port`. */
export function startVicc(port: number): ViccCard {
  const child: ChildProcess = spawn('vicc', viccArguments(port), { stdio: 'ignore', env: viccEnvironment() });
  return {
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
