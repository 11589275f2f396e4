/**
 * `virtcard client --pcsc` end to end: a card in the host's (private) pcscd
 * is relayed through the VSCard client to QEMU 7.2's ccid-card-passthru,
 * and the Debian test guest (test/guest) lists and signs with it through
 * its own pcscd, libccid and OpenSC. The host card is virtcard's CAC card
 * served through vpcd, so the relay uses only PC/SC, as with a physical card.
 *
 * A second boot gives the guest two readers, one per vpcd reader of the
 * host, and checks that stopping, restarting and killing the host card show
 * up in the guest as card removal and insertion.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { constants, createPublicKey, publicDecrypt, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
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
  /** `virtcard vpcd` arguments of the host card (an NSS-backed CAC card). */
  let cardArgs: string[];

  before(async () => {
    if (unavailable !== undefined) throw new Error(unavailable);
    work = mkdtempSync(join(tmpdir(), 'virtcard-pcsc-qemu-'));
    const database = join(work, 'nss-db');
    cpSync(FIXTURE_DB, database, { recursive: true });
    const pinFile = join(work, 'pin');
    writeFileSync(pinFile, '12345678\n', { mode: 0o600 });
    cardArgs = ['--nss-db', `sql:${database}`, '--cert', 'id-cert', '--cert', 'signing-cert', '--cert', 'encryption-cert', '--pin-file', pinFile];

    pcscd = await startPrivatePcscd();
    virtcard = startVirtcardVpcd(pcscd, cardArgs, join(work, 'virtcard-vpcd.log'));
    await waitForCard(pcscd, virtcard);
  });

  after(async () => {
    await virtcard?.stop().catch(() => undefined);
    await pcscd?.stop();
    // VIRTCARD_TEST_KEEP_WORK=1 keeps the logs of the virtcard card processes for a look afterwards.
    if (work !== undefined && process.env['VIRTCARD_TEST_KEEP_WORK'] !== '1') rmSync(work, { recursive: true, force: true });
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

  test('host card stop, restart and unplug', async (t) => {
    // The guest gets one reader per host vpcd reader, because the relay connects reader n to port + n.
    const port = await findFreePortPair();
    const client = spawn(
      process.execPath,
      [VIRTCARD_MAIN, 'client', '-d', '1', '--pcsc', 'Virtual PCD 00 00', 'Virtual PCD 00 01', '--', '127.0.0.1', String(port)],
      { env: { ...pcscd.env, VIRTCARD_LOG_FORMAT: 'text' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let clientLog = '';
    client.stdout.setEncoding('utf8').on('data', (text: string) => (clientLog += text));
    client.stderr.setEncoding('utf8').on('data', (text: string) => (clientLog += text));
    // 'close' comes after the last output; 'exit' may come before it.
    const clientClosed = once(client, 'close');

    const consoleFile = join(work, 'replug.console');
    writeFileSync(consoleFile, '');
    const readerArgs = [0, 1].flatMap((index) => [
      '-device',
      `usb-ccid,id=reader${index}`,
      '-device',
      `ccid-card-passthru,bus=reader${index}.0,chardev=card${index}`,
      '-chardev',
      `socket,id=card${index},host=127.0.0.1,port=${port + index},server=on,wait=off`,
    ]);
    const started = Date.now();
    const guest = spawn(
      join(GUEST_HARNESS, 'run.sh'),
      [
        '--timeout',
        '240',
        '--console',
        consoleFile,
        // Both CCID readers must exist before the guest's pcscd starts, or it never sees the second.
        '--env',
        'VIRTCARD_READERS=2',
        '--put',
        join(GUEST_HARNESS, 'scripts', 'common.sh'),
        join(GUEST_HARNESS, 'scripts', 'pcsc-replug.sh'),
        '--',
        ...readerArgs,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VIRTCARD_GUEST_DIR: GUEST_CACHE } },
    );
    let guestOut = '';
    let guestErr = '';
    guest.stdout.setEncoding('utf8').on('data', (text: string) => (guestOut += text));
    guest.stderr.setEncoding('utf8').on('data', (text: string) => (guestErr += text));

    let secondCard: VirtcardProcess | undefined;
    let virtcardStarts = 0;
    const startHostCard = (): void => {
      virtcardStarts += 1;
      virtcard = startVirtcardVpcd(pcscd, cardArgs, join(work, `virtcard-vpcd-replug-${virtcardStarts}.log`));
    };
    const timings: string[] = [];
    const note = (event: string): void => {
      timings.push(`${((Date.now() - started) / 1000).toFixed(1)} s ${event}`);
    };
    let unplug: { loopApdusBeforeStop: number; clientRunning: boolean } | undefined;

    // Each marker that the guest writes to its console requests one host action, in this order.
    const actions: Array<[marker: string, action: () => Promise<void> | void]> = [
      ['stop-card', async () => void (await virtcard.stop())],
      ['start-card', startHostCard],
      [
        'second-card',
        () => {
          secondCard = startVirtcardVpcd({ ...pcscd, vpcdPort: pcscd.vpcdPort + 1 }, cardArgs, join(work, 'virtcard-vpcd-second.log'));
        },
      ],
      [
        'unplug-mid-apdu',
        async () => {
          // Once the guest's APDU loop runs, SIGSTOP freezes the card so that one APDU stays
          // in flight. SIGKILL then closes the card's vpcd connection during that APDU.
          const loopApdus = (): number => clientLog.split('F0 76 69 72 74').length - 1;
          const deadline = Date.now() + 30_000;
          while (loopApdus() < 5 && Date.now() < deadline) await sleep(50);
          const loopApdusBeforeStop = loopApdus();
          virtcard.child.kill('SIGSTOP');
          await sleep(1000);
          virtcard.child.kill('SIGKILL');
          await virtcard.stop();
          await sleep(2000);
          unplug = { loopApdusBeforeStop, clientRunning: client.exitCode === null && client.signalCode === null };
        },
      ],
      ['start-card-again', startHostCard],
    ];
    let nextAction = 0;
    let busy = false;
    let actionError: unknown;
    const poll = setInterval(() => {
      const entry = actions[nextAction];
      if (busy || entry === undefined) return;
      const [marker, action] = entry;
      if (!readFileSync(consoleFile, 'utf8').includes(`VIRTCARD-TEST ${marker}`)) return;
      busy = true;
      note(`guest asked: ${marker}`);
      Promise.resolve()
        .then(action)
        .then(() => note(`host done: ${marker}`))
        .catch((error: unknown) => (actionError ??= error))
        .finally(() => {
          nextAction += 1;
          busy = false;
        });
    }, 200);

    let code: number | null;
    try {
      [code] = (await once(guest, 'exit')) as [number | null];
    } finally {
      clearInterval(poll);
      client.kill('SIGTERM');
      await clientClosed;
      await secondCard?.stop().catch(() => undefined);
    }
    note('guest finished');
    t.diagnostic(`timings: ${timings.join('; ')}`);
    const sections = parseSections(guestOut);
    const waits = [...sections].filter(([name]) => name.startsWith('wait-')).map(([name, section]) => `${name}: ${section.text.trim()}`);
    t.diagnostic(`guest waits: ${waits.join('; ')}`);

    // Every section in short, then the raw end of the output for a step that never finished.
    const digest = [...sections].map(([name, found]) => `## ${name} rc=${found.status}\n${found.text.trim().slice(-1500)}`).join('\n');
    const context = `\n--- timings: ${timings.join('; ')}\n--- guest sections:\n${digest}\n--- end of guest stdout:\n${guestOut.slice(-3000)}\n--- guest stderr:\n${guestErr.slice(-4000)}\n--- client:\n${clientLog.slice(-8000)}\n--- host pcscd log:\n${pcscd.log().slice(-3000)}`;
    assert.equal(actionError, undefined, `a host action failed: ${String(actionError)}${context}`);
    assert.equal(code, 0, `guest run failed${context}`);
    const section = (name: string): { text: string; status: number } => {
      const found = sections.get(name);
      assert.ok(found !== undefined, `guest section ${name} is missing${context}`);
      return found;
    };
    const assertReached = (name: string, what: string): void => {
      assert.equal(section(name).status, 0, `guest never saw ${what}: ${section(name).text}${context}`);
    };

    // Stopping the host card empties the guest reader, and restarting it brings the card back.
    assertReached('wait-first-card', 'the host card');
    assertReached('wait-second-reader', 'an empty second reader');
    assert.match(section('readers-start').text, /^0\s+Yes\s/m, `reader 0 has the card at start${context}`);
    assert.match(section('readers-start').text, /^1\s+No\s/m, `reader 1 is empty at start${context}`);
    assertReached('wait-removed', 'reader 0 empty after the host card stopped');
    assert.match(section('readers-stopped').text, /^0\s+No\s/m, `reader 0 is empty while the host card is stopped${context}`);
    assertReached('wait-reinserted', 'the card again after the host card restarted');
    assert.match(section('pkcs11-tool-L-restarted').text, /token label/i, `guest lists the restarted card's token${context}`);

    // A card in the host's second vpcd reader shows up in the guest's second reader.
    assertReached('wait-second-card', 'a card in reader 1');
    assert.match(section('opensc-tool-a-second').text, /3b:7a:18:00:00:73:66:74:65:20:63:64:31:34:34/i, `reader 1 has the second card's ATR${context}`);
    const tokens = section('pkcs11-tool-L-both').text.match(/token label/gi) ?? [];
    assert.equal(tokens.length, 2, `guest lists both tokens${context}`);

    // Killing the card during an APDU fails that APDU in the guest, and the client keeps relaying.
    assert.ok(unplug !== undefined, `the guest never asked the host to unplug the card${context}`);
    assert.ok(unplug.loopApdusBeforeStop >= 5, `the guest's APDU loop did not reach the host before the unplug${context}`);
    assert.ok(unplug.clientRunning, `the client exited after the card was killed${context}`);
    const loop = section('apdu-loop');
    assert.notEqual(loop.status, 124, `the guest's APDU loop never got the answer to its APDU in flight during the unplug${context}`);
    assert.notEqual(loop.status, 0, `the guest's APDU loop ended without an error${context}`);
    assert.match(loop.text, /SW1=0x6A, SW2=0x82/, `the loop APDUs reached the card before the unplug${context}`);
    assert.match(loop.text, /SW1=0x6F, SW2=0x00/, `the APDU in flight during the unplug returned 6F 00${context}`);
    assertReached('wait-unplugged', 'reader 0 empty after the host card was killed');
    assert.match(section('opensc-tool-a-second-after-unplug').text, /3b:7a:18/i, `reader 1 still works after reader 0's card was killed${context}`);
    assertReached('wait-back', 'the card again after the host card was restarted once more');
    assert.match(section('pkcs11-tool-L-back').text, /token label/i, `guest lists the card again after the unplug${context}`);
  });
});
