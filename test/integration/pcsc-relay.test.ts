/**
 * The PC/SC card source against real PC/SC: a private pcscd with two vpcd
 * readers, virtcard's own CAC card (`virtcard vpcd`) in the first and
 * vsmartcard's vicc in the second, relayed through PcscMonitor, PcscReader,
 * `virtcard list` and the `--pcsc` VSCard client.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes, verify, constants, X509Certificate } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { EchoReader } from '../../src/reader/echo-reader.js';
import { VpcdCard } from '../../src/transports/vpcd.js';
import { PcscContext, SCARD_LEAVE_CARD, SCARD_SHARE_EXCLUSIVE, SCARD_SHARE_SHARED } from '../../src/pcsc/pcsc-lite.js';
import { PcscMonitor } from '../../src/pcsc/pcsc-monitor.js';
import { PcscReader } from '../../src/pcsc/pcsc-reader.js';
import { PcscClient } from '../../src/cli/client-pcsc.js';
import net from 'node:net';
import { VscDecoder } from '../../src/vscard/decoder.js';
import { encodeMessage } from '../../src/vscard/encode.js';
import { UNDEFINED_READER_ID, VscErrorCode, VscMessageType, type VscMessage } from '../../src/vscard/protocol.js';
import { pkcs1SignatureBlock } from '../support/backends-checks.js';
import { FakePassthru } from '../support/fake-passthru.js';
import { findFreePortPair, privatePcscdUnavailableReason, startPrivatePcscd, type PrivatePcscd } from '../support/private-pcscd.js';
import { viccUnavailableReason, startVicc, type ViccCard } from '../support/vicc.js';
import {
  SHARED_DIR,
  VIRTCARD_MAIN,
  missingToolsReason,
  startVirtcardVpcd,
  waitForCard,
  type VirtcardProcess,
} from '../support/virtcard-vpcd.js';

const execFileAsync = promisify(execFile);
const silent = pino({ level: 'silent' });

const FIXTURE_DB = join(SHARED_DIR, 'fixtures', 'nss-db');
const CAC_READER = 'Virtual PCD 00 00';
const VICC_READER = 'Virtual PCD 00 01';
/** ATR of libcacard's virtual CAC card, which virtcard copies. */
const CAC_ATR = '3B 7A 18 00 00 73 66 74 65 20 63 64 31 34 34';
/** ATR of vicc's iso7816 card (vsmartcard 0.8). */
const VICC_ATR = '3B 95 13 81 01 80 73 FF 01 00 0B';

const SELECT_PKI_0 = Uint8Array.of(0x00, 0xa4, 0x04, 0x00, 0x07, 0xa0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00);
const GET_CHALLENGE = Uint8Array.of(0x00, 0x84, 0x00, 0x00, 0x08);

function readFixturePassword(): string {
  const file = join(SHARED_DIR, 'fixtures', 'nss-db-password.txt');
  return existsSync(file) ? (readFileSync(file, 'utf8').split(/\r?\n/, 1)[0] ?? '') : '';
}

function unavailableReason(): string | undefined {
  if (!existsSync(join(FIXTURE_DB, 'cert9.db'))) return `fixture NSS database missing at ${FIXTURE_DB}; set VIRTCARD_SHARED`;
  return privatePcscdUnavailableReason() ?? missingToolsReason() ?? viccUnavailableReason();
}

// In CI every tool must be there, so a missing one fails; elsewhere it skips with its reason.
const unavailable = unavailableReason();
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

function statusWord(response: Uint8Array): number {
  assert.ok(response.length >= 2, `response ${hex(response)} has a status word`);
  return (response[response.length - 2]! << 8) | response[response.length - 1]!;
}

/** Waits for `event` on `emitter`, or fails naming `what` after `timeoutMs`. */
async function waitForEvent<T extends unknown[]>(
  emitter: { once(event: string, listener: (...args: T) => void): unknown },
  event: string,
  what: string,
  timeoutMs = 15_000,
): Promise<T> {
  return Promise.race([
    new Promise<T>((resolve) => emitter.once(event, (...args: T) => resolve(args))),
    sleep(timeoutMs).then(() => assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`)),
  ]);
}

/** Runs a command through the CLI with the private pcscd's environment. */
function runVirtcard(pcscd: PrivatePcscd, args: readonly string[], env: NodeJS.ProcessEnv = pcscd.env) {
  return spawnSync(process.execPath, [VIRTCARD_MAIN, ...args], { env, encoding: 'utf8', timeout: 30_000 });
}

/** Sends an APDU and follows 61xx with GET RESPONSE, as a guest's PC/SC stack does; returns data and the last SW. */
async function transmitWithGetResponse(reader: PcscReader, command: Uint8Array): Promise<{ data: Buffer; sw: number }> {
  let response = await reader.transmit(command);
  const chunks: Buffer[] = [];
  while (statusWord(response) >> 8 === 0x61) {
    chunks.push(Buffer.from(response.subarray(0, -2)));
    response = await reader.transmit(Uint8Array.of(0x00, 0xc0, 0x00, 0x00, response[response.length - 1]!));
  }
  chunks.push(Buffer.from(response.subarray(0, -2)));
  return { data: Buffer.concat(chunks), sw: statusWord(response) };
}

describe('PC/SC relay with a private pcscd', { skip }, () => {
  let pcscd: PrivatePcscd;
  let virtcard: VirtcardProcess;
  let vicc: ViccCard;
  let monitor: PcscMonitor;
  let work: string;
  let database: string;
  const pin = readFixturePassword();

  before(async () => {
    if (unavailable !== undefined) throw new Error(unavailable);
    work = mkdtempSync(join(tmpdir(), 'virtcard-pcsc-'));
    database = join(work, 'nss-db');
    cpSync(FIXTURE_DB, database, { recursive: true });
    const pinFile = join(work, 'pin');
    writeFileSync(pinFile, `${pin}\n`, { mode: 0o600 });

    pcscd = await startPrivatePcscd();
    // libpcsclite reads the socket path once, at the first SCardEstablishContext of this process.
    process.env['PCSCLITE_CSOCK_NAME'] = pcscd.env['PCSCLITE_CSOCK_NAME'];

    virtcard = startVirtcardVpcd(
      pcscd,
      ['--nss-db', `sql:${database}`, '--cert', 'id-cert', '--cert', 'signing-cert', '--cert', 'encryption-cert', '--pin-file', pinFile],
      join(work, 'virtcard.log'),
    );
    await waitForCard(pcscd, virtcard);
    vicc = startVicc(pcscd.vpcdPort + 1);

    monitor = new PcscMonitor({ logger: silent, retryDelayMs: 200 });
    monitor.start();
    await monitor.ready();
    const deadline = Date.now() + 15_000;
    while (!monitor.snapshot().every((reader) => reader.atr.length > 0) || monitor.snapshot().length < 2) {
      if (Date.now() > deadline) throw new Error(`cards did not appear: ${JSON.stringify(monitor.snapshot().map((r) => r.name))}`);
      await sleep(100);
    }
  });

  after(async () => {
    await monitor?.stop();
    await vicc?.stop();
    await virtcard?.stop().catch(() => undefined);
    await pcscd?.stop();
  });

  test('list shows readers and ATRs', () => {
    const result = runVirtcard(pcscd, ['list']);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`0: ${CAC_READER} \\(card present`));
    assert.match(result.stdout, new RegExp(`1: ${VICC_READER} \\(card present`));
    assert.ok(result.stdout.includes(`ATR: ${CAC_ATR}`), result.stdout);
    assert.ok(result.stdout.includes(`ATR: ${VICC_ATR}`), result.stdout);
  });

  test('list without pcscd exits with 1', () => {
    const env = { ...process.env, PCSCLITE_CSOCK_NAME: join(work, 'no-such-socket') };
    const result = runVirtcard(pcscd, ['list'], env);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /pcscd is not running/);
  });

  test('reader relays CAC login and signature', async () => {
    const reader = new PcscReader(CAC_READER, monitor, { logger: silent, idleMs: 200 });
    try {
      if (reader.atr() === undefined) await waitForEvent(reader, 'insert', 'the CAC card to be opened');
      assert.equal(hex(reader.atr()!), CAC_ATR.replaceAll(' ', '').toLowerCase());
      // The CAC ATR has no TD1 byte, so the card speaks T=0; vicc's ATR offers T=1.
      assert.equal(reader.protocol, 'T=0');

      const select = await transmitWithGetResponse(reader, SELECT_PKI_0);
      assert.equal(select.sw, 0x9000, 'SELECT of the first PKI applet');

      // READ BUFFER of the tag buffer's 2-byte length.
      const readBuffer = await transmitWithGetResponse(reader, Uint8Array.of(0x80, 0x52, 0x00, 0x00, 0x02, 0x01, 0x02));
      assert.equal(readBuffer.sw, 0x9000, 'READ BUFFER of the tag buffer length');
      assert.equal(readBuffer.data.length, 2);

      const verifyPin = await reader.transmit(Uint8Array.of(0x00, 0x20, 0x00, 0x00, pin.length, ...Buffer.from(pin, 'latin1')));
      assert.equal(statusWord(verifyPin), 0x9000, 'VERIFY with the fixture PIN');

      const certificate = new X509Certificate(
        spawnSync('certutil', ['-L', '-d', `sql:${database}`, '-n', 'id-cert', '-a'], { encoding: 'utf8' }).stdout,
      );
      const modulusBytes = (certificate.publicKey.asymmetricKeyDetails?.modulusLength ?? 0) / 8;
      const message = randomBytes(64);
      const block = pkcs1SignatureBlock(createHash('sha256').update(message).digest(), modulusBytes);

      // CAC SIGN/DECRYPT takes at most 255 bytes per APDU: P1 80 means more blocks follow.
      const first = block.subarray(0, modulusBytes - 128);
      const last = block.subarray(modulusBytes - 128);
      const more = await reader.transmit(Uint8Array.of(0x80, 0x42, 0x80, 0x00, first.length, ...first));
      assert.equal(statusWord(more), 0x9000, 'first SIGN/DECRYPT block');
      const signature = await transmitWithGetResponse(reader, Uint8Array.of(0x80, 0x42, 0x00, 0x00, last.length, ...last));
      assert.equal(signature.sw, 0x9000, 'last SIGN/DECRYPT block');
      assert.equal(signature.data.length, modulusBytes);

      const valid = verify('sha256', message, { key: certificate.publicKey, padding: constants.RSA_PKCS1_PADDING }, signature.data);
      assert.ok(valid, 'the relayed signature verifies with the id-cert certificate');
    } finally {
      await reader.close();
    }
  });

  test('host opensc-tool waits for the guest transaction', async () => {
    const idleMs = 1500;
    const reader = new PcscReader(CAC_READER, monitor, { logger: silent, idleMs });
    try {
      if (reader.atr() === undefined) await waitForEvent(reader, 'insert', 'the CAC card to be opened');
      assert.equal((await transmitWithGetResponse(reader, SELECT_PKI_0)).sw, 0x9000);

      const started = Date.now();
      const during = await execFileAsync('opensc-tool', ['-r', '0', '-s', '00 A4 04 00 07 A0 00 00 00 79 03 00'], { env: pcscd.env });
      const waited = Date.now() - started;
      assert.match(during.stdout, /SW1=0x(90|61)/);
      assert.ok(waited >= idleMs / 2, `opensc-tool finished after ${waited} ms, before the guest transaction ended`);

      // Between guest operations the host uses the card at once, and the guest's next APDU still works.
      const between = await execFileAsync('opensc-tool', ['-r', '0', '-a'], { env: pcscd.env });
      assert.match(between.stdout, /3b:7a:18/i);
      assert.equal((await transmitWithGetResponse(reader, SELECT_PKI_0)).sw, 0x9000);
    } finally {
      await reader.close();
    }
  });

  test('reader relays the vicc card', async () => {
    const problems: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void problems.push(line) });
    const reader = new PcscReader(VICC_READER, monitor, { logger: log, idleMs: 100 });
    try {
      if (reader.atr() === undefined) await waitForEvent(reader, 'insert', 'the vicc card to be opened');
      assert.equal(hex(reader.atr()!), VICC_ATR.replaceAll(' ', '').toLowerCase());
      assert.equal(reader.protocol, 'T=1');
      const first = await reader.transmit(GET_CHALLENGE);
      const second = await reader.transmit(GET_CHALLENGE);
      assert.equal(statusWord(first), 0x9000);
      assert.equal(first.length, 10);
      assert.notEqual(hex(first), hex(second), 'two challenges differ, so they come from the card');

      // The first reset after opening is skipped (opening powered the card); later ones reset it.
      assert.equal(hex(await reader.reset('cold')), VICC_ATR.replaceAll(' ', '').toLowerCase());
      assert.equal(hex(await reader.reset('warm')), VICC_ATR.replaceAll(' ', '').toLowerCase());
      assert.equal(hex(await reader.reset('cold')), VICC_ATR.replaceAll(' ', '').toLowerCase());
      assert.equal(statusWord(await reader.transmit(GET_CHALLENGE)), 0x9000, 'the card works after resets');
      assert.deepEqual(problems, [], 'no PC/SC call failed');
    } finally {
      await reader.close();
    }
  });

  test('card restart emits remove and insert', async () => {
    const reader = new PcscReader(VICC_READER, monitor, { logger: silent });
    try {
      if (reader.atr() === undefined) await waitForEvent(reader, 'insert', 'the vicc card to be opened');
      const removed = waitForEvent(reader, 'remove', "'remove' after vicc stopped");
      await vicc.stop();
      await removed;
      assert.equal(reader.atr(), undefined);

      const inserted = waitForEvent<[Uint8Array]>(reader, 'insert', "'insert' after vicc restarted");
      vicc = startVicc(pcscd.vpcdPort + 1);
      const [atr] = await inserted;
      assert.equal(hex(atr), VICC_ATR.replaceAll(' ', '').toLowerCase());
      assert.equal(statusWord(await reader.transmit(GET_CHALLENGE)), 0x9000);
    } finally {
      await reader.close();
    }
  });

  test('exclusive holder is reported and retried', async () => {
    const holder = await PcscContext.establish();
    const held = await holder.connect(VICC_READER, SCARD_SHARE_EXCLUSIVE);
    const warnings: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const reader = new PcscReader(VICC_READER, monitor, { logger: log, retryDelayMs: 200 });
    try {
      await sleep(600);
      assert.equal(reader.atr(), undefined, 'the card is not announced while another process holds it exclusively');
      assert.ok(
        warnings.some((line) => line.includes('SCARD_E_SHARING_VIOLATION')),
        `a warning names the sharing violation; logged: ${warnings.join('')}`,
      );

      const inserted = waitForEvent(reader, 'insert', "'insert' after the other process released the card");
      await holder.disconnect(held, SCARD_LEAVE_CARD);
      await inserted;
      assert.equal(statusWord(await reader.transmit(GET_CHALLENGE)), 0x9000);
    } finally {
      await reader.close();
      await holder.release();
    }
  });

  test('guest waits for host transaction', async () => {
    const holder = await PcscContext.establish();
    const held = await holder.connect(VICC_READER, SCARD_SHARE_SHARED);
    const reader = new PcscReader(VICC_READER, monitor, { logger: silent });
    let stuck: Promise<Uint8Array> | undefined;
    try {
      if (reader.atr() === undefined) await waitForEvent(reader, 'insert', 'the vicc card to be opened');

      // Host software keeps a transaction open for 1 s, and the guest's APDU goes through after it.
      await holder.beginTransaction(held);
      const started = Date.now();
      const pending = reader.transmit(GET_CHALLENGE);
      await sleep(1000);
      await holder.endTransaction(held, SCARD_LEAVE_CARD);
      const response = await pending;
      assert.equal(statusWord(response), 0x9000);
      assert.ok(Date.now() - started >= 900, `the APDU went through after ${Date.now() - started} ms, inside the host's transaction`);

      // Closing the reader while its APDU waits for the card gives up after about 2 s instead of hanging.
      await sleep(700);
      await holder.beginTransaction(held);
      stuck = reader.transmit(GET_CHALLENGE);
      await sleep(200);
      const closing = Date.now();
      await reader.close();
      const closeTime = Date.now() - closing;
      assert.ok(closeTime < 4000, `close() took ${closeTime} ms`);
    } finally {
      await holder.endTransaction(held, SCARD_LEAVE_CARD).catch(() => undefined);
      await stuck?.catch(() => undefined);
      await reader.close();
      await holder.disconnect(held, SCARD_LEAVE_CARD);
      await holder.release();
    }
  });

  test('card unplug mid-APDU answers 6F00', async () => {
    await vicc.stop();
    // A card that takes 2 s per APDU, so the test can pull it while an APDU is in flight.
    const slowCard = new EchoReader('slow echo');
    const echo = slowCard.transmit.bind(slowCard);
    slowCard.transmit = async (command: Uint8Array) => {
      await sleep(2000);
      return echo(command);
    };
    let vpcd = new VpcdCard(slowCard, { port: pcscd.vpcdPort + 1, logger: silent, initialRetryDelayMs: 50 });
    vpcd.start();

    const reader = new PcscReader(VICC_READER, monitor, { logger: silent });
    try {
      if (reader.atr() === undefined) await waitForEvent(reader, 'insert', 'the slow echo card to be opened');
      const removed = waitForEvent(reader, 'remove', "'remove' after the card was pulled");
      const pending = reader.transmit(Uint8Array.of(0x00, 0xb0, 0x00, 0x00, 0x01, 0x42));
      await sleep(500);
      await vpcd.stop();

      const response = await pending;
      assert.equal(hex(response), '6f00');
      await removed;

      // The relay keeps running: a new card in the same reader is relayed again.
      const inserted = waitForEvent(reader, 'insert', "'insert' of the card put back");
      vpcd = new VpcdCard(new EchoReader('echo'), { port: pcscd.vpcdPort + 1, logger: silent, initialRetryDelayMs: 50 });
      vpcd.start();
      await inserted;
      const echoed = await reader.transmit(Uint8Array.of(0x00, 0xb0, 0x00, 0x00, 0x01, 0x42));
      assert.equal(hex(echoed), '00b00000014290' + '00');
    } finally {
      await reader.close();
      await vpcd.stop();
      vicc = startVicc(pcscd.vpcdPort + 1);
    }
  });

  test('client announces two readers over VSCard', async () => {
    const isAtr = (message: VscMessage): boolean => message.type === VscMessageType.Atr;
    const viccHex = VICC_ATR.replaceAll(' ', '').toLowerCase();
    await waitForCondition(
      () => monitor.snapshot().some((reader) => reader.name === VICC_READER && hex(reader.atr) === viccHex),
      'vicc to be back in its reader',
    );

    const port = await findFreePortPair();
    const qemu = [new FakePassthru(), new FakePassthru()];
    await qemu[0]!.listen(port);
    await qemu[1]!.listen(port + 1);
    const client = new PcscClient({
      host: '127.0.0.1',
      port,
      readers: [],
      logger: silent,
      retry: { initialDelayMs: 50, maxDelayMs: 200 },
      reader: { idleMs: 100 },
    });
    try {
      await client.start();
      for (const fake of qemu) {
        await fake.waitFor((message) => message.type === VscMessageType.ReaderAdd, 'VSC_ReaderAdd');
      }
      const cacAtr = await qemu[0]!.waitFor(isAtr, 'VSC_ATR of the CAC card');
      const viccAtr = await qemu[1]!.waitFor(isAtr, 'VSC_ATR of the vicc card');
      assert.equal(cacAtr.type === VscMessageType.Atr ? hex(cacAtr.atr) : '', CAC_ATR.replaceAll(' ', '').toLowerCase());
      assert.equal(viccAtr.type === VscMessageType.Atr ? hex(viccAtr.atr) : '', VICC_ATR.replaceAll(' ', '').toLowerCase());
      assert.deepEqual([...client.relayedReaders().values()].sort(), [CAC_READER, VICC_READER]);

      qemu[1]!.sendApdu(GET_CHALLENGE);
      const response = await qemu[1]!.waitFor((message) => message.type === VscMessageType.Apdu, 'the APDU response');
      assert.equal(response.type === VscMessageType.Apdu ? statusWord(response.apdu) : 0, 0x9000);

      await vicc.stop();
      await qemu[1]!.waitFor((message) => message.type === VscMessageType.CardRemove, 'VSC_CardRemove after vicc stopped');
      vicc = startVicc(pcscd.vpcdPort + 1);
      await qemu[1]!.waitFor(isAtr, 'VSC_ATR after vicc restarted');

      await client.stop();
      for (const fake of qemu) {
        await fake.waitFor((message) => message.type === VscMessageType.ReaderRemove, 'VSC_ReaderRemove on stop');
      }
    } finally {
      await client.stop();
      await Promise.all(qemu.map((fake) => fake.close()));
    }
  });

  test('client with one port for all readers', async () => {
    // A server like virtcard host: several VSCard clients on one port, each acknowledged like QEMU.
    const atrsByConnection: string[][] = [];
    const server = net.createServer((socket) => {
      const atrs: string[] = [];
      atrsByConnection.push(atrs);
      const decoder = new VscDecoder();
      socket.on('error', () => undefined);
      socket.on('data', (chunk: Buffer) => {
        for (const message of decoder.decode(chunk)) {
          if (message.type === VscMessageType.Init) {
            socket.write(encodeMessage({ type: VscMessageType.Init, readerId: UNDEFINED_READER_ID, version: 2, capabilities: [0] }));
          } else if (message.type === VscMessageType.Atr) {
            atrs.push(hex(message.atr));
            socket.write(encodeMessage({ type: VscMessageType.Error, readerId: 0, code: VscErrorCode.Success }));
          } else if (message.type !== VscMessageType.Error) {
            socket.write(encodeMessage({ type: VscMessageType.Error, readerId: 0, code: VscErrorCode.Success }));
          }
        }
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    const client = new PcscClient({ host: '127.0.0.1', port, singlePort: true, readers: [], logger: silent });
    try {
      await client.start();
      await waitForCondition(() => atrsByConnection.filter((atrs) => atrs.length > 0).length === 2, 'two connections with an ATR each');
      const atrs = atrsByConnection.map((list) => list[0]).sort();
      assert.deepEqual(atrs, [CAC_ATR, VICC_ATR].map((atr) => atr.replaceAll(' ', '').toLowerCase()).sort());
    } finally {
      await client.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test('client -e use_hw=yes relays readers', async () => {
    const port = await findFreePortPair();
    const qemu = [new FakePassthru(), new FakePassthru()];
    await qemu[0]!.listen(port);
    await qemu[1]!.listen(port + 1);
    const child = spawn(process.execPath, [VIRTCARD_MAIN, 'client', '-e', 'use_hw=yes', '-d', '1', '127.0.0.1', String(port)], {
      env: { ...pcscd.env, VIRTCARD_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    try {
      for (const fake of qemu) {
        await fake.waitFor((message) => message.type === VscMessageType.Atr, `VSC_ATR from virtcard client; log:\n${stderr}`);
      }
      qemu[0]!.sendApdu(SELECT_PKI_0);
      const response = await qemu[0]!.waitFor((message) => message.type === VscMessageType.Apdu, 'the SELECT response');
      assert.equal(response.type === VscMessageType.Apdu ? statusWord(response.apdu) >> 8 : 0, 0x61, 'the CAC card answers SELECT with 61xx');
      await waitForCondition(() => stdout.includes(`${CAC_READER}: APDU < `), `the -d 1 trace of the SELECT; stdout:\n${stdout}`);
      assert.ok(stdout.includes(`${CAC_READER}: APDU > `), stdout);

      child.kill('SIGTERM');
      for (const fake of qemu) {
        await fake.waitFor((message) => message.type === VscMessageType.ReaderRemove, 'VSC_ReaderRemove after SIGTERM');
      }
      const [code] = await waitForEvent<[number | null]>(child, 'exit', 'virtcard client to exit');
      assert.equal(code, 0, stderr);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await Promise.all(qemu.map((fake) => fake.close()));
    }
  });

  // Runs last: it stops the private pcscd.
  test('pcscd stop closes readers', async () => {
    const viccHex = VICC_ATR.replaceAll(' ', '').toLowerCase();
    await waitForCondition(
      () => monitor.snapshot().some((reader) => reader.name === VICC_READER && hex(reader.atr) === viccHex),
      'vicc to be back in its reader',
    );
    const port = await findFreePortPair();
    const qemu = new FakePassthru();
    await qemu.listen(port);
    const client = new PcscClient({ host: '127.0.0.1', port, readers: [VICC_READER], logger: silent });
    const reader = new PcscReader(CAC_READER, monitor, { logger: silent });
    try {
      await client.start();
      await qemu.waitFor((message) => message.type === VscMessageType.Atr, 'VSC_ATR of the vicc card');
      if (reader.atr() === undefined) await waitForEvent(reader, 'insert', 'the CAC card to be opened');

      const closed = waitForEvent(reader, 'close', "'close' after pcscd stopped");
      await pcscd.stop();
      await closed;
      await qemu.waitFor((message) => message.type === VscMessageType.CardRemove, 'VSC_CardRemove after pcscd stopped');
      await qemu.waitFor((message) => message.type === VscMessageType.ReaderRemove, 'VSC_ReaderRemove after pcscd stopped');
      assert.deepEqual(monitor.snapshot(), []);
      assert.equal(client.relayedReaders().size, 0);
      await assert.rejects(reader.transmit(GET_CHALLENGE), { name: 'NoCardError' });
    } finally {
      await reader.close();
      await client.stop();
      await qemu.close();
    }
  });
});

async function waitForCondition(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
