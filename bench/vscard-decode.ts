/**
 * Measures the VSCard streaming decoder in MB/s on a stream of APDU
 * messages fed in TCP-sized chunks, against two copies of the same bytes
 * into one buffer. The message-by-message copy reads each length field and
 * copies each message, which a decoder that delivers every message's bytes
 * must at least do. The chunk-by-chunk copy shows memory bandwidth, with
 * no framing.
 */
import { VscDecoder } from '../src/vscard/decoder.js';
import { encodeMessage } from '../src/vscard/encode.js';
import { HEADER_LENGTH, VscMessageType } from '../src/vscard/protocol.js';

/** Size of the chunks the stream is cut into, as a socket would deliver it. */
const CHUNK_SIZE = 16 * 1024;

/** Builds a stream of `count` APDU messages of varied sizes, cut into chunks. */
function buildChunks(count: number): Uint8Array[] {
  const messages: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const apdu = new Uint8Array(5 + ((i * 37) % 300));
    apdu.fill(i & 0xff);
    messages.push(encodeMessage({ type: VscMessageType.Apdu, readerId: 0, apdu }));
  }
  const stream = Buffer.concat(messages);
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < stream.length; offset += CHUNK_SIZE) chunks.push(stream.subarray(offset, offset + CHUNK_SIZE));
  return chunks;
}

function decodeAll(chunks: readonly Uint8Array[]): number {
  const decoder = new VscDecoder();
  let messages = 0;
  for (const chunk of chunks) {
    decoder.push(chunk);
    while (decoder.next() !== undefined) messages++;
  }
  return messages;
}

function copyAll(chunks: readonly Uint8Array[], target: Uint8Array): number {
  let offset = 0;
  for (const chunk of chunks) {
    target.set(chunk, offset);
    offset += chunk.length;
  }
  return offset;
}

/**
 * Copies the stream into `target` message by message: reads each 12-byte
 * header for the payload length and copies the message's bytes with one
 * `set` per message, or per piece where a message spans chunks.
 */
function copyMessagesAll(chunks: readonly Uint8Array[], target: Uint8Array): number {
  const header = new Uint8Array(HEADER_LENGTH);
  let offset = 0;
  let headerFilled = 0;
  let payloadLeft = 0;
  for (const chunk of chunks) {
    let position = 0;
    while (position < chunk.length) {
      if (payloadLeft > 0) {
        const take = Math.min(payloadLeft, chunk.length - position);
        target.set(chunk.subarray(position, position + take), offset);
        offset += take;
        position += take;
        payloadLeft -= take;
        continue;
      }
      if (headerFilled === 0 && chunk.length - position >= HEADER_LENGTH) {
        const length = ((chunk[position + 8]! << 24) | (chunk[position + 9]! << 16) | (chunk[position + 10]! << 8) | chunk[position + 11]!) >>> 0;
        const take = Math.min(HEADER_LENGTH + length, chunk.length - position);
        target.set(chunk.subarray(position, position + take), offset);
        offset += take;
        position += take;
        payloadLeft = HEADER_LENGTH + length - take;
        continue;
      }
      // The header spans two chunks.
      const take = Math.min(HEADER_LENGTH - headerFilled, chunk.length - position);
      header.set(chunk.subarray(position, position + take), headerFilled);
      target.set(chunk.subarray(position, position + take), offset);
      headerFilled += take;
      offset += take;
      position += take;
      if (headerFilled === HEADER_LENGTH) {
        payloadLeft = ((header[8]! << 24) | (header[9]! << 16) | (header[10]! << 8) | header[11]!) >>> 0;
        headerFilled = 0;
      }
    }
  }
  return offset;
}

/** Returns MB/s of `work` over `bytes` bytes, repeating it for about `seconds` seconds. */
function throughput(bytes: number, seconds: number, work: () => number): number {
  for (let i = 0; i < 3; i++) work(); // warm-up for the JIT
  let rounds = 0;
  const started = process.hrtime.bigint();
  let elapsed = 0;
  let sink = 0;
  do {
    sink += work();
    rounds++;
    elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  } while (elapsed < seconds);
  if (sink === 0) throw new Error('the measured work did nothing');
  return (bytes * rounds) / elapsed / 1e6;
}

/** Throughput of the decoder and of both copies, in MB/s. */
export interface VscardDecodeRates {
  decoderMBps: number;
  /** Copy message by message (the reference of the target). */
  messageCopyMBps: number;
  /** Copy chunk by chunk. */
  chunkCopyMBps: number;
}

/** Measures the decoder and both copies one after the other in this process. */
export function measureVscardDecode(seconds: number): VscardDecodeRates {
  const chunks = buildChunks(20_000);
  const bytes = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  const target = new Uint8Array(bytes);
  const decoderMBps = throughput(bytes, seconds, () => decodeAll(chunks));
  const messageCopyMBps = throughput(bytes, seconds, () => copyMessagesAll(chunks, target));
  const chunkCopyMBps = throughput(bytes, seconds, () => copyAll(chunks, target));
  return { decoderMBps, messageCopyMBps, chunkCopyMBps };
}
