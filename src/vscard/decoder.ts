/**
 * Streaming VSCard decoder. TCP may split a message over several segments
 * or put several messages in one, so bytes are buffered until a whole
 * message is present.
 *
 * The header is checked as soon as its 12 bytes arrive, so an unknown type
 * or an oversized length is reported without waiting for a payload that may
 * never come. After an error the stream cannot be resynchronised (there is
 * no framing besides the header), so the decoder keeps raising that error
 * and the caller should drop the connection.
 */
import { VscProtocolError } from './errors.js';
import {
  HEADER_LENGTH,
  MAX_PAYLOAD_LENGTH,
  VSCARD_MAGIC,
  VscMessageType,
  messageTypeName,
  type VscMessage,
} from './protocol.js';

function hexBytes(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join(' ');
}

const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder();

/** Reads a big-endian unsigned 32-bit integer; the caller checks that 4 bytes are there. */
function readUint32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0;
}

/**
 * Returns a plain Uint8Array over the same memory as `chunk`. Payload views
 * are taken with `subarray`, which on a Buffer would return a Buffer, and
 * callers expect plain Uint8Array payloads. Converting once per chunk is
 * cheap, while constructing a view per message from `.buffer` costs about
 * 1 µs in V8 (Node.js 20).
 */
function plainView(chunk: Uint8Array): Uint8Array {
  if (Object.getPrototypeOf(chunk) === Uint8Array.prototype) return chunk;
  return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

function isKnownType(type: number): type is VscMessageType {
  return Number.isInteger(type) && VscMessageType[type] !== undefined;
}

function requireLength(type: VscMessageType, actual: number, expected: number): void {
  if (actual !== expected) {
    throw new VscProtocolError(
      'invalid-payload',
      `${messageTypeName(type)} must carry ${expected} payload bytes, got ${actual}`,
    );
  }
}

/**
 * Decodes the payload of a message whose header has already been checked.
 * The returned message keeps `payload` itself as its ATR or APDU.
 */
function decodePayload(type: VscMessageType, readerId: number, payload: Uint8Array): VscMessage {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  switch (type) {
    case VscMessageType.Init: {
      if (payload.length < 8 || (payload.length - 8) % 4 !== 0) {
        throw new VscProtocolError(
          'invalid-payload',
          `VSC_Init payload must be 8 bytes (magic, version) plus 4 per capability word, got ${payload.length}`,
        );
      }
      const magic = payload.subarray(0, 4);
      if (!magic.every((byte, index) => byte === VSCARD_MAGIC[index])) {
        throw new VscProtocolError(
          'bad-magic',
          `VSC_Init magic is ${hexBytes(magic)}, expected 56 53 43 44 ("VSCD"): the peer does not speak VSCard`,
        );
      }
      const capabilities: number[] = [];
      for (let offset = 8; offset < payload.length; offset += 4) capabilities.push(view.getUint32(offset));
      return { type, readerId, version: view.getUint32(4), capabilities };
    }
    case VscMessageType.Error:
      requireLength(type, payload.length, 4);
      return { type, readerId, code: view.getUint32(0) };
    case VscMessageType.ReaderAdd: {
      // Some clients NUL-terminate the name, and the terminator is not part of it.
      let end = payload.length;
      while (end > 0 && payload[end - 1] === 0) end--;
      return { type, readerId, name: utf8.decode(payload.subarray(0, end)) };
    }
    case VscMessageType.Atr:
      return { type, readerId, atr: payload };
    case VscMessageType.Apdu:
      return { type, readerId, apdu: payload };
    case VscMessageType.ReaderRemove:
    case VscMessageType.CardRemove:
    case VscMessageType.Flush:
    case VscMessageType.FlushComplete:
      requireLength(type, payload.length, 0);
      return { type, readerId };
  }
}

/**
 * Streaming decoder of VSCard messages.
 *
 * Payload ownership: the `apdu` and `atr` of a message that lies wholly
 * inside one pushed chunk are views (`subarray`) of that chunk, not copies.
 * They stay valid as long as the caller does not modify the chunk, which
 * holds for the fresh Buffers a socket's 'data' event delivers. A message
 * that spans chunks is reassembled in the decoder's own storage and its
 * payload is copied out, because that storage is reused by later pushes.
 */
export class VscDecoder {
  // Unread bytes are source[readStart, readEnd), then `remainder`. The
  // source is either a pushed chunk (borrowed, never written) or the
  // decoder's own storage. The storage receives only the bytes of a message
  // that spans chunks; the rest of the chunk that completes it waits in
  // `remainder` and is read in place afterwards. The storage grows by
  // doubling, so that feeding a large message in small pieces stays linear
  // in time.
  private source: Uint8Array = EMPTY;
  private readStart = 0;
  private readEnd = 0;
  private borrowed = true;
  private remainder: Uint8Array | undefined;
  private storage = new Uint8Array(256);
  private failure: VscProtocolError | undefined;

  /** Number of received bytes not yet returned as a message. */
  get bufferedLength(): number {
    return this.readEnd - this.readStart + (this.remainder?.length ?? 0);
  }

  /** Appends received bytes. Call `next()` until it returns undefined to take out the messages. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.bufferedLength === 0) {
      this.source = plainView(chunk);
      this.readStart = 0;
      this.readEnd = chunk.length;
      this.borrowed = true;
      return;
    }

    // Bytes are buffered: the first buffered message may span into this chunk.
    if (this.remainder !== undefined) {
      // push() came twice without next() draining the first chunk; rare, so copy.
      const remainder = this.remainder;
      this.remainder = undefined;
      this.appendOwned(remainder);
    }
    let offset = 0;
    if (this.readEnd - this.readStart < HEADER_LENGTH) {
      offset = Math.min(chunk.length, HEADER_LENGTH - (this.readEnd - this.readStart));
      this.appendOwned(chunk.subarray(0, offset));
      if (this.readEnd - this.readStart < HEADER_LENGTH) return;
    }

    // Take only the bytes that complete the first message and read the rest in place.
    // When the header is invalid or more than one message is buffered, take everything.
    const length = readUint32(this.source, this.readStart + 8);
    const missing = HEADER_LENGTH + length - (this.readEnd - this.readStart);
    const end = length > MAX_PAYLOAD_LENGTH || missing < 0 ? chunk.length : Math.min(chunk.length, offset + missing);
    this.appendOwned(chunk.subarray(offset, end));
    if (end < chunk.length) this.remainder = plainView(chunk).subarray(end);
  }

  /** Appends bytes to the owned storage, first moving the unread bytes of a borrowed chunk there. */
  private appendOwned(bytes: Uint8Array): void {
    const buffered = this.readEnd - this.readStart;
    if (this.borrowed || this.readEnd + bytes.length > this.storage.length) {
      let capacity = this.storage.length;
      while (capacity < buffered + bytes.length) capacity *= 2;
      const storage = capacity === this.storage.length ? this.storage : new Uint8Array(capacity);
      // copyWithin handles the overlap when the storage is compacted in place.
      if (storage === this.source) storage.copyWithin(0, this.readStart, this.readEnd);
      else storage.set(this.source.subarray(this.readStart, this.readEnd), 0);
      this.storage = storage;
      this.source = storage;
      this.readStart = 0;
      this.readEnd = buffered;
      this.borrowed = false;
    }
    this.storage.set(bytes, this.readEnd);
    this.readEnd += bytes.length;
  }

  /**
   * Returns the next complete message, or undefined when more bytes are
   * needed. Throws `VscProtocolError` when the buffered bytes are not valid
   * VSCard, and again on every later call.
   */
  next(): VscMessage | undefined {
    if (this.failure) throw this.failure;
    const source = this.source;
    const start = this.readStart;
    if (this.readEnd - start < HEADER_LENGTH) return undefined;

    const type = readUint32(source, start);
    const readerId = readUint32(source, start + 4);
    const length = readUint32(source, start + 8);

    if (type === (VscMessageType.Apdu as number) && length <= MAX_PAYLOAD_LENGTH) {
      // The common case, without the checks and copies of decodePayload.
      const payloadStart = start + HEADER_LENGTH;
      const payloadEnd = payloadStart + length;
      if (payloadEnd > this.readEnd) return undefined;
      const apdu = this.borrowed ? source.subarray(payloadStart, payloadEnd) : source.slice(payloadStart, payloadEnd);
      this.consume(payloadEnd);
      return { type: VscMessageType.Apdu, readerId, apdu };
    }

    try {
      if (!isKnownType(type)) {
        throw new VscProtocolError(
          'unknown-type',
          `unknown VSCard message type ${type} (0x${type.toString(16)}); valid types are 1 to 9`,
        );
      }
      if (length > MAX_PAYLOAD_LENGTH) {
        throw new VscProtocolError(
          'payload-too-long',
          `${messageTypeName(type)} announces ${length} payload bytes, more than the ${MAX_PAYLOAD_LENGTH} QEMU accepts`,
        );
      }
      const payloadEnd = start + HEADER_LENGTH + length;
      if (payloadEnd > this.readEnd) return undefined;

      const payloadStart = start + HEADER_LENGTH;
      const payload = this.borrowed ? source.subarray(payloadStart, payloadEnd) : source.slice(payloadStart, payloadEnd);
      const message = decodePayload(type, readerId, payload);
      this.consume(payloadEnd);
      return message;
    } catch (error) {
      if (error instanceof VscProtocolError) this.failure = error;
      throw error;
    }
  }

  private consume(messageEnd: number): void {
    this.readStart = messageEnd;
    if (messageEnd === this.readEnd && !this.borrowed) {
      // The owned storage is empty again: read the rest of the last chunk, or borrow the next one.
      const remainder = this.remainder ?? EMPTY;
      this.remainder = undefined;
      this.source = remainder;
      this.readStart = 0;
      this.readEnd = remainder.length;
      this.borrowed = true;
    }
  }

  /** Appends bytes and returns every message that is now complete. Throws like `next()`. */
  decode(chunk: Uint8Array): VscMessage[] {
    this.push(chunk);
    const messages: VscMessage[] = [];
    for (let message = this.next(); message !== undefined; message = this.next()) messages.push(message);
    return messages;
  }

  /**
   * Checks that the stream ended on a message boundary. Throws
   * `VscProtocolError` with kind 'truncated' when the peer closed the
   * connection in the middle of a message.
   */
  end(): void {
    if (this.failure) throw this.failure;
    const buffered = this.bufferedLength;
    if (buffered === 0) return;
    const expected =
      buffered >= HEADER_LENGTH
        ? `${HEADER_LENGTH + readUint32(this.source, this.readStart + 8)} bytes`
        : `at least a ${HEADER_LENGTH}-byte header`;
    throw new VscProtocolError(
      'truncated',
      `the stream ended inside a message: ${buffered} bytes received, ${expected} expected`,
    );
  }
}
