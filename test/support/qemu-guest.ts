/**
 * Boots the Debian test guest (test/guest) with a `ccid-card-passthru`
 * reader, runs `virtcard client` against it, and reads the guest's section
 * transcripts ("##### BEGIN name: command" … "##### END name rc=N", written
 * by test/guest/scripts/common.sh) in the format of the ccid-card-emulated
 * reference transcripts.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createPublicKey, publicDecrypt, constants, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { homedir } from 'node:os';
import path from 'node:path';
import { REPO_ROOT, SHARED_DIR, VIRTCARD_MAIN } from './virtcard-vpcd.js';

/** Guest transcripts of QEMU's own ccid-card-emulated (libcacard 2.8) on the fixture NSS database. */
export const REFERENCE_DIRECTORY = path.join(SHARED_DIR, 'reference', 'qemu-emulated');
export const FIXTURE_DATABASE = path.join(SHARED_DIR, 'fixtures', 'nss-db');
export const GUEST_HARNESS = path.join(REPO_ROOT, 'test', 'guest');
export const GUEST_SCRIPTS = path.join(GUEST_HARNESS, 'scripts');
export const GUEST_CACHE =
  process.env['VIRTCARD_GUEST_DIR'] ?? path.join(process.env['XDG_CACHE_HOME'] ?? path.join(homedir(), '.cache'), 'virtcard-guest');

/** The fixture database's password, which is the card PIN. */
export const FIXTURE_PIN = '12345678';
/** What the guest scripts sign (`read_and_sign_all` in common.sh). */
export const SIGNED_DATA = Buffer.from('virtcard test data\n');

/** Transcripts compared with ccid-card-emulated's, by section name (`opensc_checks` in common.sh). */
export const COMPARED_SECTIONS = [
  'opensc-tool-l',
  'opensc-tool-a',
  'opensc-tool-n',
  'pkcs11-tool-L',
  'pkcs11-tool-O',
  'pkcs15-tool-D',
  'cert1-read',
  'cert2-read',
  'cert3-read',
  'sign1',
  'sign2',
  'sign3',
  'pkcs11-tool-login-O',
] as const;

export function guestBuilt(): boolean {
  return ['vmlinuz', 'initrd.img', 'rootfs.ext4'].every((file) => existsSync(path.join(GUEST_CACHE, file)));
}

function commandExists(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

/** Returns why the guest tests cannot run here, or undefined when they can. */
export function guestUnavailableReason(): string | undefined {
  if (!commandExists('qemu-system-x86_64')) return 'qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)';
  if (!existsSync(VIRTCARD_MAIN)) return `${VIRTCARD_MAIN} is missing; run npm run build`;
  if (!commandExists('openssl')) return 'openssl is not installed (apt-get install openssl)';
  if (guestBuilt()) return undefined;
  if (process.getuid?.() !== 0) return `the test guest is not built in ${GUEST_CACHE}, and building it needs root (test/guest/build.sh)`;
  if (!commandExists('debootstrap')) return 'the test guest is not built and debootstrap is missing (apt-get install debootstrap)';
  return undefined;
}

/** Builds the test guest when it is missing, and fails the calling hook when the build fails. */
export function ensureGuestBuilt(): void {
  if (guestBuilt()) return;
  const build = spawnSync(path.join(GUEST_HARNESS, 'build.sh'), {
    encoding: 'utf8',
    timeout: 15 * 60 * 1000,
    env: { ...process.env, VIRTCARD_GUEST_DIR: GUEST_CACHE },
  });
  assert.equal(build.status, 0, `building the test guest failed:\n${build.stdout}\n${build.stderr}`);
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** QEMU arguments for usb-ccid with a passthru card whose chardev listens on `port`. */
export function passthruArguments(port: number): string[] {
  return [
    '-device',
    'usb-ccid',
    '-device',
    'ccid-card-passthru,chardev=ccid',
    '-chardev',
    `socket,id=ccid,host=127.0.0.1,port=${port},server=on,wait=off`,
  ];
}

/** A running `virtcard client` with its output collected. */
export class ClientProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    child.stdout?.setEncoding('utf8').on('data', (text: string) => (this.stdout += text));
    child.stderr?.setEncoding('utf8').on('data', (text: string) => (this.stderr += text));
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  }

  /** Starts `virtcard client ARGS`. Its stdin stays an open pipe, because the client's console reads it. */
  static start(args: string[], env: Record<string, string> = {}): ClientProcess {
    const child = spawn(process.execPath, [VIRTCARD_MAIN, 'client', ...args], {
      env: { ...process.env, VIRTCARD_LOG_FORMAT: 'text', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    return new ClientProcess(child);
  }

  /** Waits until the client's log matches `pattern`, or fails after `timeoutMs`. */
  async waitForLog(pattern: RegExp, timeoutMs = 30000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.stderr)) {
      if (Date.now() > deadline) assert.fail(`the client never logged ${String(pattern)}\n${this.describe()}`);
      if (this.child.exitCode !== null) assert.fail(`the client exited with status ${this.child.exitCode}\n${this.describe()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Types one line on the client's stdin. */
  command(line: string): void {
    this.child.stdin?.write(`${line}\n`);
  }

  /** Sends SIGTERM and returns the exit code. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }

  /** Everything the client wrote, for assertion messages. */
  describe(): string {
    return `--- client stdout:\n${this.stdout.slice(-3000)}\n--- client stderr:\n${this.stderr.slice(-6000)}`;
  }
}

export interface GuestRun {
  /** Exit status of run.sh: the script's own, 124 on timeout, 125 when the guest died. */
  code: number | null;
  stdout: string;
  stderr: string;
  /** Guest console: kernel, init, the pcscd log and the "VIRTCARD-TEST" event lines. */
  console: string;
}

export interface BootOptions {
  /** Files copied into the guest's $VIRTCARD_FILES besides common.sh. */
  files?: string[];
  /** Extra variables for the guest script, besides PIN. */
  guestEnv?: Record<string, string>;
  /** Extra pcscd arguments in the guest, e.g. "-a" to log every APDU to the console. */
  pcscdArguments?: string;
  /** Called with each "VIRTCARD-TEST <event>" line the guest writes, and the PID of run.sh. */
  onEvent?: (event: string, runPid: number) => void;
  timeoutSeconds?: number;
}

/**
 * Boots the guest with `script` (a name under test/guest/scripts or an
 * absolute path) and the passthru card on `port`. The guest gets the
 * fixture PIN in $PIN.
 */
export async function bootGuest(work: string, script: string, port: number, options: BootOptions = {}): Promise<GuestRun> {
  const scriptPath = path.isAbsolute(script) ? script : path.join(GUEST_SCRIPTS, script);
  const consoleFile = path.join(work, `${path.basename(script, '.sh')}-${port}.console`);
  writeFileSync(consoleFile, '');
  const guestEnv = { PIN: FIXTURE_PIN, ...options.guestEnv };
  const child = spawn(
    path.join(GUEST_HARNESS, 'run.sh'),
    [
      '--timeout',
      String(options.timeoutSeconds ?? 150),
      '--console',
      consoleFile,
      ...[path.join(GUEST_SCRIPTS, 'common.sh'), ...(options.files ?? [])].flatMap((file) => ['--put', file]),
      ...Object.entries(guestEnv).flatMap(([name, value]) => ['--env', `${name}=${value}`]),
      scriptPath,
      '--',
      ...passthruArguments(port),
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        VIRTCARD_GUEST_DIR: GUEST_CACHE,
        ...(options.pcscdArguments === undefined ? {} : { VIRTCARD_PCSCD_ARGS: options.pcscdArguments }),
      },
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));

  // Follow the console for events; the guest writes each one once.
  const onEvent = options.onEvent;
  const seen = new Set<string>();
  const poll = setInterval(() => {
    if (onEvent === undefined) return;
    const text = readFileSync(consoleFile, 'utf8');
    for (const match of text.matchAll(/VIRTCARD-TEST (\S+)/g)) {
      const event = match[1]!;
      if (seen.has(event)) continue;
      seen.add(event);
      onEvent(event, child.pid!);
    }
  }, 100);

  const [code] = (await once(child, 'exit')) as [number | null];
  clearInterval(poll);
  return { code, stdout, stderr, console: readFileSync(consoleFile, 'utf8') };
}

/** Splits guest output into sections in the reference format: "$ command", output, "[exit status N]". */
export function parseSections(output: string): Map<string, string> {
  const sections = new Map<string, string>();
  let name: string | undefined;
  let lines: string[] = [];
  for (const line of output.split('\n')) {
    const begin = /^##### BEGIN (\S+): (.*)$/.exec(line);
    const end = /^##### END (\S+) rc=(\d+)$/.exec(line);
    if (begin) {
      name = begin[1]!;
      lines = [`$ ${begin[2]!}`];
    } else if (end && name !== undefined) {
      lines.push(`[exit status ${end[2]!}]`);
      sections.set(name, `${lines.join('\n')}\n`);
      name = undefined;
    } else if (name !== undefined) {
      lines.push(line);
    }
  }
  return sections;
}

/** Replaces what differs between two runs on the same card: the PKCS#11 object handles OpenSC prints. */
export function normaliseHandles(text: string): string {
  return text.replace(/^(Data|Profile) object \d+$/gm, '$1 object <handle>');
}

/** Also replaces what depends on the keys: serial numbers, subjects, GUIDs and base64 blocks. */
export function normaliseKeyMaterial(text: string): string {
  return normaliseHandles(text)
    .replace(/^(\s*serial num\s*:).*$/gm, '$1 <serial>')
    .replace(/^(\s*serial:\s*).*$/gm, '$1<serial>')
    .replace(/^(\s*token label\s*:).*$/gm, '$1 <label>')
    .replace(/^(\s*subject:\s*).*$/gm, '$1<subject>')
    // Key usage follows the certificate's keyUsage extension.
    .replace(/^(\s*Usage:\s*).*$/gm, '$1<usage>')
    .replace(/^([A-Za-z0-9+/]{4,64}={0,2}\n)+/gm, '<base64>\n');
}

/** Returns the reference transcript of ccid-card-emulated for section `name`. */
export function readReference(name: string): string {
  return readFileSync(path.join(REFERENCE_DIRECTORY, `${name}.txt`), 'utf8');
}

export function section(sections: Map<string, string>, name: string, run: GuestRun): string {
  const text = sections.get(name);
  assert.ok(text !== undefined, `guest output has no section ${name}\n--- guest stdout:\n${run.stdout}\n--- stderr:\n${run.stderr}`);
  return text;
}

/** Returns the base64 block that follows `marker` (or the "Using slot" line) in a section. */
export function base64After(text: string, marker: RegExp): Buffer {
  const lines = text.split('\n');
  const start = lines.findIndex((line) => marker.test(line));
  assert.ok(start >= 0, `no line matching ${String(marker)} in:\n${text}`);
  const block: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(line)) break;
    block.push(line);
  }
  return Buffer.from(block.join(''), 'base64');
}

/** Checks that signature N in the guest output verifies with certificate N (RSA PKCS#1 v1.5 over the raw data). */
export function assertSignatureVerifies(sections: Map<string, string>, index: number, run: GuestRun): X509Certificate {
  const certificate = new X509Certificate(base64After(section(sections, `cert${index}-read`, run), /^Using slot/));
  const signature = base64After(section(sections, `sign${index}`, run), /^signature \(base64\):/);
  const recovered = publicDecrypt({ key: createPublicKey(certificate.publicKey.export({ format: 'pem', type: 'spki' })), padding: constants.RSA_PKCS1_PADDING }, signature);
  assert.deepEqual(recovered, SIGNED_DATA, `signature ${index} does not verify with certificate ${index} (${certificate.subject})`);
  return certificate;
}
