/**
 * `virtcard client` end to end: QEMU 7.2 with usb-ccid and
 * ccid-card-passthru boots the Debian test guest (test/guest), and the
 * guest's pcscd, libccid and OpenSC use the card the client serves.
 *
 * The guest transcripts are compared with those of QEMU's own
 * ccid-card-emulated (libcacard) on the same NSS database, read from
 * $VIRTCARD_SHARED/reference/qemu-emulated (default: `shared` beside the
 * repository). Three guest boots cover: the NSS card, removal and insertion
 * from the client's stdin, the client stopping, the built-in identity with
 * the client started before QEMU, and QEMU killed and restarted under a
 * running client.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createPublicKey, publicDecrypt, constants, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const sharedDirectory = process.env['VIRTCARD_SHARED'] ?? path.resolve(repositoryRoot, '../shared');
const referenceDirectory = path.join(sharedDirectory, 'reference', 'qemu-emulated');
const fixtureDatabase = path.join(sharedDirectory, 'fixtures', 'nss-db');
const guestHarness = path.join(repositoryRoot, 'test', 'guest');
const guestScripts = path.join(guestHarness, 'scripts');
const guestCache =
  process.env['VIRTCARD_GUEST_DIR'] ?? path.join(process.env['XDG_CACHE_HOME'] ?? path.join(homedir(), '.cache'), 'virtcard-guest');
const virtcardMain = path.join(repositoryRoot, 'dist', 'src', 'cli', 'main.js');

/** The fixture database's password, which is the card PIN. */
const PIN = '12345678';
const SIGNED_DATA = Buffer.from('virtcard test data\n');

/** Transcripts compared with ccid-card-emulated's, by section name. */
const COMPARED_SECTIONS = [
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
];

function guestBuilt(): boolean {
  return ['vmlinuz', 'initrd.img', 'rootfs.ext4'].every((file) => existsSync(path.join(guestCache, file)));
}

function commandExists(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

/** Returns why the tests cannot run here, or undefined when they can. */
function unavailableReason(): string | undefined {
  if (!commandExists('qemu-system-x86_64')) return 'qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)';
  if (!existsSync(virtcardMain)) return `${virtcardMain} is missing; run npm run build`;
  if (guestBuilt()) return undefined;
  if (process.getuid?.() !== 0) return `the test guest is not built in ${guestCache}, and building it needs root (test/guest/build.sh)`;
  if (!commandExists('debootstrap')) return 'the test guest is not built and debootstrap is missing (apt-get install debootstrap)';
  return undefined;
}

const unavailable = unavailableReason();
// In CI every tool must be there, so a missing one fails; elsewhere it skips with its reason.
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** QEMU arguments for usb-ccid with a passthru card whose chardev listens on `port`. */
function passthruArguments(port: number): string[] {
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
class ClientProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    child.stdout?.setEncoding('utf8').on('data', (text: string) => (this.stdout += text));
    child.stderr?.setEncoding('utf8').on('data', (text: string) => (this.stderr += text));
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  }

  static start(args: string[], env: Record<string, string> = {}): ClientProcess {
    const child = spawn(process.execPath, [virtcardMain, 'client', ...args], {
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

interface GuestRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Boots the guest with `script` and the passthru card on `port`. Each
 * "VIRTCARD-TEST <event>" line the guest writes to its console is passed to
 * `onEvent` while the guest runs, with the PID of run.sh.
 */
async function bootGuest(
  work: string,
  script: string,
  port: number,
  onEvent: (event: string, runPid: number) => void = () => undefined,
  timeoutSeconds = 150,
): Promise<GuestRun> {
  const consoleFile = path.join(work, `${path.basename(script, '.sh')}-${port}.console`);
  writeFileSync(consoleFile, '');
  const child = spawn(
    path.join(guestHarness, 'run.sh'),
    [
      '--timeout',
      String(timeoutSeconds),
      '--console',
      consoleFile,
      '--put',
      path.join(guestScripts, 'common.sh'),
      '--env',
      `PIN=${PIN}`,
      path.join(guestScripts, script),
      '--',
      ...passthruArguments(port),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VIRTCARD_GUEST_DIR: guestCache } },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));

  // Follow the console for events; the guest writes each one once.
  const seen = new Set<string>();
  const poll = setInterval(() => {
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
  return { code, stdout, stderr };
}

/** Kills the QEMU process that run.sh (PID `runPid`) started. */
function killQemuOf(runPid: number): void {
  const children = spawnSync('pgrep', ['-P', String(runPid)], { encoding: 'utf8' }).stdout.trim().split(/\s+/).filter(Boolean);
  assert.ok(children.length > 0, `no child process of run.sh (PID ${runPid}) found to kill`);
  for (const pid of children) process.kill(Number(pid), 'SIGKILL');
}

/** Splits guest output into sections in the reference format: "$ command", output, "[exit status N]". */
function parseSections(output: string): Map<string, string> {
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
function normaliseHandles(text: string): string {
  return text.replace(/^(Data|Profile) object \d+$/gm, '$1 object <handle>');
}

/** Also replaces what depends on the keys: serial numbers, subjects, GUIDs and base64 blocks. */
function normaliseKeyMaterial(text: string): string {
  return normaliseHandles(text)
    .replace(/^(\s*serial num\s*:).*$/gm, '$1 <serial>')
    .replace(/^(\s*serial:\s*).*$/gm, '$1<serial>')
    .replace(/^(\s*token label\s*:).*$/gm, '$1 <label>')
    .replace(/^(\s*subject:\s*).*$/gm, '$1<subject>')
    // Key usage follows the certificate's keyUsage extension.
    .replace(/^(\s*Usage:\s*).*$/gm, '$1<usage>')
    .replace(/^([A-Za-z0-9+/]{4,64}={0,2}\n)+/gm, '<base64>\n');
}

function section(sections: Map<string, string>, name: string, run: GuestRun): string {
  const text = sections.get(name);
  assert.ok(text !== undefined, `guest output has no section ${name}\n--- guest stdout:\n${run.stdout}\n--- stderr:\n${run.stderr}`);
  return text;
}

/** Returns the base64 block that follows `marker` (or the "Using slot" line) in a section. */
function base64After(text: string, marker: RegExp): Buffer {
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
function assertSignatureVerifies(sections: Map<string, string>, index: number, run: GuestRun): X509Certificate {
  const certificate = new X509Certificate(base64After(section(sections, `cert${index}-read`, run), /^Using slot/));
  const signature = base64After(section(sections, `sign${index}`, run), /^signature \(base64\):/);
  const recovered = publicDecrypt({ key: createPublicKey(certificate.publicKey.export({ format: 'pem', type: 'spki' })), padding: constants.RSA_PKCS1_PADDING }, signature);
  assert.deepEqual(recovered, SIGNED_DATA, `signature ${index} does not verify with certificate ${index} (${certificate.subject})`);
  return certificate;
}

describe('virtcard client with QEMU passthru', { skip }, () => {
  let work: string;

  before(() => {
    if (unavailable !== undefined) throw new Error(unavailable);
    assert.ok(existsSync(path.join(fixtureDatabase, 'cert9.db')), `fixture NSS database missing at ${fixtureDatabase}; set VIRTCARD_SHARED`);
    assert.ok(existsSync(referenceDirectory), `reference transcripts missing at ${referenceDirectory}; set VIRTCARD_SHARED`);
    if (!guestBuilt()) {
      const build = spawnSync(path.join(guestHarness, 'build.sh'), {
        encoding: 'utf8',
        timeout: 15 * 60 * 1000,
        env: { ...process.env, VIRTCARD_GUEST_DIR: guestCache },
      });
      assert.equal(build.status, 0, `building the test guest failed:\n${build.stdout}\n${build.stderr}`);
    }
    work = mkdtempSync(path.join(tmpdir(), 'virtcard-client-qemu-'));
  });

  after(() => {
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  test('NSS card matches ccid-card-emulated', async (t) => {
    const port = await freePort();
    const emulatorOptions = `db="sql:${fixtureDatabase}" use_hw=no soft=(,Test,CAC,,id-cert,signing-cert,encryption-cert)`;
    const client = ClientProcess.start(['-e', emulatorOptions, '-d', '1', '127.0.0.1', String(port)]);
    let stopCode: Promise<number | null> | undefined;

    let run: GuestRun;
    try {
      run = await bootGuest(work, 'client-nss.sh', port, (event) => {
        if (event === 'remove-card') client.command('remove');
        if (event === 'insert-card') client.command('insert');
        if (event === 'stop-client') stopCode = client.stop();
      });
    } finally {
      await client.stop();
    }
    const context = `\n--- guest stdout:\n${run.stdout}\n--- guest stderr:\n${run.stderr}\n${client.describe()}`;
    assert.equal(run.code, 0, `guest run failed${context}`);
    const sections = parseSections(run.stdout);

    await t.test('transcripts match', () => {
      for (const name of COMPARED_SECTIONS) {
        const reference = readFileSync(path.join(referenceDirectory, `${name}.txt`), 'utf8');
        assert.equal(normaliseHandles(section(sections, name, run)), normaliseHandles(reference), `transcript ${name} differs`);
      }
    });

    await t.test('wrong PIN reports tries left', () => {
      // libcacard returns 69 85 for a wrong PIN, which OpenSC maps to CKR_GENERAL_ERROR.
      // virtcard's card counts retries and returns 63 Cx, which OpenSC maps to CKR_PIN_INCORRECT.
      const reference = readFileSync(path.join(referenceDirectory, 'pkcs11-tool-wrong-pin.txt'), 'utf8');
      const expected = reference.replace('rv = CKR_GENERAL_ERROR (0x5)', 'rv = CKR_PIN_INCORRECT (0xa0)');
      assert.notEqual(expected, reference, 'the reference transcript changed; update this test');
      assert.equal(section(sections, 'pkcs11-tool-wrong-pin', run), expected);
    });

    await t.test('signatures verify on the host', () => {
      const subjects = [1, 2, 3].map((index) => assertSignatureVerifies(sections, index, run).subject);
      assert.deepEqual(subjects, ['CN=John Doe', 'CN=John Doe (signing)', 'CN=John Doe (encryption)']);
    });

    await t.test('remove and insert from stdin', () => {
      assert.match(run.stdout, /^card removed: rc=0$/m, `the guest did not see the card go${context}`);
      assert.match(section(sections, 'removed-l', run), /^0 {4}No /m);
      assert.match(run.stdout, /^card inserted: rc=0$/m, `the guest did not see the card come back${context}`);
      assert.match(section(sections, 'inserted-l', run), /^0 {4}Yes /m);
      assert.match(section(sections, 'inserted-L', run), /token label\s+: John Doe/);
      assert.match(client.stdout, /remove Test: card removed/);
      assert.match(client.stdout, /insert Test: card inserted/);
    });

    await t.test('trace masks PIN and key results', () => {
      assert.match(client.stdout, /^APDU > 00 A4 04 00 07 A0 00 00 00 79 01 00 {2}SELECT CAC PKI applet 0/m);
      assert.match(client.stdout, /^APDU > 00 20 00 00 08 <8 bytes masked> {2}VERIFY/m);
      assert.match(client.stdout, /SIGN\/DECRYPT \(CAC\)/);
      assert.match(client.stdout, /^APDU < <256 bytes masked> 90 00 {2}success/m);
      // The PIN as OpenSC sends it ("12345678"), in the trace's hex format.
      assert.doesNotMatch(client.stdout, /31 32 33 34 35 36 37 38/);
    });

    await t.test('stopped client leaves an empty reader', async () => {
      // ReaderRemove makes passthru report the slot empty; the USB reader itself stays.
      assert.match(run.stdout, /^client stopped: rc=0$/m, `the guest still sees a card after the client stopped${context}`);
      assert.match(section(sections, 'stopped-l', run), /^0 {4}No .*Gemalto/m);
      assert.match(section(sections, 'stopped-a', run), /\[exit status 1\]/);
      assert.ok(stopCode !== undefined, 'the guest never asked to stop the client');
      assert.equal(await stopCode, 0, `client exit status after SIGTERM${context}`);
      assert.match(client.stderr, /reader removed from QEMU/);
    });
  });

  test('built-in identity survives a QEMU restart', async (t) => {
    const port = await freePort();
    const dataDir = path.join(work, 'builtin');
    // Started before QEMU listens, so the client has to retry.
    const client = ClientProcess.start(['127.0.0.1', String(port)], { VIRTCARD_DATA_DIR: dataDir, VIRTCARD_PIN: PIN });

    let first: GuestRun;
    let second: GuestRun;
    try {
      await client.waitForLog(/cannot connect to QEMU yet/);
      first = await bootGuest(work, 'client-builtin.sh', port, (event, runPid) => {
        if (event === 'kill-qemu') killQemuOf(runPid);
      });
      second = await bootGuest(work, 'client-restarted.sh', port);
    } finally {
      await client.stop();
    }
    const context = `\n--- first guest:\n${first.stdout}\n${first.stderr}\n--- second guest:\n${second.stdout}\n${second.stderr}\n${client.describe()}`;

    await t.test('token and signatures', () => {
      // run.sh reports 125 when QEMU dies before the script ends, which is what killing it does.
      assert.equal(first.code, 125, `first guest run${context}`);
      assert.match(first.stdout, /^##### DONE$/m, `the first guest did not finish its checks${context}`);
      const sections = parseSections(first.stdout);
      assert.match(section(sections, 'opensc-tool-a', first), /3b:7a:18:00:00:73:66:74:65:20:63:64:31:34:34/);
      for (const name of ['pkcs11-tool-L', 'pkcs11-tool-O']) {
        const reference = readFileSync(path.join(referenceDirectory, `${name}.txt`), 'utf8');
        assert.equal(normaliseKeyMaterial(section(sections, name, first)), normaliseKeyMaterial(reference), `transcript ${name} differs`);
      }
      // The third built-in key is for encryption only (keyUsage), so OpenSC signs with the first two.
      for (const index of [1, 2]) assertSignatureVerifies(sections, index, first);
      assert.ok(new X509Certificate(base64After(section(sections, 'cert3-read', first), /^Using slot/)).subject.length > 0);
    });

    await t.test('client reconnects to a new QEMU', () => {
      assert.equal(second.code, 0, `second guest run${context}`);
      assert.match(second.stdout, /^card present: rc=0$/m, `the new guest sees no card${context}`);
      assert.match(second.stdout, /token manufacturer : Common Access Card/);
      assert.ok((client.stderr.match(/connected to QEMU/g) ?? []).length >= 2, `the client did not connect twice${context}`);
      assert.match(client.stderr, /connection to QEMU lost/);
    });
  });
});
