/**
 * Measures the VSCard streaming decoder in MB/s on a stream of APDU
 * messages fed in TCP-sized chunks, against a plain copy of the same chunks
 * into one buffer (what any decoder must at least do).
 */
import { VscDecoder } from '../src/vscard/decoder.js';
import { encodeMessage } from '../src/vscard/encode.js';
import { VscMessageType } from '../src/vscard/protocol.js';

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

/** Returns decoder and copy throughput in MB/s, measured alternately in this process. */
export function measureVscardDecode(seconds: number): { decoderMBps: number; copyMBps: number } {
  const chunks = buildChunks(20_000);
  const bytes = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  const target = new Uint8Array(bytes);
  const decoderMBps = throughput(bytes, seconds, () => decodeAll(chunks));
  const copyMBps = throughput(bytes, seconds, () => copyAll(chunks, target));
  return { decoderMBps, copyMBps };
}
