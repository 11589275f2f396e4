import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { ECHO_ATR, EchoReader } from '../../src/reader/echo-reader.js';
import { VpcdCard } from '../../src/transports/vpcd.js';
import { VpcdFrameDecoder, encodeVpcdFrame } from '../../src/transports/vpcd-codec.js';

/** One connection the fake vpcd accepted, with a request/response helper. */
class PeerConnection {
  private readonly decoder = new VpcdFrameDecoder();
  private readonly received: Buffer[] = [];
  private waiter: (() => void) | undefined;
  readonly closed: Promise<void>;

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received.push(...this.decoder.push(chunk));
      this.waiter?.();
    });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  /** Sends one vpcd message and, unless `expectReply` is false, returns the card's reply. */
  async request(payload: Uint8Array, expectReply = true): Promise<Buffer | undefined> {
    this.socket.write(encodeVpcdFrame(payload));
    if (!expectReply) return undefined;
    while (this.received.length === 0) {
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
    return this.received.shift();
  }
}

/** A vpcd stand-in: a loopback TCP server that hands out each accepted connection. */
class FakeVpcd {
  readonly connections: PeerConnection[] = [];
  private server: Server;
  private waiter: (() => void) | undefined;

  constructor() {
    this.server = createServer((socket) => {
      this.connections.push(new PeerConnection(socket));
      this.waiter?.();
    });
  }

  async listen(port = 0): Promise<number> {
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
    return (this.server.address() as AddressInfo).port;
  }

  /** Waits until the server has accepted `count` connections in total and returns the last. */
  async connection(count: number): Promise<PeerConnection> {
    while (this.connections.length < count) {
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
    return this.connections[count - 1]!;
  }

  async close(): Promise<void> {
    for (const connection of this.connections) connection.socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Creates a logger that keeps every record in memory, so tests can check what was logged. */
function memoryLogger(): { logger: pino.Logger; records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      records.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      callback();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), records };
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const SELECT = Uint8Array.from([0x00, 0xa4, 0x04, 0x00, 0x02, 0x3f, 0x00]);

test('vpcd card answers control and APDUs', async () => {
  const vpcd = new FakeVpcd();
  const port = await vpcd.listen();
  const reader = new EchoReader();
  const card = new VpcdCard(reader, { port, logger: memoryLogger().logger });
  card.start();
  try {
    const peer = await vpcd.connection(1);

    const atr = await peer.request(Uint8Array.of(0x04));
    assert.deepEqual([...atr!], [...ECHO_ATR]);

    await peer.request(Uint8Array.of(0x01), false);
    const response = await peer.request(SELECT);
    assert.deepEqual([...response!], [...SELECT, 0x90, 0x00]);
    assert.equal(reader.powered, true, 'power on reached the reader before the APDU');

    await peer.request(Uint8Array.of(0x00), false);
    await peer.request(Uint8Array.of(0x04));
    assert.equal(reader.powered, false, 'power off reached the reader');
    assert.equal(reader.transmitted, 1);
  } finally {
    await card.stop();
    await vpcd.close();
  }
});

test('vpcd card ignores empty and unknown messages', async () => {
  const vpcd = new FakeVpcd();
  const port = await vpcd.listen();
  const { logger, records } = memoryLogger();
  const card = new VpcdCard(new EchoReader(), { port, logger });
  card.start();
  try {
    const peer = await vpcd.connection(1);
    await peer.request(new Uint8Array(0), false);
    await peer.request(Uint8Array.of(0x03), false);
    const atr = await peer.request(Uint8Array.of(0x04));
    assert.deepEqual([...atr!], [...ECHO_ATR], 'the next request gets its own reply');
    assert.ok(records.some((record) => record['msg'] === 'ignoring an empty vpcd message'));
    assert.ok(records.some((record) => record['code'] === 3));
  } finally {
    await card.stop();
    await vpcd.close();
  }
});

test('vpcd peer closing mid-frame is survived', async () => {
  const vpcd = new FakeVpcd();
  const port = await vpcd.listen();
  const { logger, records } = memoryLogger();
  const card = new VpcdCard(new EchoReader(), { port, logger, initialRetryDelayMs: 10 });
  card.start();
  try {
    const first = await vpcd.connection(1);
    first.socket.end(encodeVpcdFrame(SELECT).subarray(0, 4));

    const second = await vpcd.connection(2);
    const response = await second.request(SELECT);
    assert.deepEqual([...response!], [...SELECT, 0x90, 0x00]);

    const warning = records.find((record) => typeof record['msg'] === 'string' && record['msg'].includes('middle of a frame'));
    assert.ok(warning, 'the truncated frame was logged');
    assert.equal(warning['bufferedBytes'], 4);
    assert.ok(records.some((record) => record['msg'] === 'disconnected from vpcd'));
  } finally {
    await card.stop();
    await vpcd.close();
  }
});

test('vpcd card retries until vpcd listens', async () => {
  const port = await freePort();
  const { logger, records } = memoryLogger();
  const card = new VpcdCard(new EchoReader(), { port, logger, initialRetryDelayMs: 10, maxRetryDelayMs: 40 });
  card.start();
  const vpcd = new FakeVpcd();
  try {
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(card.connected, false);
    const failures = records.filter((record) => record['error'] === 'ECONNREFUSED');
    assert.ok(failures.length >= 3, `expected several refused attempts, saw ${failures.length}`);
    const delays = failures.map((record) => Number(record['retryInMs']));
    assert.ok(Math.max(...delays) <= 40, `retry delay stays capped: ${delays.join(',')}`);

    await vpcd.listen(port);
    const peer = await vpcd.connection(1);
    const atr = await peer.request(Uint8Array.of(0x04));
    assert.deepEqual([...atr!], [...ECHO_ATR]);
  } finally {
    await card.stop();
    await vpcd.close();
  }
});

test('vpcd card follows card removal', async () => {
  const vpcd = new FakeVpcd();
  const port = await vpcd.listen();
  const reader = new EchoReader('virtcard echo', ECHO_ATR, { inserted: false });
  const card = new VpcdCard(reader, { port, logger: memoryLogger().logger, initialRetryDelayMs: 10 });
  card.start();
  try {
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(vpcd.connections.length, 0, 'no connection without a card');

    reader.insert();
    const first = await vpcd.connection(1);
    assert.ok(await first.request(Uint8Array.of(0x04)));

    reader.remove();
    await first.closed;
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(vpcd.connections.length, 1, 'no reconnect while the slot is empty');

    reader.insert();
    const second = await vpcd.connection(2);
    assert.deepEqual([...(await second.request(Uint8Array.of(0x04)))!], [...ECHO_ATR]);
  } finally {
    await card.stop();
    await vpcd.close();
  }
});

test('vpcd card disconnects on NoCardError', async () => {
  const vpcd = new FakeVpcd();
  const port = await vpcd.listen();
  const reader = new EchoReader();
  const card = new VpcdCard(reader, { port, logger: memoryLogger().logger });
  card.start();
  try {
    const peer = await vpcd.connection(1);
    // Empty the slot without the 'remove' event, as a racing reader might.
    (reader as unknown as { present: boolean }).present = false;
    await peer.request(SELECT, false);
    await peer.closed;
    assert.equal(card.connected, false);
  } finally {
    await card.stop();
    await vpcd.close();
  }
});

test('vpcd card stop closes connection', async () => {
  const vpcd = new FakeVpcd();
  const port = await vpcd.listen();
  const card = new VpcdCard(new EchoReader(), { port, logger: memoryLogger().logger, initialRetryDelayMs: 10 });
  card.start();
  const peer = await vpcd.connection(1);
  await card.stop();
  await peer.closed;
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(vpcd.connections.length, 1, 'no reconnect after stop');
  await vpcd.close();
});

test('vpcd card stops on reader close', async () => {
  const vpcd = new FakeVpcd();
  const port = await vpcd.listen();
  const reader = new EchoReader();
  const { logger, records } = memoryLogger();
  const card = new VpcdCard(reader, { port, logger, initialRetryDelayMs: 10 });
  card.start();
  try {
    const peer = await vpcd.connection(1);
    reader.emit('close');
    await peer.closed;
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(vpcd.connections.length, 1, 'no reconnect after the reader closed');
    assert.ok(records.some((record) => record['msg'] === 'stopped serving card to vpcd'));
  } finally {
    await card.stop();
    await vpcd.close();
  }
});

test('vpcd card reconnects on quick reinsert', async () => {
  const vpcd = new FakeVpcd();
  const port = await vpcd.listen();
  const reader = new EchoReader();
  const card = new VpcdCard(reader, { port, logger: memoryLogger().logger, initialRetryDelayMs: 10 });
  card.start();
  try {
    const first = await vpcd.connection(1);
    reader.remove();
    reader.insert();
    await first.closed;
    const second = await vpcd.connection(2);
    assert.deepEqual([...(await second.request(Uint8Array.of(0x04)))!], [...ECHO_ATR]);
  } finally {
    await card.stop();
    await vpcd.close();
  }
});
