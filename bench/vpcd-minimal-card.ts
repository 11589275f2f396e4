/**
 * The minimum of work a Node.js card behind vpcd needs, as the floor of the
 * vpcd rows. It has one `onread` callback and parses frames in place. It
 * makes the same direct writes and TCP_QUICKACK calls as `VpcdCard`: after
 * each write, and after a read that leaves a partial frame. There is no
 * reader, no promise and no logging. The caller supplies the ATR and a
 * synchronous function that returns the response APDU to each command APDU.
 */
import { connect, type Socket } from 'node:net';
import { writeDirect } from '../src/transports/direct-write.js';
import { armTcpQuickAck } from '../src/transports/tcp-quickack.js';
import { VpcdControl, encodeVpcdFrame } from '../src/transports/vpcd-codec.js';

/** Connects to the vpcd slot on 127.0.0.1:`port` and serves until the socket closes. */
export function serveMinimalVpcdCard(port: number, atr: Uint8Array, respond: (command: Uint8Array) => Uint8Array): Socket {
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

          // 1-byte messages are vpcd's control codes, and only GET ATR gets a response.
          const payload = bytes.subarray(offset + 2, offset + 2 + length);
          if (length > 1) {
            writeDirect(socket, encodeVpcdFrame(respond(payload)));
            armTcpQuickAck(socket);
          } else if (length === 1 && payload[0] === VpcdControl.getAtr) {
            writeDirect(socket, encodeVpcdFrame(atr));
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

/** Reads the vpcd port from the command line, or exits with the usage line. */
export function portArgument(value: string | undefined, usage: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    console.error(`usage: ${usage}`);
    process.exit(2);
  }
  return port;
}
