/**
 * The CCID reader over usbredir, end to end: QEMU 7.2's usb-redir connects
 * to virtcard, and the Debian test guest's pcscd, libccid and OpenSC use
 * the card. Covers `virtcard emulated --usbredir` on UHCI (transcripts
 * compared with those of QEMU's own ccid-card-emulated on the same NSS
 * database) and on xHCI, where QEMU's usb-ccid fails, and `virtcard host
 * --usbredir` with a `virtcard client` serving the card over VSCard.
 *
 * Reference transcripts are read from $VIRTCARD_SHARED/reference/qemu-emulated
 * (default: `shared` beside the repository).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const sharedDirectory = process.env['VIRTCARD_SHARED'] ?? path.resolve(repositoryRoot, '../shared');
const referenceDirectory = path.join(sharedDirectory, 'reference', 'qemu-emulated');
const fixtureDatabase = path.join(sharedDirectory, 'fixtures', 'nss-db');
const runScript = path.join(repositoryRoot, 'test', 'guest', 'run.sh');
const guestCache =
  process.env['VIRTCARD_GUEST_DIR'] ?? path.join(process.env['XDG_CACHE_HOME'] ?? path.join(homedir(), '.cache'), 'virtcard-guest');
const virtcardMain = path.join(repositoryRoot, 'dist', 'src', 'cli', 'main.js');

/** The fixture database's password, which is the card PIN. */
const PIN = '12345678';
const CERTIFICATES = ['id-cert', 'signing-cert', 'encryption-cert'];
const CAC_ATR_TEXT = '3b:7a:18:00:00:73:66:74:65:20:63:64:31:34:34';

function commandExists(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

function unavailableReason(): string | undefined {
  if (!commandExists('qemu-system-x86_64')) return 'qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)';
  if (!existsSync(virtcardMain)) return `${virtcardMain} is missing; run npm run build`;
  if (!['vmlinuz', 'initrd.img', 'rootfs.ext4'].every((file) => existsSync(path.join(guestCache, file)))) {
    return `the test guest is not built in ${guestCache}; run test/guest/build.sh as root`;
  }
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

/** A running virtcard command with its log collected. */
class VirtcardProcess {
  log = '';
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    child.stdout?.setEncoding('utf8').on('data', (text: string) => (this.log += text));
    child.stderr?.setEncoding('utf8').on('data', (text: string) => (this.log += text));
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  }

  static start(args: string[]): VirtcardProcess {
    const child = spawn(process.execPath, [virtcardMain, ...args], {
      env: { ...process.env, VIRTCARD_LOG_FORMAT: 'text', VIRTCARD_PIN: PIN },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new VirtcardProcess(child);
  }

  /** Waits until the log matches `pattern`, up to 20 s. */
  async waitFor(pattern: RegExp): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (!pattern.test(this.log)) {
      if (this.child.exitCode !== null) throw new Error(`virtcard exited (${this.child.exitCode}) before logging ${pattern}:\n${this.log}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern} in the virtcard log:\n${this.log}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async stop(): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }
}

const GUEST_HELPERS = `OSC=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so
run() {
    name=$1; shift
    echo "##### BEGIN $name: $*"
    "$@" 2>&1
    r=$?
    echo "##### END $name rc=$r"
}
`;

interface GuestRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Boots the guest with a usb-redir device connecting to `port` and runs `script`. */
async function bootGuest(work: string, script: string, port: number, usb: 'uhci' | 'xhci', puts: string[] = []): Promise<GuestRun> {
  const scriptFile = path.join(work, `guest-${port}.sh`);
  writeFileSync(scriptFile, `${GUEST_HELPERS}PIN=${PIN}\n${script}`);
  const child = spawn(
    runScript,
    ['--timeout', '150', ...puts.flatMap((file) => ['--put', file]), scriptFile, '--', '-chardev', `socket,id=redir,host=127.0.0.1,port=${port}`, '-device', 'usb-redir,chardev=redir'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      // run.sh waits for a reader only when the QEMU arguments name usb-ccid, so ask for the wait.
      env: { ...process.env, VIRTCARD_GUEST_DIR: guestCache, VIRTCARD_USB: usb, VIRTCARD_READER_WAIT: '20' },
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
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

/** Replaces the PKCS#11 object handles OpenSC prints, which differ between runs. */
function normaliseHandles(text: string): string {
  return text.replace(/^(Data|Profile) object \d+$/gm, '$1 object <handle>');
}

function section(sections: Map<string, string>, name: string, run: GuestRun): string {
  const text = sections.get(name);
  assert.ok(text !== undefined, `guest output has no section ${name}\n--- guest stdout:\n${run.stdout}\n--- stderr:\n${run.stderr}`);
  return text;
}

/**
 * Builds the guest helper that sends an extended APDU through PC/SC; the
 * guest has the same Debian release and libpcsclite as the build host.
 * Returns the binary's path, or the compiler output when the build failed.
 */
function buildExtendedApduHelper(work: string): { binary?: string; problem?: string } {
  const binary = path.join(work, 'pcsc-extended-apdu');
  const source = path.join(repositoryRoot, 'test', 'ccid', 'pcsc-extended-apdu.c');
  const build = spawnSync('sh', ['-c', `gcc -O2 -o "${binary}" "${source}" $(pkg-config --cflags --libs libpcsclite)`], { encoding: 'utf8' });
  return build.status === 0 ? { binary } : { problem: `building ${source} failed (needs gcc and libpcsclite-dev): ${build.stderr}` };
}

const TRANSCRIPT_SCRIPT = `run opensc-tool-a opensc-tool -a
run pkcs11-tool-L pkcs11-tool --module "$OSC" -L
run pkcs11-tool-O pkcs11-tool --module "$OSC" -O
printf 'virtcard test data\\n' > /tmp/data
run sign pkcs11-tool --module "$OSC" --login --pin "$PIN" --sign --mechanism SHA256-RSA-PKCS --id 0002 --input-file /tmp/data --output-file /tmp/sig
`;

describe('usbredir export in a QEMU guest', { skip }, () => {
  let work = '';
  let database = '';

  before(() => {
    work = mkdtempSync(path.join(tmpdir(), 'virtcard-usbredir-'));
    database = path.join(work, 'nss-db');
    cpSync(fixtureDatabase, database, { recursive: true });
  });

  after(() => {
    if (work !== '') rmSync(work, { recursive: true, force: true });
  });

  const emulatedArgs = (port: number): string[] => [
    'emulated',
    '--usbredir',
    `127.0.0.1:${port}`,
    '--nss-db',
    `sql:${database}`,
    ...CERTIFICATES.flatMap((name) => ['--cert', name]),
  ];

  test('emulated card on UHCI matches ccid-card-emulated', async () => {
    const helper = buildExtendedApduHelper(work);
    assert.ok(helper.binary, helper.problem);
    const port = await freePort();
    const virtcard = VirtcardProcess.start(emulatedArgs(port));
    try {
      await virtcard.waitFor(/usbredir export listening/);
      const script = `${TRANSCRIPT_SCRIPT}run extended-apdu "$VIRTCARD_FILES/pcsc-extended-apdu"\n`;
      const run = await bootGuest(work, script, port, 'uhci', [helper.binary]);
      assert.equal(run.code, 0, `guest script failed:\n${run.stdout}\n${run.stderr}`);
      const sections = parseSections(run.stdout);
      for (const name of ['opensc-tool-a', 'pkcs11-tool-L', 'pkcs11-tool-O']) {
        const reference = readFileSync(path.join(referenceDirectory, `${name}.txt`), 'utf8');
        assert.equal(normaliseHandles(section(sections, name, run)), normaliseHandles(reference), `transcript ${name} differs`);
      }
      assert.match(section(sections, 'sign', run), /\[exit status 0\]/);
      // A 607-byte command reaches the card, which answers with a status word of its own.
      assert.match(section(sections, 'extended-apdu', run), /extended APDU: rv=0 length=2 sw=[0-9a-f]{4}\n\[exit status 0\]/);
      assert.match(virtcard.log, /usbredir hello received.*version=qemu usb-redir guest/);
    } finally {
      await virtcard.stop();
    }
  });

  test('emulated card works on xHCI', async () => {
    const port = await freePort();
    const virtcard = VirtcardProcess.start(emulatedArgs(port));
    try {
      await virtcard.waitFor(/usbredir export listening/);
      const run = await bootGuest(work, TRANSCRIPT_SCRIPT, port, 'xhci');
      assert.equal(run.code, 0, `guest script failed:\n${run.stdout}\n${run.stderr}`);
      const sections = parseSections(run.stdout);
      assert.match(section(sections, 'opensc-tool-a', run), new RegExp(CAC_ATR_TEXT));
      assert.match(section(sections, 'pkcs11-tool-L', run), /token label\s+: John Doe/);
      assert.equal((section(sections, 'pkcs11-tool-O', run).match(/^Certificate Object/gm) ?? []).length, 3);
      assert.match(section(sections, 'sign', run), /\[exit status 0\]/);
    } finally {
      await virtcard.stop();
    }
  });

  test('host exports a VSCard client card', async () => {
    const vscardPort = await freePort();
    const usbredirPort = await freePort();
    const host = VirtcardProcess.start(['host', '--listen', `127.0.0.1:${vscardPort}`, '--usbredir', `127.0.0.1:${usbredirPort}`]);
    let client: VirtcardProcess | undefined;
    let secondClient: VirtcardProcess | undefined;
    try {
      await host.waitFor(/VSCard server listening/);
      client = VirtcardProcess.start([
        'client',
        '--nss-db',
        `sql:${database}`,
        ...CERTIFICATES.flatMap((name) => ['--cert', name]),
        '127.0.0.1',
        String(vscardPort),
      ]);
      await host.waitFor(/card inserted/);

      // The only export is taken, so a second client's reader is refused.
      secondClient = VirtcardProcess.start(['client', '--data-dir', path.join(work, 'builtin'), '127.0.0.1', String(vscardPort)]);
      await secondClient.waitFor(/VSC_CANNOT_ADD_MORE_READERS/);

      const run = await bootGuest(work, TRANSCRIPT_SCRIPT, usbredirPort, 'uhci');
      assert.equal(run.code, 0, `guest script failed:\n${run.stdout}\n${run.stderr}`);
      const sections = parseSections(run.stdout);
      assert.match(section(sections, 'opensc-tool-a', run), new RegExp(CAC_ATR_TEXT));
      const reference = readFileSync(path.join(referenceDirectory, 'pkcs11-tool-O.txt'), 'utf8');
      assert.equal(normaliseHandles(section(sections, 'pkcs11-tool-O', run)), normaliseHandles(reference));
      assert.match(section(sections, 'sign', run), /\[exit status 0\]/);
    } finally {
      await secondClient?.stop();
      await client?.stop();
      await host.stop();
    }
  });
});
