/**
 * A vpcd echo card with the minimum of work a Node.js card needs, as the
 * floor of the vpcd round-trip rows: one `onread` callback, frames parsed
 * in place, every APDU returned with 90 00, and the same direct writes and
 * TCP_QUICKACK calls as `VpcdCard` (after each write, and after a read that
 * leaves a partial frame).
 * No reader, no promise, no logging. Runs until SIGTERM or SIGINT.
 *
 *   node dist/bench-bundle/vpcd-minimal-echo-card.js PORT
 */
import { connect, type Socket } from 'node:net';
import { writeDirect } from '../src/transports/direct-write.js';
import { armTcpQuickAck } from '../src/transports/tcp-quickack.js';

/** ATR of the echo card: a T=1 card with no historical bytes. */
const ATR = Uint8Array.of(0x3b, 0x80, 0x80, 0x01, 0x01);
const VPCD_GET_ATR = 0x04;

function frame(payloadLength: number): Buffer {
  const bytes = Buffer.allocUnsafe(2 + payloadLength);
  bytes[0] = payloadLength >> 8;
  bytes[1] = payloadLength & 0xff;
  return bytes;
}

function serve(port: number): Socket {
  let partial = Buffer.alloc(0);
  const socket: Socket = connect({
    host: '127.0.0.1',
    port,
    onread: {
      buffer: Buffer.allocUnsafe(2 + 0xffff),
      callback: (bytesRead: number, buffer: Uint8Array): boolean => {
        const received = buffer.subarray(0, bytesRead);
        const bytes = partial.length === 0 ? received : Buffer.concat([partial, received]);
        let offset = 0;
        while (bytes.length - offset >= 2) {
          const length = (bytes[offset]! << 8) | bytes[offset + 1]!;
          if (bytes.length - offset - 2 < length) break;
          if (length > 1) {
            const response = frame(length + 2);
            response.set(bytes.subarray(offset + 2, offset + 2 + length), 2);
            response[2 + length] = 0x90;
            response[3 + length] = 0x00;
            writeDirect(socket, response);
            armTcpQuickAck(socket);
          } else if (length === 1 && bytes[offset + 2] === VPCD_GET_ATR) {
            const response = frame(ATR.length);
            response.set(ATR, 2);
            writeDirect(socket, response);
            armTcpQuickAck(socket);
          }
          offset += 2 + length;
        }
        partial = Buffer.from(bytes.subarray(offset));
        if (partial.length > 0) armTcpQuickAck(socket);
        return true;
      },
    },
  });
  socket.setNoDelay(true);
  socket.once('connect', () => armTcpQuickAck(socket));
  return socket;
}

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: vpcd-minimal-echo-card PORT (the TCP port of the vpcd slot)');
  process.exit(2);
}
const socket = serve(port);
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => socket.destroy());
