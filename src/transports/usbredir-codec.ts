/**
 * usbredir packet framing: a streaming decoder that splits received bytes
 * into packets, and an encoder. The id field is 32 bits until both sides
 * have exchanged hellos announcing `cap_64bits_ids`, then 64 bits; the
 * caller switches the width with `idBits` after the hello exchange.
 * Pure functions and buffers, no I/O.
 */
import { MAX_PACKET_LENGTH, UsbredirType } from './usbredir-protocol.js';

/** One packet: its type, id and the bytes after the header (type-specific header, then data). */
export interface UsbredirPacket {
  type: UsbredirType;
  id: bigint;
  body: Uint8Array;
}

/** Raised when received bytes are not valid usbredir framing. */
export class UsbredirProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsbredirProtocolError';
  }
}

function headerLength(idBits: 32 | 64): number {
  return idBits === 64 ? 16 : 12;
}

/** Encodes one packet with a header of the given id width. */
export function encodeUsbredirPacket(type: UsbredirType, id: bigint, body: Uint8Array, idBits: 32 | 64): Uint8Array {
  const length = headerLength(idBits);
  const bytes = new Uint8Array(length + body.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, type, true);
  view.setUint32(4, body.length, true);
  if (idBits === 64) view.setBigUint64(8, id, true);
  else view.setUint32(8, Number(id & 0xffffffffn), true);
  bytes.set(body, length);
  return bytes;
}

export class UsbredirDecoder {
  private buffer = new Uint8Array(0);
  /** Width of the id field of the packets still to come. */
  idBits: 32 | 64 = 32;

  push(chunk: Uint8Array): void {
    if (this.buffer.length === 0) {
      this.buffer = Uint8Array.from(chunk);
      return;
    }
    const joined = new Uint8Array(this.buffer.length + chunk.length);
    joined.set(this.buffer, 0);
    joined.set(chunk, this.buffer.length);
    this.buffer = joined;
  }

  /**
   * Returns the next complete packet, or undefined when more bytes are
   * needed. Throws `UsbredirProtocolError` for a packet longer than
   * `MAX_PACKET_LENGTH`.
   */
  next(): UsbredirPacket | undefined {
    const length = headerLength(this.idBits);
    if (this.buffer.length < length) return undefined;
    const view = new DataView(this.buffer.buffer, this.buffer.byteOffset, length);
    const type = view.getUint32(0, true) as UsbredirType;
    const bodyLength = view.getUint32(4, true);
    if (bodyLength > MAX_PACKET_LENGTH) {
      throw new UsbredirProtocolError(`usbredir packet of type ${type} announces ${bodyLength} bytes, more than the ${MAX_PACKET_LENGTH} accepted`);
    }
    if (this.buffer.length < length + bodyLength) return undefined;
    const id = this.idBits === 64 ? view.getBigUint64(8, true) : BigInt(view.getUint32(8, true));
    const body = this.buffer.slice(length, length + bodyLength);
    this.buffer = this.buffer.subarray(length + bodyLength);
    return { type, id, body };
  }
}
