import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { MAX_QUEUED_REPLY_BYTES, VscServer } from '../../src/vscard/server.js';
import { checkPassthruAtr } from '../../src/vscard/server-atr.js';
import type { RemoteCardReader } from '../../src/vscard/server-reader.js';
import { VscDecoder } from '../../src/vscard/decoder.js';
import { encodeMessage } from '../../src/vscard/encode.js';
import { VscMessageType, VSCARD_VERSION, type VscMessage } from '../../src/vscard/protocol.js';
import { NoCardError } from '../../src/reader/reader.js';

const CAC_ATR = Uint8Array.from(Buffer.from('3b7a18000073667465206364313434', 'hex'));

/** A VSCard client that writes raw messages and collects the server's replies. */
class FakeClient {
  private readonly decoder = new VscDecoder();
  private readonly received: VscMessage[] = [];
  private waiter: (() => void) | undefined;
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received.push(...this.decoder.decode(chunk));
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
  }

  static async open(port: number): Promise<FakeClient> {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    return new FakeClient(socket);
  }

  send(message: VscMessage): void {
    this.socket.write(encodeMessage(message));
  }

  /** Returns the next message from the server, waiting up to 2 s. */
  async next(): Promise<VscMessage> {
    const deadline = Date.now() + 2000;
    while (this.received.length === 0) {
      if (this.closed) throw new Error('connection closed before the expected message');
      if (Date.now() > deadline) throw new Error('timed out waiting for a server message');
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, 50);
      });
    }
    return this.received.shift()!;
  }

  async handshake(): Promise<void> {
    this.send({ type: VscMessageType.Init, readerId: 0, version: VSCARD_VERSION, capabilities: [0] });
    assert.deepEqual(await this.next(), { type: VscMessageType.Init, readerId: 0xffffffff, version: VSCARD_VERSION, capabilities: [0] });
  }

  close(): void {
    this.socket.destroy();
  }
}

async function startServer(accept?: (reader: RemoteCardReader) => boolean): Promise<{ server: VscServer; port: number; readers: RemoteCardReader[] }> {
  const readers: RemoteCardReader[] = [];
  const server = new VscServer({ port: 0, ...(accept ? { acceptReader: accept } : {}) });
  server.on('reader', (reader) => readers.push(reader));
  const address = await server.listen();
  return { server, port: address.port, readers };
}

test('server handshake matches passthru', async () => {
  const { server, port, readers } = await startServer();
  const client = await FakeClient.open(port);
  try {
    await client.handshake();
    client.send({ type: VscMessageType.ReaderRemove, readerId: 0 });
    assert.deepEqual(await client.next(), { type: VscMessageType.Error, readerId: 0, code: 0 });
    client.send({ type: VscMessageType.ReaderAdd, readerId: 0, name: '' });
    assert.deepEqual(await client.next(), { type: VscMessageType.Error, readerId: 0, code: 0 });
    client.send({ type: VscMessageType.Atr, readerId: 0, atr: CAC_ATR });
    assert.deepEqual(await client.next(), { type: VscMessageType.Error, readerId: 0, code: 0 });

    assert.equal(readers.length, 1);
    const reader = readers[0]!;
    assert.deepEqual(reader.atr(), CAC_ATR);
    const response = reader.transmit(Uint8Array.of(0x00, 0xa4, 0x04, 0x00));
    const apdu = await client.next();
    assert.equal(apdu.type, VscMessageType.Apdu);
    assert.equal(apdu.readerId, 0);
    assert.deepEqual(apdu.type === VscMessageType.Apdu ? [...apdu.apdu] : [], [0x00, 0xa4, 0x04, 0x00]);
    client.send({ type: VscMessageType.Apdu, readerId: 0, apdu: Uint8Array.of(0x61, 0x0d) });
    assert.deepEqual([...(await response)], [0x61, 0x0d]);
  } finally {
    client.close();
    await server.close();
  }
});

test('server repeats ReaderAdd success', async () => {
  const { server, port, readers } = await startServer();
  const client = await FakeClient.open(port);
  try {
    await client.handshake();
    for (let round = 0; round < 2; round++) {
      client.send({ type: VscMessageType.ReaderAdd, readerId: 0, name: 'one' });
      assert.deepEqual(await client.next(), { type: VscMessageType.Error, readerId: 0, code: 0 });
    }
    assert.equal(readers.length, 1);
    assert.equal(readers[0]!.name, 'one');
  } finally {
    client.close();
    await server.close();
  }
});

test('server refuses reader without room', async () => {
  const { server, port } = await startServer(() => false);
  const client = await FakeClient.open(port);
  try {
    await client.handshake();
    client.send({ type: VscMessageType.ReaderAdd, readerId: 0, name: '' });
    assert.deepEqual(await client.next(), { type: VscMessageType.Error, readerId: 0xffffffff, code: 2 });
  } finally {
    client.close();
    await server.close();
  }
});

test('server rejects invalid ATRs', async () => {
  const { server, port, readers } = await startServer();
  const client = await FakeClient.open(port);
  try {
    await client.handshake();
    client.send({ type: VscMessageType.Atr, readerId: 0, atr: CAC_ATR });
    assert.deepEqual(await client.next(), { type: VscMessageType.Error, readerId: 0, code: 1 }, 'ATR before ReaderAdd');
    client.send({ type: VscMessageType.ReaderAdd, readerId: 0, name: '' });
    await client.next();
    const cases: [string, Uint8Array][] = [
      ['41 bytes', new Uint8Array(41).fill(0x3b)],
      ['bad TS', Uint8Array.of(0x3c, 0x00)],
      ['too short', Uint8Array.of(0x3b, 0x05, 0x01)],
    ];
    for (const [name, atr] of cases) {
      client.send({ type: VscMessageType.Atr, readerId: 7, atr });
      assert.deepEqual(await client.next(), { type: VscMessageType.Error, readerId: 7, code: 1 }, name);
    }
    assert.equal(readers[0]!.atr(), undefined);
  } finally {
    client.close();
    await server.close();
  }
});

test('server answers Flush with error', async () => {
  const { server, port } = await startServer();
  const client = await FakeClient.open(port);
  try {
    await client.handshake();
    client.send({ type: VscMessageType.Flush, readerId: 0 });
    assert.deepEqual(await client.next(), { type: VscMessageType.Error, readerId: 0, code: 1 });
    client.send({ type: VscMessageType.FlushComplete, readerId: 0 });
    assert.deepEqual(await client.next(), { type: VscMessageType.Error, readerId: 0, code: 1 });
  } finally {
    client.close();
    await server.close();
  }
});

test('client error and removal fail commands', async () => {
  const { server, port, readers } = await startServer();
  const client = await FakeClient.open(port);
  try {
    await client.handshake();
    client.send({ type: VscMessageType.ReaderAdd, readerId: 0, name: '' });
    await client.next();
    client.send({ type: VscMessageType.Atr, readerId: 0, atr: CAC_ATR });
    await client.next();
    const reader = readers[0]!;

    const failed = reader.transmit(Uint8Array.of(0, 0xb0, 0, 0, 0));
    await client.next();
    client.send({ type: VscMessageType.Error, readerId: 0, code: 1 });
    await assert.rejects(failed, /reported an error/);

    const removed = once(reader, 'remove');
    const pending = assert.rejects(reader.transmit(Uint8Array.of(0, 0xb0, 0, 0, 0)), NoCardError);
    await client.next();
    client.send({ type: VscMessageType.CardRemove, readerId: 0 });
    assert.deepEqual(await client.next(), { type: VscMessageType.Error, readerId: 0, code: 0 });
    await removed;
    await pending;
    await assert.rejects(reader.transmit(Uint8Array.of(0, 0xb0, 0, 0, 0)), NoCardError);

    const closed = once(reader, 'close');
    client.send({ type: VscMessageType.ReaderRemove, readerId: 0 });
    assert.deepEqual(await client.next(), { type: VscMessageType.Error, readerId: 0, code: 0 });
    await closed;
  } finally {
    client.close();
    await server.close();
  }
});

test('bad client does not disturb others', async () => {
  const { server, port, readers } = await startServer();
  const good = await FakeClient.open(port);
  const bad = await FakeClient.open(port);
  try {
    await good.handshake();
    good.send({ type: VscMessageType.ReaderAdd, readerId: 0, name: 'good' });
    await good.next();
    good.send({ type: VscMessageType.Atr, readerId: 0, atr: CAC_ATR });
    await good.next();

    await bad.handshake();
    bad.send({ type: VscMessageType.ReaderAdd, readerId: 0, name: 'bad' });
    await bad.next();
    const badReader = readers[1]!;
    const badClosed = once(badReader, 'close');
    // Type 0x2A does not exist: the server answers GENERAL_ERROR and drops the connection.
    bad.socket.write(Uint8Array.of(0, 0, 0, 0x2a, 0, 0, 0, 0, 0, 0, 0, 0));
    assert.deepEqual(await bad.next(), { type: VscMessageType.Error, readerId: 0xffffffff, code: 1 });
    await badClosed;
    const deadline = Date.now() + 2000;
    while (!bad.closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.ok(bad.closed, 'the bad client was disconnected');

    const goodReader = readers[0]!;
    const response = goodReader.transmit(Uint8Array.of(0x80, 0xca, 0x9f, 0x7f, 0x00));
    await good.next();
    good.send({ type: VscMessageType.Apdu, readerId: 0, apdu: Uint8Array.of(0x90, 0x00) });
    assert.deepEqual([...(await response)], [0x90, 0x00]);
  } finally {
    good.close();
    bad.close();
    await server.close();
  }
});

test('disconnect closes the client reader', async () => {
  const { server, port, readers } = await startServer();
  const client = await FakeClient.open(port);
  try {
    await client.handshake();
    client.send({ type: VscMessageType.ReaderAdd, readerId: 0, name: '' });
    await client.next();
    const closed = once(readers[0]!, 'close');
    client.close();
    await closed;
  } finally {
    await server.close();
  }
});

test('passthru ATR check matches QEMU', () => {
  const accepted = [
    '3b7a18000073667465206364313434',
    '3bd518ff8091fe1fc38073c8211308',
    '3b8900' + Buffer.from('VCARD_NSS').toString('hex'),
    '3b88800100000000000000000009',
    '3b021450',
    // QEMU reads no interface bytes when the ATR has no room for them, so this truncated ATR passes.
    '3bf0',
  ];
  for (const atr of accepted) assert.equal(checkPassthruAtr(Buffer.from(atr, 'hex')), undefined, atr);
  const rejected = ['3b', '3c00', '3b0501', '3b71112233'];
  for (const atr of rejected) assert.notEqual(checkPassthruAtr(Buffer.from(atr, 'hex')), undefined, atr);
});

test('server serves many clients at once', async () => {
  const { server, port, readers } = await startServer();
  const clients = await Promise.all(Array.from({ length: 20 }, () => FakeClient.open(port)));
  try {
    for (const [index, client] of clients.entries()) {
      await client.handshake();
      client.send({ type: VscMessageType.ReaderAdd, readerId: 0, name: `client ${index}` });
      assert.deepEqual(await client.next(), { type: VscMessageType.Error, readerId: 0, code: 0 });
      client.send({ type: VscMessageType.Atr, readerId: 0, atr: CAC_ATR });
      assert.deepEqual(await client.next(), { type: VscMessageType.Error, readerId: 0, code: 0 });
    }
    assert.equal(readers.length, clients.length);
    assert.equal(server.connectionCount, clients.length);

    // Every reader's command goes to its own client, and each answer comes back to the right reader.
    const responses = readers.map((reader, index) => reader.transmit(Uint8Array.of(0x00, 0xb0, 0x00, index)));
    for (const [index, client] of clients.entries()) {
      const command = await client.next();
      assert.equal(command.type, VscMessageType.Apdu);
      assert.equal(command.type === VscMessageType.Apdu ? command.apdu[3] : -1, index, `client ${index} got its reader's command`);
      client.send({ type: VscMessageType.Apdu, readerId: 0, apdu: Uint8Array.of(index, 0x90, 0x00) });
    }
    const answers = await Promise.all(responses);
    answers.forEach((answer, index) => assert.deepEqual([...answer], [index, 0x90, 0x00]));
  } finally {
    for (const client of clients) client.close();
    await server.close();
  }
});

/** Connects a client, adds a reader named `name` and inserts the CAC card. */
async function openCardClient(port: number, name: string): Promise<FakeClient> {
  const client = await FakeClient.open(port);
  await client.handshake();
  client.send({ type: VscMessageType.ReaderAdd, readerId: 0, name });
  assert.deepEqual(await client.next(), { type: VscMessageType.Error, readerId: 0, code: 0 });
  client.send({ type: VscMessageType.Atr, readerId: 0, atr: CAC_ATR });
  assert.deepEqual(await client.next(), { type: VscMessageType.Error, readerId: 0, code: 0 });
  return client;
}

test('flood and dropped client spare others', async () => {
  const { server, port, readers } = await startServer();
  const good = await openCardClient(port, 'good');
  const dropper = await openCardClient(port, 'dropper');
  const flooder = await openCardClient(port, 'flooder');
  const [goodReader, dropperReader] = readers;
  assert.ok(goodReader !== undefined, 'the good client has a reader');
  assert.ok(dropperReader !== undefined, 'the dropping client has a reader');
  let sampler: NodeJS.Timeout | undefined;
  try {
    // The good client answers each command with its last two bytes and 90 00, so a misrouted answer shows.
    // Like virtcard client, answer without Nagle's delay, so the time bound measures the server.
    good.socket.setNoDelay(true);
    let goodAnswered = 0;
    const answerLoop = (async (): Promise<void> => {
      for (;;) {
        const message = await good.next().catch(() => undefined);
        if (message === undefined || message.type !== VscMessageType.Apdu) return;
        good.send({ type: VscMessageType.Apdu, readerId: 0, apdu: Uint8Array.of(...message.apdu.subarray(-2), 0x90, 0x00) });
        goodAnswered++;
      }
    })();

    // The flooder stops reading and writes 8 MiB of VSC_Init requests, each of which gets a reply,
    // followed by 100 000 response APDUs that no command asked for.
    flooder.socket.pause();
    const init = encodeMessage({ type: VscMessageType.Init, readerId: 0, version: VSCARD_VERSION, capabilities: [] });
    const strayApdu = encodeMessage({ type: VscMessageType.Apdu, readerId: 0, apdu: Uint8Array.of(0x90, 0x00) });
    const initCount = Math.ceil((8 * 1024 * 1024) / init.length);
    flooder.socket.write(Buffer.concat(Array.from({ length: initCount }, () => init)));
    flooder.socket.write(Buffer.concat(Array.from({ length: 100_000 }, () => strayApdu)));
    let maxQueued = 0;
    sampler = setInterval(() => (maxQueued = Math.max(maxQueued, server.queuedReplyBytes)), 5);

    // The dropper disconnects while its command is outstanding.
    const dropped = dropperReader.transmit(Uint8Array.of(0x00, 0xb0, 0x00, 0x00));
    const droppedCommand = await dropper.next();
    assert.equal(droppedCommand.type, VscMessageType.Apdu);
    dropper.close();
    await assert.rejects(dropped, NoCardError, 'the outstanding command of the disconnected client fails');

    // 500 commands from the good reader, four at a time, each with its own answer.
    const started = Date.now();
    for (let batch = 0; batch < 125; batch++) {
      const numbers = [0, 1, 2, 3].map((offset) => batch * 4 + offset);
      const answers = await Promise.all(numbers.map((n) => goodReader.transmit(Uint8Array.of(0x00, 0xb0, n >> 8, n & 0xff))));
      answers.forEach((answer, index) => {
        const n = numbers[index]!;
        assert.deepEqual([...answer], [n >> 8, n & 0xff, 0x90, 0x00], `answer to command ${n}`);
      });
    }
    const elapsedMs = Date.now() - started;
    assert.ok(elapsedMs < 5000, `500 commands took ${elapsedMs} ms during the flood; expected under 5000 ms`);
    assert.equal(goodAnswered, 500);

    // The flooder is back-pressured: the server stopped reading it before its 8 MiB were consumed.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(flooder.socket.writableLength > 0, 'the flooder wrote everything, so the server kept reading it');
    assert.ok(
      maxQueued < 4 * MAX_QUEUED_REPLY_BYTES,
      `the server queued up to ${maxQueued} reply bytes; expected under ${4 * MAX_QUEUED_REPLY_BYTES}`,
    );
    assert.equal(server.connectionCount, 2, 'the good client and the flooder stay connected');

    good.close();
    await answerLoop;
  } finally {
    clearInterval(sampler);
    good.close();
    dropper.close();
    flooder.close();
    await server.close();
  }
});
