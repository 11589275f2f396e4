import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { writeDirect } from '../../src/transports/direct-write.js';

const linux = process.platform === 'linux';

interface Loopback {
  server: Server;
  client: Socket;
  /** Resolves with the first `length` bytes the server side receives. */
  received(length: number): Promise<Buffer>;
}

async function openLoopback(): Promise<Loopback> {
  const chunks: Buffer[] = [];
  let waiting: { length: number; resolve: (bytes: Buffer) => void } | undefined;
  const check = (): void => {
    const bytes = Buffer.concat(chunks);
    if (waiting !== undefined && bytes.length >= waiting.length) waiting.resolve(bytes.subarray(0, waiting.length));
  };
  const server = createServer((peer) => {
    peer.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      check();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  const received = (length: number): Promise<Buffer> =>
    new Promise((resolve) => {
      waiting = { length, resolve };
      check();
    });
  return { server, client, received };
}

function close(loopback: Loopback): void {
  loopback.client.destroy();
  loopback.server.close();
}

test('direct write on idle socket', { skip: linux ? false : 'the direct path exists only on Linux' }, async () => {
  const loopback = await openLoopback();
  try {
    await once(loopback.client, 'connect');
    const message = Buffer.from('0002900000026a82', 'hex');

    assert.equal(writeDirect(loopback.client, message), true);
    assert.equal(loopback.client.writableLength, 0);
    assert.deepEqual(await loopback.received(message.length), message);
  } finally {
    close(loopback);
  }
});

test('direct write queues behind corked bytes', async () => {
  const loopback = await openLoopback();
  try {
    await once(loopback.client, 'connect');
    const first = Buffer.from('first;');
    const second = Buffer.from('second;');
    const third = Buffer.from('third');

    loopback.client.cork();
    loopback.client.write(first);
    assert.equal(writeDirect(loopback.client, second), false, 'a corked socket must take the stream path');
    loopback.client.uncork();
    // The stream may still hold bytes here, and writeDirect must then queue behind them.
    writeDirect(loopback.client, third);

    const expected = Buffer.concat([first, second, third]);
    assert.equal((await loopback.received(expected.length)).toString(), expected.toString());
  } finally {
    close(loopback);
  }
});

test('direct write before connect queues', async () => {
  const loopback = await openLoopback();
  try {
    const message = Buffer.from('sent while connecting');

    assert.equal(loopback.client.connecting, true);
    assert.equal(writeDirect(loopback.client, message), false);
    assert.equal((await loopback.received(message.length)).toString(), message.toString());
  } finally {
    close(loopback);
  }
});

test('direct write to reset peer fails over', { skip: linux ? false : 'the direct path exists only on Linux' }, async () => {
  // The peer closes with a reset (SO_LINGER 0) once the client is connected.
  const server = createServer((peer) => setTimeout(() => peer.resetAndDestroy(), 20));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  // Paused before it connects, the socket never starts reading.
  client.pause();
  try {
    await once(client, 'connect');
    // The client reads nothing, so Node has not seen the reset yet and the socket stays open.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(client.destroyed, false);
    const failed = once(client, 'error');

    assert.equal(writeDirect(client, Buffer.from('ping')), false, 'a failed write(2) must not count as written');
    const [error] = (await failed) as [NodeJS.ErrnoException];
    assert.match(String(error.code), /^(EPIPE|ECONNRESET)$/, 'socket.write must report what write(2) hit');
  } finally {
    client.destroy();
    server.close();
  }
});

test('direct write after end fails', async () => {
  const loopback = await openLoopback();
  try {
    await once(loopback.client, 'connect');
    loopback.client.end();
    const failed = once(loopback.client, 'error');

    assert.equal(writeDirect(loopback.client, Buffer.from('late')), false);
    const [error] = (await failed) as [NodeJS.ErrnoException];
    assert.equal(error.code, 'ERR_STREAM_WRITE_AFTER_END');
  } finally {
    close(loopback);
  }
});
