/**
 * `virtcard client --pcsc` end to end: a card in the host's (private) pcscd
 * is relayed through the VSCard client to QEMU 7.2's ccid-card-passthru,
 * and the Debian test guest (test/guest) lists and signs with it through
 * its own pcscd, libccid and OpenSC. The host card is virtcard's CAC card
 * served through vpcd, so the relay uses only PC/SC, as with a physical card.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { constants, createPublicKey, publicDecrypt, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { findFreePortPair, privatePcscdUnavailableReason, startPrivatePcscd, type PrivatePcscd } from '../support/private-pcscd.js';
import {
  REPO_ROOT,
  SHARED_DIR,
  VIRTCARD_MAIN,
  missingToolsReason,
  runTool,
  startVirtcardVpcd,
  waitForCard,
  type VirtcardProcess,
} from '../support/virtcard-vpcd.js';

const FIXTURE_DB = join(SHARED_DIR, 'fixtures', 'nss-db');
const GUEST_HARNESS = join(REPO_ROOT, 'test', 'guest');
const GUEST_CACHE =
  process.env['VIRTCARD_GUEST_DIR'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'virtcard-guest');
const SIGNED_DATA = Buffer.from('virtcard test data\n');

function guestBuilt(): boolean {
  return ['vmlinuz', 'initrd.img', 'rootfs.ext4'].every((file) => existsSync(join(GUEST_CACHE, file)));
}

function unavailableReason(): string | undefined {
  if (spawnSync('sh', ['-c', 'command -v qemu-system-x86_64']).status !== 0) {
    return 'qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)';
  }
  if (!guestBuilt()) return `the test guest is not built in ${GUEST_CACHE}; run test/guest/build.sh as root`;
  if (!existsSync(join(FIXTURE_DB, 'cert9.db'))) return `fixture NSS database missing at ${FIXTURE_DB}; set VIRTCARD_SHARED`;
  return privatePcscdUnavailableReason() ?? missingToolsReason();
}

// In CI every tool must be there, so a missing one fails; elsewhere it skips with its reason.
const unavailable = unavailableReason();
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

/** Splits guest output into sections: name → output lines between BEGIN and END, with the exit status. */
function parseSections(output: string): Map<string, { text: string; status: number }> {
  const sections = new Map<string, { text: string; status: number }>();
  let name: string | undefined;
  let lines: string[] = [];
  for (const line of output.split('\n')) {
    const begin = /^##### BEGIN (\S+): /.exec(line);
    const end = /^##### END (\S+) rc=(\d+)$/.exec(line);
    if (begin) {
      name = begin[1]!;
      lines = [];
    } else if (end && name !== undefined) {
      sections.set(name, { text: lines.join('\n'), status: Number(end[2]) });
      name = undefined;
    } else if (name !== undefined) {
      lines.push(line);
    }
  }
  return sections;
}

/** Returns the base64 block after the first line matching `marker`. */
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

describe('client --pcsc with QEMU passthru', { skip }, () => {
  let work: string;
  let pcscd: PrivatePcscd;
  let virtcard: VirtcardProcess;

  before(async () => {
    if (unavailable !== undefined) throw new Error(unavailable);
    work = mkdtempSync(join(tmpdir(), 'virtcard-pcsc-qemu-'));
    const database = join(work, 'nss-db');
    cpSync(FIXTURE_DB, database, { recursive: true });
    const pinFile = join(work, 'pin');
    writeFileSync(pinFile, '12345678\n', { mode: 0o600 });

    pcscd = await startPrivatePcscd();
    virtcard = startVirtcardVpcd(
      pcscd,
      ['--nss-db', `sql:${database}`, '--cert', 'id-cert', '--cert', 'signing-cert', '--cert', 'encryption-cert', '--pin-file', pinFile],
      join(work, 'virtcard-vpcd.log'),
    );
    await waitForCard(pcscd, virtcard);
  });

  after(async () => {
    await virtcard?.stop().catch(() => undefined);
    await pcscd?.stop();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  test('guest lists and signs with the host card', async () => {
    const port = await findFreePortPair();
    const client = spawn(process.execPath, [VIRTCARD_MAIN, 'client', '--pcsc', 'Virtual PCD 00 00', '--', '127.0.0.1', String(port)], {
      env: { ...pcscd.env, VIRTCARD_LOG_FORMAT: 'text' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let clientLog = '';
    client.stdout.setEncoding('utf8').on('data', (text: string) => (clientLog += text));
    client.stderr.setEncoding('utf8').on('data', (text: string) => (clientLog += text));

    const consoleFile = join(work, 'guest.console');
    writeFileSync(consoleFile, '');
    const guest = spawn(
      join(GUEST_HARNESS, 'run.sh'),
      [
        '--timeout',
        '180',
        '--console',
        consoleFile,
        '--put',
        join(GUEST_HARNESS, 'scripts', 'common.sh'),
        '--env',
        'PIN=12345678',
        join(GUEST_HARNESS, 'scripts', 'pcsc-relay.sh'),
        '--',
        '-device',
        'usb-ccid',
        '-device',
        'ccid-card-passthru,chardev=ccid',
        '-chardev',
        `socket,id=ccid,host=127.0.0.1,port=${port},server=on,wait=off`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VIRTCARD_GUEST_DIR: GUEST_CACHE } },
    );
    let guestOut = '';
    let guestErr = '';
    guest.stdout.setEncoding('utf8').on('data', (text: string) => (guestOut += text));
    guest.stderr.setEncoding('utf8').on('data', (text: string) => (guestErr += text));

    // While the guest pauses between its operations, host software uses the same card.
    let hostUse: ReturnType<typeof runTool> | undefined;
    const poll = setInterval(() => {
      if (hostUse === undefined && readFileSync(consoleFile, 'utf8').includes('VIRTCARD-TEST host-use')) {
        hostUse = runTool(pcscd, 'opensc-tool', ['-r', '0', '-a']);
      }
    }, 200);

    let code: number | null;
    try {
      [code] = (await once(guest, 'exit')) as [number | null];
    } finally {
      clearInterval(poll);
      client.kill('SIGTERM');
      await once(client, 'exit');
    }
    const context = `\n--- guest stdout:\n${guestOut}\n--- guest stderr:\n${guestErr.slice(-4000)}\n--- client:\n${clientLog.slice(-6000)}`;
    assert.equal(code, 0, `guest run failed${context}`);

    const sections = parseSections(guestOut);
    assert.match(sections.get('opensc-tool-a')?.text ?? '', /3b:7a:18:00:00:73:66:74:65:20:63:64:31:34:34/i, `guest sees the host card's ATR${context}`);
    assert.match(sections.get('pkcs11-tool-L')?.text ?? '', /token label/i, `guest lists a token${context}`);
    assert.match(sections.get('pkcs11-tool-O')?.text ?? '', /Certificate Object/, `guest lists certificates${context}`);

    assert.ok(hostUse !== undefined, `the guest never asked the host to use the card${context}`);
    assert.equal(hostUse.status, 0, `host opensc-tool failed between guest operations: ${hostUse.stderr}`);
    assert.match(hostUse.stdout, /3b:7a:18/i);

    for (const index of [1, 2, 3]) {
      const certificate = new X509Certificate(base64After(sections.get(`cert${index}-read`)?.text ?? '', /^Using slot/));
      const sign = sections.get(`sign${index}`);
      assert.equal(sign?.status, 0, `guest signature ${index} failed${context}`);
      const signature = base64After(sign?.text ?? '', /^signature \(base64\):/);
      const key = createPublicKey(certificate.publicKey.export({ format: 'pem', type: 'spki' }));
      const recovered = publicDecrypt({ key, padding: constants.RSA_PKCS1_PADDING }, signature);
      assert.deepEqual(recovered, SIGNED_DATA, `signature ${index} verifies with certificate ${index}`);
    }
  });
});
