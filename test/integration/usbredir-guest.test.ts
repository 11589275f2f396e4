/**
 * The CCID reader over usbredir, end to end: QEMU 7.2's usb-redir connects
 * to virtcard, and the Debian test guest's pcscd, libccid and OpenSC use
 * the card. Covers `virtcard emulated --usbredir` on UHCI (transcripts
 * compared with those of QEMU's own ccid-card-emulated on the same NSS
 * database) and on xHCI, where QEMU's usb-ccid fails, and `virtcard host
 * --usbredir` with a `virtcard client` serving the card over VSCard.
 * Signatures made in the guest are verified on the host, and card removal
 * and insertion typed on the card source's stdin are timed in the guest.
 *
 * Reference transcripts are read from $VIRTCARD_SHARED/reference/qemu-emulated
 * (default: `shared` beside the repository).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { X509Certificate, verify } from 'node:crypto';
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
const SIGNED_DATA = Buffer.from('virtcard test data\n');

/**
 * Time within which a card removal or insertion at the source must reach
 * the guest's pcscd and opensc-tool -l: the one-second target plus one
 * second of tolerance. The guest runs under QEMU's TCG emulation, where its
 * USB polling, pcscd, libccid and each opensc-tool run are slower than on
 * hardware or KVM.
 */
const CARD_CHANGE_LIMIT_MS = 1000 + 1000;

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
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    return new VirtcardProcess(child);
  }

  /** Types one line on the command's stdin. */
  command(line: string): void {
    this.child.stdin?.write(`${line}\n`);
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
# Writes "VIRTCARD-TEST <event>" to the console, which the host test follows.
tell_host() {
    echo "VIRTCARD-TEST $*" > /dev/ttyS0
}
# Prints the card column (Yes or No) of the first reader in opensc-tool -l.
card_state() {
    opensc-tool -l 2>/dev/null | awk '$1 ~ /^[0-9]+$/ { print $2; exit }'
}
# measure_card_change EVENT PCSC_STATE OPENSC_STATE: asks the host to act
# (EVENT), then prints when pcscd reported PCSC_STATE (present or empty)
# and when opensc-tool -l first showed OPENSC_STATE (Yes or No), as
# "TIMING EVENT told=NS pcsc=NS opensc=NS" in CLOCK_REALTIME nanoseconds.
measure_card_change() {
    rm -f /tmp/pcsc-wait.out
    "$VIRTCARD_FILES/pcsc-card-wait" "$2" 15000 > /tmp/pcsc-wait.out &
    waiter=$!
    i=0; while [ $i -lt 100 ] && [ ! -s /tmp/pcsc-wait.out ]; do sleep 0.05; i=$((i + 1)); done
    told=$(date +%s%N)
    tell_host "$1"
    seen=none
    i=0
    while [ $i -lt 60 ]; do
        if [ "$(card_state)" = "$3" ]; then seen=$(date +%s%N); break; fi
        i=$((i + 1))
    done
    wait $waiter
    pcsc=$(awk -v state="$2" '$1 == state { print $2 }' /tmp/pcsc-wait.out)
    echo "TIMING $1 told=$told pcsc=\${pcsc:-none} opensc=$seen"
}
`;

interface GuestRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Boots the guest with a usb-redir device connecting to `port` and runs
 * `script`. Each "VIRTCARD-TEST <event>" line the guest writes to its
 * console is passed to `onEvent` once, within about 20 ms.
 */
async function bootGuest(
  work: string,
  script: string,
  port: number,
  usb: 'uhci' | 'xhci',
  puts: string[] = [],
  onEvent: (event: string) => void = () => undefined,
): Promise<GuestRun> {
  const scriptFile = path.join(work, `guest-${port}.sh`);
  writeFileSync(scriptFile, `${GUEST_HELPERS}PIN=${PIN}\n${script}`);
  const consoleFile = path.join(work, `guest-${port}.console`);
  writeFileSync(consoleFile, '');
  const child = spawn(
    runScript,
    [
      '--timeout',
      '150',
      '--console',
      consoleFile,
      ...puts.flatMap((file) => ['--put', file]),
      scriptFile,
      '--',
      '-chardev',
      `socket,id=redir,host=127.0.0.1,port=${port}`,
      '-device',
      'usb-redir,chardev=redir',
    ],
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

  const seen = new Set<string>();
  const poll = setInterval(() => {
    for (const match of readFileSync(consoleFile, 'utf8').matchAll(/VIRTCARD-TEST (\S+)/g)) {
      const event = match[1]!;
      if (seen.has(event)) continue;
      seen.add(event);
      onEvent(event);
    }
  }, 20);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearInterval(poll);
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
 * Builds a PC/SC helper for the guest from test/ccid/NAME.c; the guest has
 * the same Debian release and libpcsclite as the build host. Returns the
 * binary's path, or the compiler output when the build failed.
 */
function buildGuestHelper(work: string, name: string): { binary?: string; problem?: string } {
  const binary = path.join(work, name);
  const source = path.join(repositoryRoot, 'test', 'ccid', `${name}.c`);
  const build = spawnSync('sh', ['-c', `gcc -O2 -o "${binary}" "${source}" $(pkg-config --cflags --libs libpcsclite)`], { encoding: 'utf8' });
  return build.status === 0 ? { binary } : { problem: `building ${source} failed (needs gcc and libpcsclite-dev): ${build.stderr}` };
}

/** Returns the base64 block that follows the line matching `marker` in a section. */
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

/** Checks that the guest's SHA256-RSA-PKCS signature verifies with the certificate read from the card. */
function assertSignatureVerifies(sections: Map<string, string>, run: GuestRun): void {
  const certificate = new X509Certificate(base64After(section(sections, 'cert-read', run), /^certificate \(base64\):/));
  assert.match(certificate.subject, /CN=John Doe/);
  const signature = base64After(section(sections, 'sign', run), /^signature \(base64\):/);
  assert.equal(signature.length, 256, 'a 2048-bit RSA signature has 256 bytes');
  assert.ok(verify('sha256', SIGNED_DATA, certificate.publicKey, signature), `the signature does not verify with ${certificate.subject}`);
}

interface CardChangeTiming {
  /** Milliseconds from the guest's request to pcscd reporting the new state. */
  pcscMs: number;
  /** Milliseconds from the guest's request to opensc-tool -l first showing the new state. */
  openscMs: number;
}

/** Reads the "TIMING EVENT told=NS pcsc=NS opensc=NS" line that measure_card_change printed. */
function cardChangeTiming(run: GuestRun, event: string): CardChangeTiming {
  const match = new RegExp(`^TIMING ${event} told=(\\d+) pcsc=(\\S+) opensc=(\\S+)$`, 'm').exec(run.stdout);
  assert.ok(match, `the guest printed no timing for ${event}\n--- guest stdout:\n${run.stdout}\n--- stderr:\n${run.stderr}`);
  const told = BigInt(match[1]!);
  assert.notEqual(match[2], 'none', `pcscd in the guest never reported the card change of ${event}\n${run.stdout}`);
  assert.notEqual(match[3], 'none', `opensc-tool -l in the guest never showed the card change of ${event}\n${run.stdout}`);
  return {
    pcscMs: Number((BigInt(match[2]!) - told) / 1_000_000n),
    openscMs: Number((BigInt(match[3]!) - told) / 1_000_000n),
  };
}

/** Checks that removal and insertion reached pcscd within CARD_CHANGE_LIMIT_MS and reports the times. */
function assertCardChangesFast(run: GuestRun, label: string): void {
  for (const event of ['remove-card', 'insert-card']) {
    const timing = cardChangeTiming(run, event);
    console.log(`${label}: ${event} reached pcscd after ${timing.pcscMs} ms and opensc-tool -l after ${timing.openscMs} ms`);
    assert.ok(timing.pcscMs < CARD_CHANGE_LIMIT_MS, `${event} reached pcscd after ${timing.pcscMs} ms; limit ${CARD_CHANGE_LIMIT_MS} ms`);
    assert.ok(timing.openscMs < CARD_CHANGE_LIMIT_MS, `${event} reached opensc-tool -l after ${timing.openscMs} ms; limit ${CARD_CHANGE_LIMIT_MS} ms`);
  }
}

const TRANSCRIPT_SCRIPT = `export OSC PIN
run opensc-tool-a opensc-tool -a
run pkcs11-tool-L pkcs11-tool --module "$OSC" -L
run pkcs11-tool-O pkcs11-tool --module "$OSC" -O
printf 'virtcard test data\\n' > /tmp/data
run sign sh -c 'pkcs11-tool --module "$OSC" --login --pin "$PIN" --sign --mechanism SHA256-RSA-PKCS --id 0002 --input-file /tmp/data --output-file /tmp/sig && echo "signature (base64):" && base64 -w 64 /tmp/sig'
run cert-read sh -c 'pkcs11-tool --module "$OSC" --read-object --type cert --id 0002 --output-file /tmp/cert.der && echo "certificate (base64):" && base64 -w 64 /tmp/cert.der'
`;

/** Removes and inserts the card through the host and checks the token is back. */
const CARD_CHANGE_SCRIPT = `measure_card_change remove-card empty No
run removed-l opensc-tool -l
measure_card_change insert-card present Yes
run inserted-L pkcs11-tool --module "$OSC" -L
`;

/** Applies the guest's card events to `source`, a process with `remove` and `insert` stdin commands. */
function cardEventsTo(source: VirtcardProcess): (event: string) => void {
  return (event) => {
    if (event === 'remove-card') source.command('remove');
    if (event === 'insert-card') source.command('insert');
  };
}

/** Checks the sections that CARD_CHANGE_SCRIPT printed. */
function assertCardChanged(sections: Map<string, string>, run: GuestRun, source: VirtcardProcess): void {
  assert.match(section(sections, 'removed-l', run), /^0 {4}No /m);
  assert.match(section(sections, 'inserted-L', run), /token label\s+: John Doe/);
  assert.match(source.log, /^remove .*: card removed$/m);
  assert.match(source.log, /^insert .*: card inserted$/m);
}

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
    const helper = buildGuestHelper(work, 'pcsc-extended-apdu');
    assert.ok(helper.binary, helper.problem);
    const waitHelper = buildGuestHelper(work, 'pcsc-card-wait');
    assert.ok(waitHelper.binary, waitHelper.problem);
    const port = await freePort();
    const virtcard = VirtcardProcess.start(emulatedArgs(port));
    try {
      await virtcard.waitFor(/usbredir export listening/);
      const script = `${TRANSCRIPT_SCRIPT}run extended-apdu "$VIRTCARD_FILES/pcsc-extended-apdu"\n${CARD_CHANGE_SCRIPT}`;
      const run = await bootGuest(work, script, port, 'uhci', [helper.binary, waitHelper.binary], cardEventsTo(virtcard));
      assert.equal(run.code, 0, `guest script failed:\n${run.stdout}\n${run.stderr}`);
      const sections = parseSections(run.stdout);
      for (const name of ['opensc-tool-a', 'pkcs11-tool-L', 'pkcs11-tool-O']) {
        const reference = readFileSync(path.join(referenceDirectory, `${name}.txt`), 'utf8');
        assert.equal(normaliseHandles(section(sections, name, run)), normaliseHandles(reference), `transcript ${name} differs`);
      }
      assert.match(section(sections, 'sign', run), /\[exit status 0\]/);
      assertSignatureVerifies(sections, run);
      // A 607-byte command reaches the card, which answers with a status word of its own.
      assert.match(section(sections, 'extended-apdu', run), /extended APDU: rv=0 length=2 sw=[0-9a-f]{4}\n\[exit status 0\]/);
      assert.match(virtcard.log, /usbredir hello received.*version=qemu usb-redir guest/);
      assertCardChanged(sections, run, virtcard);
      assertCardChangesFast(run, 'virtcard emulated --usbredir');
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

      const waitHelper = buildGuestHelper(work, 'pcsc-card-wait');
      assert.ok(waitHelper.binary, waitHelper.problem);
      const script = `${TRANSCRIPT_SCRIPT}${CARD_CHANGE_SCRIPT}`;
      const run = await bootGuest(work, script, usbredirPort, 'uhci', [waitHelper.binary], cardEventsTo(client));
      assert.equal(run.code, 0, `guest script failed:\n${run.stdout}\n${run.stderr}`);
      const sections = parseSections(run.stdout);
      assert.match(section(sections, 'opensc-tool-a', run), new RegExp(CAC_ATR_TEXT));
      const reference = readFileSync(path.join(referenceDirectory, 'pkcs11-tool-O.txt'), 'utf8');
      assert.equal(normaliseHandles(section(sections, 'pkcs11-tool-O', run)), normaliseHandles(reference));
      assert.match(section(sections, 'sign', run), /\[exit status 0\]/);
      assertSignatureVerifies(sections, run);
      assertCardChanged(sections, run, client);
      assertCardChangesFast(run, 'virtcard client -> virtcard host --usbredir');
    } finally {
      await secondClient?.stop();
      await client?.stop();
      await host.stop();
    }
  });
});
