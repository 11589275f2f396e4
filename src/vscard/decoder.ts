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

/** Decodes the payload of a message whose header has already been checked. */
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
      return { type, readerId, name: new TextDecoder().decode(payload.subarray(0, end)) };
    }
    case VscMessageType.Atr:
      return { type, readerId, atr: payload.slice() };
    case VscMessageType.Apdu:
      return { type, readerId, apdu: payload.slice() };
    case VscMessageType.ReaderRemove:
    case VscMessageType.CardRemove:
    case VscMessageType.Flush:
    case VscMessageType.FlushComplete:
      requireLength(type, payload.length, 0);
      return { type, readerId };
  }
}

export class VscDecoder {
  // Received bytes live in storage[head, tail); the storage grows by doubling
  // so that feeding a large message in small pieces stays linear in time.
  private storage = new Uint8Array(256);
  private head = 0;
  private tail = 0;
  private failure: VscProtocolError | undefined;

  /** Number of received bytes not yet returned as a message. */
  get bufferedLength(): number {
    return this.tail - this.head;
  }

  private get buffer(): Uint8Array {
    return this.storage.subarray(this.head, this.tail);
  }

  /** Appends received bytes. Call `next()` until it returns undefined to take out the messages. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.tail + chunk.length > this.storage.length) {
      const buffered = this.bufferedLength;
      let capacity = this.storage.length;
      while (capacity < buffered + chunk.length) capacity *= 2;
      const storage = capacity === this.storage.length ? this.storage : new Uint8Array(capacity);
      storage.set(this.storage.subarray(this.head, this.tail), 0);
      this.storage = storage;
      this.head = 0;
      this.tail = buffered;
    }
    this.storage.set(chunk, this.tail);
    this.tail += chunk.length;
  }

  /**
   * Returns the next complete message, or undefined when more bytes are
   * needed. Throws `VscProtocolError` when the buffered bytes are not valid
   * VSCard, and again on every later call.
   */
  next(): VscMessage | undefined {
    if (this.failure) throw this.failure;
    const buffer = this.buffer;
    if (buffer.length < HEADER_LENGTH) return undefined;

    const header = new DataView(buffer.buffer, buffer.byteOffset, HEADER_LENGTH);
    const type = header.getUint32(0);
    const readerId = header.getUint32(4);
    const length = header.getUint32(8);

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
      if (buffer.length < HEADER_LENGTH + length) return undefined;

      const message = decodePayload(type, readerId, buffer.subarray(HEADER_LENGTH, HEADER_LENGTH + length));
      this.head += HEADER_LENGTH + length;
      if (this.head === this.tail) {
        this.head = 0;
        this.tail = 0;
      }
      return message;
    } catch (error) {
      if (error instanceof VscProtocolError) this.failure = error;
      throw error;
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
    const buffer = this.buffer;
    if (buffer.length === 0) return;
    const expected =
      buffer.length >= HEADER_LENGTH
        ? `${HEADER_LENGTH + new DataView(buffer.buffer, buffer.byteOffset).getUint32(8)} bytes`
        : `at least a ${HEADER_LENGTH}-byte header`;
    throw new VscProtocolError(
      'truncated',
      `the stream ended inside a message: ${buffer.length} bytes received, ${expected} expected`,
    );
  }
}
