/**
 * Opens COUNT VSCard client connections to a VSCard server, each with one
 * reader and an echo card (every APDU comes back followed by 90 00), and
 * keeps them open until SIGTERM or SIGINT. Prints "ready" once every
 * client has sent its ATR.
 *
 *   node dist/bench/vscard-echo-clients.js PORT COUNT
 */
import { connect, type Socket } from 'node:net';
import { VscDecoder } from '../src/vscard/decoder.js';
import { encodeMessage } from '../src/vscard/encode.js';
import { MINIMAL_READER_ID, UNDEFINED_READER_ID, VSCARD_VERSION, VscMessageType } from '../src/vscard/protocol.js';
import { ECHO_ATR } from '../src/reader/echo-reader.js';

/** Connections opened at once: well below Node's default listen backlog of 511. */
const CONNECT_BATCH = 50;

function startClient(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    const decoder = new VscDecoder();
    socket.once('error', reject);
    socket.on('connect', () => {
      socket.write(encodeMessage({ type: VscMessageType.Init, readerId: UNDEFINED_READER_ID, version: VSCARD_VERSION, capabilities: [0] }));
      socket.write(encodeMessage({ type: VscMessageType.ReaderAdd, readerId: UNDEFINED_READER_ID, name: 'bench echo' }));
      socket.write(encodeMessage({ type: VscMessageType.Atr, readerId: MINIMAL_READER_ID, atr: ECHO_ATR }));
      resolve(socket);
    });
    socket.on('data', (chunk: Buffer) => {
      decoder.push(chunk);
      for (let message = decoder.next(); message !== undefined; message = decoder.next()) {
        if (message.type !== VscMessageType.Apdu) continue;
        const response = new Uint8Array(message.apdu.length + 2);
        response.set(message.apdu, 0);
        response[message.apdu.length] = 0x90;
        socket.write(encodeMessage({ type: VscMessageType.Apdu, readerId: message.readerId, apdu: response }));
      }
    });
  });
}

async function main(): Promise<void> {
  const [portText, countText] = process.argv.slice(2);
  const port = Number(portText);
  const count = Number(countText);
  if (!Number.isInteger(port) || !Number.isInteger(count) || count < 1) throw new Error('usage: vscard-echo-clients PORT COUNT');

  const sockets: Socket[] = [];
  for (let started = 0; started < count; started += CONNECT_BATCH) {
    const batch = Math.min(CONNECT_BATCH, count - started);
    sockets.push(...(await Promise.all(Array.from({ length: batch }, () => startClient(port)))));
  }
  console.log('ready');

  const stop = (): void => {
    for (const socket of sockets) socket.destroy();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
