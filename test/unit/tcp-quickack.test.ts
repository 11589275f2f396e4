import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { connect, createServer, type AddressInfo } from 'node:net';
import { armTcpQuickAck } from '../../src/transports/tcp-quickack.js';

const linux = process.platform === 'linux';

const IPPROTO_TCP = 6;
const TCP_QUICKACK = 12;

function libc() {
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  return koffi.load('libc.so.6');
}

/** Clears TCP_QUICKACK, which puts the socket in delayed-ACK mode. */
function clearQuickAck(fd: number): void {
  const setsockopt = libc().func('int setsockopt(int fd, int level, int optname, const void *optval, uint32_t optlen)');
  const result = setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, new Int32Array([0]), 4) as number;
  assert.equal(result, 0, 'setsockopt(TCP_QUICKACK, 0) failed');
}

/** Reads TCP_QUICKACK back with getsockopt(2), so the test checks the kernel's view. */
function readQuickAck(fd: number): number {
  const getsockopt = libc().func('int getsockopt(int fd, int level, int optname, _Out_ void *optval, _Inout_ uint32_t *optlen)');
  const value = new Int32Array(1);
  const length = [4];
  const result = getsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, value, length) as number;
  assert.equal(result, 0, 'getsockopt(TCP_QUICKACK) failed');
  return value[0]!;
}

test('quickack set on connected socket', { skip: linux ? false : 'TCP_QUICKACK exists only on Linux' }, async () => {
  const server = createServer((peer) => peer.end());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  try {
    await once(socket, 'connect');
    const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;

    clearQuickAck(fd);
    assert.equal(readQuickAck(fd), 0, 'the socket starts in delayed-ACK mode');

    assert.equal(armTcpQuickAck(socket), true);
    assert.equal(readQuickAck(fd), 1);
  } finally {
    socket.destroy();
    server.close();
  }
});

test('quickack fails without descriptor', () => {
  const socket = connect({ port: 1, host: '127.0.0.1' });
  socket.on('error', () => {});
  socket.destroy();
  assert.equal(armTcpQuickAck(socket), false);
});
