/**
 * Starts a pcscd of the test's own, so tests never share the machine's pcscd
 * or its vpcd port with each other or with a user's session.
 *
 * pcscd refuses to start while another instance owns /run/pcscd, so the
 * private one runs in a new mount namespace where a temporary folder is bound
 * over /run/pcscd. Its socket is then reachable from outside at
 * `<folder>/pcscd.comm`, which libpcsclite clients (opensc-tool,
 * pkcs11-tool, pcsc_scan) use when PCSCLITE_CSOCK_NAME names it.
 * Needs root (unshare and mount) and Debian's pcscd and vsmartcard-vpcd.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Where Debian's vsmartcard-vpcd installs the reader driver that pcscd loads. */
const VPCD_DRIVER = '/usr/lib/pcsc/drivers/serial/libifdvpcd.so';

export interface PrivatePcscd {
  /** TCP port on which this pcscd's vpcd waits for a virtual card (the first reader; the second uses port + 1). */
  readonly vpcdPort: number;
  /** Environment for PC/SC clients: the current environment plus PCSCLITE_CSOCK_NAME. */
  readonly env: NodeJS.ProcessEnv;
  /** Path of the pcscd log (pcscd runs in the foreground with `--info`, plus `--apdu` when requested). */
  readonly logPath: string;
  /** Reads the pcscd log written so far. */
  log(): string;
  /** Stops this pcscd (by its PID) and removes its folder. */
  stop(): Promise<void>;
}

/** Returns a TCP port that is free on 127.0.0.1 for a pair of vpcd readers (port and port + 1). */
export async function findFreePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
      });
    });
    if (port > 0 && port < 65535 && (await isPortFree(port + 1))) return port;
  }
  throw new Error('found no free pair of TCP ports on 127.0.0.1 after 20 attempts');
}

function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Returns why a private pcscd cannot run here, or undefined when it can. */
export function privatePcscdUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'a private pcscd needs root (unshare --mount)';
  if (spawnSync('which', ['pcscd']).status !== 0) return 'pcscd is missing: apt-get install pcscd';
  if (!existsSync(VPCD_DRIVER)) return `${VPCD_DRIVER} is missing: apt-get install vsmartcard-vpcd`;
  return undefined;
}

/** Starts a private pcscd with one vpcd reader pair and waits until its socket accepts clients. */
export async function startPrivatePcscd(options: { logApdus?: boolean } = {}): Promise<PrivatePcscd> {
  const unavailable = privatePcscdUnavailableReason();
  if (unavailable) throw new Error(unavailable);

  const folder = mkdtempSync(join(tmpdir(), 'virtcard-pcscd-'));
  const runFolder = join(folder, 'run');
  const configFolder = join(folder, 'reader.conf.d');
  mkdirSync(runFolder);
  mkdirSync(configFolder);

  const vpcdPort = await findFreePortPair();
  const channel = `0x${vpcdPort.toString(16).toUpperCase()}`;
  writeFileSync(
    join(configFolder, 'vpcd'),
    `FRIENDLYNAME "Virtual PCD"\nDEVICENAME   /dev/null:${channel}\nLIBPATH      ${VPCD_DRIVER}\nCHANNELID    ${channel}\n`,
  );

  const logPath = join(folder, 'pcscd.log');
  // VIRTCARD_TEST_PCSCD_DEBUG=1 makes pcscd log every driver call, for chasing a hang by hand.
  const level = process.env['VIRTCARD_TEST_PCSCD_DEBUG'] === '1' ? '--debug' : '--info';
  const pcscdArgs = ['-f', level, '-c', configFolder, ...(options.logApdus ? ['--apdu'] : [])];
  const script = `mkdir -p /run/pcscd && mount --bind "$1" /run/pcscd && shift && exec pcscd "$@" >>"${logPath}" 2>&1`;
  const child: ChildProcess = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', runFolder, ...pcscdArgs], {
    stdio: 'ignore',
  });

  const socketPath = join(runFolder, 'pcscd.comm');
  const env = { ...process.env, PCSCLITE_CSOCK_NAME: socketPath };
  const readLog = (): string => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : '');

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    rmSync(folder, { recursive: true, force: true });
  };

  // pcscd creates its socket once it is ready; wait up to 10 s for it.
  const deadline = Date.now() + 10_000;
  while (!existsSync(socketPath)) {
    if (child.exitCode !== null) {
      const log = readLog();
      await stop();
      throw new Error(`private pcscd exited with code ${child.exitCode} before it was ready:\n${log}`);
    }
    if (Date.now() > deadline) {
      const log = readLog();
      await stop();
      throw new Error(`private pcscd did not create ${socketPath} within 10 s:\n${log}`);
    }
    await sleep(50);
  }

  return { vpcdPort, env, logPath, log: readLog, stop };
}
