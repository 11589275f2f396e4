/**
 * The VSCard client against a fake QEMU on loopback: a TCP server that
 * replies like QEMU 7.2's ccid-card-passthru (Init reply, one VSC_Error per
 * ReaderAdd/ReaderRemove/ATR/CardRemove) and can misbehave on request.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { EchoReader, ECHO_ATR } from '../../src/reader/echo-reader.js';
import { VscClient } from '../../src/vscard/client-connection.js';
import { CARD_REMOVE_GRACE_MS } from '../../src/vscard/client-session.js';
import { VscDecoder } from '../../src/vscard/decoder.js';
import { encodeMessage } from '../../src/vscard/encode.js';
import { UNDEFINED_READER_ID, VscErrorCode, VscMessageType, type VscMessage } from '../../src/vscard/protocol.js';

const silent = pino({ level: 'silent' });
const FAST_RETRY = { initialDelayMs: 20, maxDelayMs: 100 };

/** One accepted client connection of the fake QEMU. */
class FakeConnection {
  readonly received: VscMessage[] = [];
  private readonly decoder = new VscDecoder();
  private waiters: (() => void)[] = [];
  closed = false;

  constructor(
    readonly socket: net.Socket,
    private readonly autoReply: boolean,
  ) {
    socket.on('data', (chunk: Buffer) => {
      for (const message of this.decoder.decode(chunk)) {
        this.received.push(message);
        if (this.autoReply) this.reply(message);
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }

  /** Replies as QEMU does. */
  private reply(message: VscMessage): void {
    switch (message.type) {
      case VscMessageType.Init:
        this.send({ type: VscMessageType.Init, readerId: UNDEFINED_READER_ID, version: 2, capabilities: [0] });
        break;
      case VscMessageType.ReaderAdd:
        this.send({ type: VscMessageType.Error, readerId: 0, code: VscErrorCode.Success });
        break;
      case VscMessageType.ReaderRemove:
      case VscMessageType.Atr:
      case VscMessageType.CardRemove:
        this.send({ type: VscMessageType.Error, readerId: message.readerId, code: VscErrorCode.Success });
        break;
      default:
        break;
    }
  }

  send(message: VscMessage): void {
    this.socket.write(encodeMessage(message));
  }

  /** Waits until `predicate` holds for the received messages, or fails after `timeoutMs`. */
  async waitFor(predicate: (messages: VscMessage[]) => boolean, what: string, timeoutMs = 3000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.received)) {
      const left = deadline - Date.now();
      if (left <= 0) {
        assert.fail(`timed out waiting for ${what}; received: ${this.received.map((m) => VscMessageType[m.type]).join(', ')}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async waitForClose(timeoutMs = 3000): Promise<void> {
    await this.waitFor(() => this.closed, 'the connection to close', timeoutMs);
  }

  types(): VscMessageType[] {
    return this.received.map((message) => message.type);
  }
}

class FakeQemu {
  readonly connections: FakeConnection[] = [];
  private readonly server: net.Server;
  private waiters: (() => void)[] = [];

  constructor(autoReply = true) {
    this.server = net.createServer((socket) => {
      this.connections.push(new FakeConnection(socket, autoReply));
      const waiters = this.waiters;
      this.waiters = [];
      for (const waiter of waiters) waiter();
    });
  }

  async listen(port = 0): Promise<number> {
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
    return (this.server.address() as net.AddressInfo).port;
  }

  async connection(index: number, timeoutMs = 3000): Promise<FakeConnection> {
    const deadline = Date.now() + timeoutMs;
    while (this.connections.length <= index) {
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`timed out waiting for client connection ${index + 1}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.connections[index]!;
  }

  async close(): Promise<void> {
    for (const connection of this.connections) connection.socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function hasAtr(messages: VscMessage[], count = 1): boolean {
  return messages.filter((message) => message.type === VscMessageType.Atr).length >= count;
}

function apduOf(message: VscMessage | undefined): Uint8Array | undefined {
  return message?.type === VscMessageType.Apdu ? message.apdu : undefined;
}

async function withClient(
  qemu: FakeQemu,
  port: number,
  reader: EchoReader,
  body: (client: VscClient) => Promise<void>,
): Promise<void> {
  const client = new VscClient({ host: '127.0.0.1', port, reader, retry: FAST_RETRY, log: silent });
  client.start();
  try {
    await body(client);
  } finally {
    await client.stop();
    await qemu.close();
  }
}

test('client handshake announces reader and card', async () => {
  const qemu = new FakeQemu();
  const port = await qemu.listen();
  const reader = new EchoReader('Test');
  await withClient(qemu, port, reader, async () => {
    const connection = await qemu.connection(0);
    await connection.waitFor((messages) => hasAtr(messages), 'the ATR');

    assert.deepEqual(connection.types(), [
      VscMessageType.Init,
      VscMessageType.ReaderRemove,
      VscMessageType.ReaderAdd,
      VscMessageType.Atr,
    ]);
    const [init, , add, atr] = connection.received;
    assert.deepEqual(init, { type: VscMessageType.Init, readerId: 0, version: 2, capabilities: [0] });
    assert.deepEqual(add, { type: VscMessageType.ReaderAdd, readerId: UNDEFINED_READER_ID, name: 'Test' });
    assert.deepEqual(atr, { type: VscMessageType.Atr, readerId: 0, atr: ECHO_ATR });
    assert.equal(reader.powered, true, 'the card is powered on before its ATR is sent');
  });
});

test('client answers APDUs in order', async () => {
  const qemu = new FakeQemu();
  const port = await qemu.listen();
  const reader = new EchoReader('Test');
  await withClient(qemu, port, reader, async () => {
    const connection = await qemu.connection(0);
    await connection.waitFor((messages) => hasAtr(messages), 'the ATR');
    const before = connection.received.length;

    const commands = [Uint8Array.of(0x00, 0xa4, 0x04, 0x00), Uint8Array.of(0x80, 0x56, 0x01, 0x00, 0x00), Uint8Array.of(0x00, 0xc0, 0x00, 0x00, 0x0d)];
    // All three in one TCP segment: the client must split them and respond to each.
    connection.socket.write(Buffer.concat(commands.map((apdu) => encodeMessage({ type: VscMessageType.Apdu, readerId: 0, apdu }))));
    await connection.waitFor((messages) => messages.length >= before + 3, 'three answers');

    commands.forEach((command, index) => {
      const answer = apduOf(connection.received[before + index]);
      assert.deepEqual(answer, Uint8Array.from([...command, 0x90, 0x00]), `answer ${index}`);
    });
    assert.equal(reader.transmitted, 3);
  });
});

test('client acknowledges Flush', async () => {
  const qemu = new FakeQemu();
  const port = await qemu.listen();
  await withClient(qemu, port, new EchoReader('Test'), async () => {
    const connection = await qemu.connection(0);
    await connection.waitFor((messages) => hasAtr(messages), 'the ATR');
    connection.send({ type: VscMessageType.Flush, readerId: 0 });
    await connection.waitFor((messages) => messages.at(-1)?.type === VscMessageType.FlushComplete, 'FlushComplete');
    assert.deepEqual(connection.received.at(-1), { type: VscMessageType.FlushComplete, readerId: 0 });
  });
});

test('client ignores a second Init', async () => {
  const qemu = new FakeQemu();
  const port = await qemu.listen();
  await withClient(qemu, port, new EchoReader('Test'), async () => {
    const connection = await qemu.connection(0);
    // QEMU as a socket client sends an Init at realize and another in reply.
    connection.send({ type: VscMessageType.Init, readerId: UNDEFINED_READER_ID, version: 2, capabilities: [0] });
    await connection.waitFor((messages) => hasAtr(messages), 'the ATR');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const adds = connection.received.filter((message) => message.type === VscMessageType.ReaderAdd);
    assert.equal(adds.length, 1);
  });
});

test('client reports card removal and insertion', async () => {
  const qemu = new FakeQemu();
  const port = await qemu.listen();
  const reader = new EchoReader('Test');
  await withClient(qemu, port, reader, async () => {
    const connection = await qemu.connection(0);
    await connection.waitFor((messages) => hasAtr(messages), 'the ATR');

    reader.remove();
    await connection.waitFor((messages) => messages.at(-1)?.type === VscMessageType.CardRemove, 'CardRemove');

    // An APDU without a card gets a VSC_Error, which QEMU turns into a failed DataBlock.
    connection.send({ type: VscMessageType.Apdu, readerId: 0, apdu: Uint8Array.of(0, 0xa4, 4, 0) });
    await connection.waitFor((messages) => messages.at(-1)?.type === VscMessageType.Error, 'VSC_Error for an APDU without card');
    assert.deepEqual(connection.received.at(-1), { type: VscMessageType.Error, readerId: 0, code: VscErrorCode.GeneralError });

    reader.insert();
    await connection.waitFor((messages) => hasAtr(messages, 2), 'a second ATR');
  });
});

/** An echo reader whose card stops responding until `release` is called, like a relayed card that hangs. */
class StalledReader extends EchoReader {
  private gate: Promise<void> | undefined;
  release: () => void = () => undefined;

  stall(): void {
    this.gate = new Promise<void>((resolve) => (this.release = resolve));
  }

  override async transmit(): Promise<Uint8Array> {
    await this.gate;
    return Uint8Array.of(0x6f, 0x00);
  }
}

test('client sends CardRemove after the reply in flight', async () => {
  const qemu = new FakeQemu();
  const port = await qemu.listen();
  const reader = new StalledReader('Test');
  await withClient(qemu, port, reader, async () => {
    const connection = await qemu.connection(0);
    await connection.waitFor((messages) => hasAtr(messages), 'the ATR');
    const types = (): VscMessageType[] =>
      connection.received.map((message) => message.type).filter((type) => type === VscMessageType.Apdu || type === VscMessageType.CardRemove);

    // The card hangs during an APDU and is removed long after the last reply, so
    // only the APDU in flight can hold CardRemove back. QEMU would drop its reply
    // if CardRemove came first.
    reader.stall();
    connection.send({ type: VscMessageType.Apdu, readerId: 0, apdu: Uint8Array.of(0, 0xa4, 4, 0) });
    await sleep(CARD_REMOVE_GRACE_MS + 100);
    reader.remove();
    await sleep(200);
    assert.deepEqual(types(), [], 'CardRemove must wait for the reply to the APDU in flight');

    reader.release();
    await connection.waitFor(() => types().length === 2, 'the reply and CardRemove');
    assert.deepEqual(types(), [VscMessageType.Apdu, VscMessageType.CardRemove]);
  });
});

test('client holds CardRemove while the guest still gets replies', async () => {
  const qemu = new FakeQemu();
  const port = await qemu.listen();
  const reader = new EchoReader('Test');
  await withClient(qemu, port, reader, async () => {
    const connection = await qemu.connection(0);
    await connection.waitFor((messages) => hasAtr(messages), 'the ATR');
    const count = (type: VscMessageType): number => connection.received.filter((message) => message.type === type).length;

    connection.send({ type: VscMessageType.Apdu, readerId: 0, apdu: Uint8Array.of(0, 0xa4, 4, 0) });
    await connection.waitFor(() => count(VscMessageType.Apdu) === 1, 'the APDU response');
    reader.remove();

    // The guest sends another APDU to the removed card before the quiet time ends.
    // It gets VSC_Error, and the quiet time starts again from that reply.
    await sleep(CARD_REMOVE_GRACE_MS / 2);
    connection.send({ type: VscMessageType.Apdu, readerId: 0, apdu: Uint8Array.of(0, 0xb0, 0, 0) });
    await connection.waitFor(() => count(VscMessageType.Error) === 1, 'VSC_Error for the APDU to the removed card');
    const errorAt = performance.now();
    assert.equal(count(VscMessageType.CardRemove), 0, 'CardRemove must not overtake the reply to the second APDU');

    await connection.waitFor(() => count(VscMessageType.CardRemove) === 1, 'CardRemove');
    const heldMs = performance.now() - errorAt;
    assert.ok(heldMs >= CARD_REMOVE_GRACE_MS - 20, `CardRemove came ${heldMs.toFixed(0)} ms after the VSC_Error`);
  });
});

test('client holds CardRemove after a response', async () => {
  const qemu = new FakeQemu();
  const port = await qemu.listen();
  const reader = new EchoReader('Test');
  await withClient(qemu, port, reader, async () => {
    const connection = await qemu.connection(0);
    await connection.waitFor((messages) => hasAtr(messages), 'the ATR');

    // QEMU 7.2 drops unread responses on CardRemove, so a removal right after a
    // response must wait until the guest had time to read that response.
    connection.send({ type: VscMessageType.Apdu, readerId: 0, apdu: Uint8Array.of(0, 0xa4, 4, 0) });
    await connection.waitFor((messages) => messages.at(-1)?.type === VscMessageType.Apdu, 'the APDU response');
    const respondedAt = performance.now();
    reader.remove();

    await connection.waitFor((messages) => messages.at(-1)?.type === VscMessageType.CardRemove, 'CardRemove');
    const heldMs = performance.now() - respondedAt;
    assert.ok(heldMs >= CARD_REMOVE_GRACE_MS - 20, `CardRemove came ${heldMs.toFixed(0)} ms after the response`);

    // An insertion during the hold sends the held CardRemove first, then the ATR.
    reader.insert();
    await connection.waitFor((messages) => hasAtr(messages, 2), 'a second ATR');
    const responses = (): number => connection.received.filter((message) => message.type === VscMessageType.Apdu).length;
    const before = responses();
    connection.send({ type: VscMessageType.Apdu, readerId: 0, apdu: Uint8Array.of(0, 0xb0, 0, 0) });
    await connection.waitFor(() => responses() > before, 'a response after insertion');
    reader.remove();
    reader.insert();
    await connection.waitFor((messages) => hasAtr(messages, 3), 'a third ATR');
    const tail = connection.received.slice(-2).map((message) => message.type);
    assert.deepEqual(tail, [VscMessageType.CardRemove, VscMessageType.Atr]);
  });
});

test('client starts with an empty reader', async () => {
  const qemu = new FakeQemu();
  const port = await qemu.listen();
  const reader = new EchoReader('Test', ECHO_ATR, { inserted: false });
  await withClient(qemu, port, reader, async () => {
    const connection = await qemu.connection(0);
    await connection.waitFor((messages) => messages.some((m) => m.type === VscMessageType.ReaderAdd), 'ReaderAdd');
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(hasAtr(connection.received), false);
    reader.insert();
    await connection.waitFor((messages) => hasAtr(messages), 'the ATR after insertion');
  });
});

test('client stop removes card and reader', async () => {
  const qemu = new FakeQemu();
  const port = await qemu.listen();
  const reader = new EchoReader('Test');
  const client = new VscClient({ host: '127.0.0.1', port, reader, retry: FAST_RETRY, log: silent });
  client.start();
  const connection = await qemu.connection(0);
  await connection.waitFor((messages) => hasAtr(messages), 'the ATR');

  await client.stop();
  await connection.waitForClose();
  assert.deepEqual(connection.types().slice(-2), [VscMessageType.CardRemove, VscMessageType.ReaderRemove]);
  assert.equal(client.connectionState, 'stopped');
  await new Promise((resolve) => setTimeout(resolve, 150));
  assert.equal(qemu.connections.length, 1, 'no reconnect after stop');
  await qemu.close();
});

test('client retries until QEMU listens', async () => {
  const port = await freePort();
  const reader = new EchoReader('Test');
  const client = new VscClient({ host: '127.0.0.1', port, reader, retry: FAST_RETRY, log: silent });
  client.start();
  await new Promise((resolve) => setTimeout(resolve, 250));
  assert.notEqual(client.connectionState, 'connected');

  const qemu = new FakeQemu();
  await qemu.listen(port);
  try {
    const connection = await qemu.connection(0);
    await connection.waitFor((messages) => hasAtr(messages), 'the ATR');
  } finally {
    await client.stop();
    await qemu.close();
  }
});

test('client reconnects and re-announces', async () => {
  const qemu = new FakeQemu();
  const port = await qemu.listen();
  await withClient(qemu, port, new EchoReader('Test'), async () => {
    const first = await qemu.connection(0);
    await first.waitFor((messages) => hasAtr(messages), 'the first ATR');
    first.socket.destroy();

    const second = await qemu.connection(1);
    await second.waitFor((messages) => hasAtr(messages), 'the ATR after reconnecting');
    assert.deepEqual(second.types(), [VscMessageType.Init, VscMessageType.ReaderRemove, VscMessageType.ReaderAdd, VscMessageType.Atr]);
  });
});

test('client survives a restarted QEMU', async () => {
  const first = new FakeQemu();
  const port = await first.listen();
  const reader = new EchoReader('Test');
  const client = new VscClient({ host: '127.0.0.1', port, reader, retry: FAST_RETRY, log: silent });
  client.start();
  const second = new FakeQemu();
  try {
    const connection = await first.connection(0);
    await connection.waitFor((messages) => hasAtr(messages), 'the ATR');
    await first.close();
    await new Promise((resolve) => setTimeout(resolve, 200));
    await second.listen(port);
    const again = await second.connection(0);
    await again.waitFor((messages) => hasAtr(messages), 'the ATR to the new QEMU');
  } finally {
    await client.stop();
    await second.close();
  }
});

/** Bad byte streams from the peer; each must drop the connection, after which the client reconnects. */
const BAD_STREAMS: [string, Buffer][] = [
  ['unknown type', Buffer.from('0000002a0000000000000000', 'hex')],
  ['huge length', Buffer.from('00000007000000000001fff0', 'hex')],
  ['wrong magic', Buffer.from('00000001ffffffff0000000c565343450000000200000000', 'hex')],
  ['random garbage', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
];

for (const [name, bytes] of BAD_STREAMS) {
  test(`client drops a peer sending ${name}`, async () => {
    const qemu = new FakeQemu(false);
    const port = await qemu.listen();
    await withClient(qemu, port, new EchoReader('Test'), async () => {
      const first = await qemu.connection(0);
      await first.waitFor((messages) => messages.length >= 1, 'the client Init');
      first.socket.write(bytes);
      await first.waitForClose();
      const second = await qemu.connection(1);
      await second.waitFor((messages) => messages.length >= 1, 'the Init of the reconnected client');
      assert.equal(second.received[0]?.type, VscMessageType.Init);
    });
  });
}

test('client handles a close mid-message', async () => {
  const qemu = new FakeQemu(false);
  const port = await qemu.listen();
  await withClient(qemu, port, new EchoReader('Test'), async () => {
    const first = await qemu.connection(0);
    await first.waitFor((messages) => messages.length >= 1, 'the client Init');
    // Half of an Init, then the connection ends.
    first.socket.end(Buffer.from('00000001ffffffff0000000c5653', 'hex'));
    await first.waitForClose();
    const second = await qemu.connection(1);
    await second.waitFor((messages) => messages.length >= 1, 'the Init of the reconnected client');
  });
});

test('client survives a rejected reader', async () => {
  const qemu = new FakeQemu(false);
  const port = await qemu.listen();
  await withClient(qemu, port, new EchoReader('Test'), async () => {
    const connection = await qemu.connection(0);
    await connection.waitFor((messages) => messages.length >= 1, 'the client Init');
    connection.send({ type: VscMessageType.Init, readerId: UNDEFINED_READER_ID, version: 2, capabilities: [0] });
    await connection.waitFor((messages) => messages.some((m) => m.type === VscMessageType.ReaderAdd), 'ReaderAdd');
    connection.send({ type: VscMessageType.Error, readerId: 0, code: VscErrorCode.Success }); // for ReaderRemove
    connection.send({ type: VscMessageType.Error, readerId: UNDEFINED_READER_ID, code: VscErrorCode.CannotAddMoreReaders });
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(hasAtr(connection.received), false, 'no ATR for a rejected reader');
    assert.equal(connection.closed, false);
  });
});

test('trace masks the VERIFY PIN', async () => {
  const qemu = new FakeQemu();
  const port = await qemu.listen();
  const reader = new EchoReader('Test');
  const lines: string[] = [];
  const client = new VscClient({
    host: '127.0.0.1',
    port,
    reader,
    retry: FAST_RETRY,
    log: silent,
    trace: { level: () => 1, write: (line) => lines.push(line) },
  });
  client.start();
  try {
    const connection = await qemu.connection(0);
    await connection.waitFor((messages) => hasAtr(messages), 'the ATR');
    const pin = Buffer.from('1234567\xff', 'latin1');
    connection.send({ type: VscMessageType.Apdu, readerId: 0, apdu: Uint8Array.from([0x00, 0x20, 0x00, 0x00, 0x08, ...pin]) });
    await connection.waitFor((messages) => messages.at(-1)?.type === VscMessageType.Apdu, 'the VERIFY response');
  } finally {
    await client.stop();
    await qemu.close();
  }

  const text = lines.join('\n');
  assert.match(text, /VERIFY/);
  assert.match(text, /<8 bytes masked>/);
  // The echo card returns the PIN in its response, so this also checks that the response is masked.
  assert.doesNotMatch(text, /31 32 33 34/);
  assert.equal(lines.filter((line) => line.startsWith('APDU >')).length, 1);
  assert.equal(lines.filter((line) => line.startsWith('APDU <')).length, 1);
});

test('trace level 11 shows every message', async () => {
  const qemu = new FakeQemu();
  const port = await qemu.listen();
  const lines: string[] = [];
  let level = 11;
  const client = new VscClient({
    host: '127.0.0.1',
    port,
    reader: new EchoReader('Test'),
    retry: FAST_RETRY,
    log: silent,
    trace: { level: () => level, write: (line) => lines.push(line) },
  });
  client.start();
  try {
    const connection = await qemu.connection(0);
    await connection.waitFor((messages) => hasAtr(messages), 'the ATR');
    await new Promise((resolve) => setTimeout(resolve, 50));
    level = 0;
    connection.send({ type: VscMessageType.Apdu, readerId: 0, apdu: Uint8Array.of(0x00, 0xa4, 0x04, 0x00) });
    await connection.waitFor((messages) => messages.at(-1)?.type === VscMessageType.Apdu, 'the APDU response');
  } finally {
    await client.stop();
    await qemu.close();
  }

  assert.deepEqual(lines, [
    'VSCard sent VSC_Init reader_id=0x0 version=2 capabilities=[0]',
    'VSCard received VSC_Init reader_id=0xffffffff version=2 capabilities=[0]',
    'VSCard sent VSC_ReaderRemove reader_id=0x0',
    'VSCard sent VSC_ReaderAdd reader_id=0xffffffff name="Test"',
    'VSCard received VSC_Error reader_id=0x0 VSC_SUCCESS',
    'VSCard received VSC_Error reader_id=0x0 VSC_SUCCESS',
    'VSCard sent VSC_ATR reader_id=0x0 atr=3b046563686f',
    'VSCard received VSC_Error reader_id=0x0 VSC_SUCCESS',
  ]);
});
