/**
 * VSCard message encoder: one message in, its wire bytes out.
 *
 * Header fields, the Init version and capabilities and the Error code are
 * big-endian, as QEMU writes them. The Init magic is the raw bytes "VSCD".
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

function checkUint32(value: number, field: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`VSCard ${field} must be an unsigned 32-bit integer, got ${value}`);
  }
}

function encodePayload(message: VscMessage): Uint8Array {
  switch (message.type) {
    case VscMessageType.Init: {
      const payload = new Uint8Array(8 + 4 * message.capabilities.length);
      const view = new DataView(payload.buffer);
      payload.set(VSCARD_MAGIC, 0);
      checkUint32(message.version, 'Init version');
      view.setUint32(4, message.version);
      message.capabilities.forEach((word, index) => {
        checkUint32(word, 'Init capability');
        view.setUint32(8 + 4 * index, word);
      });
      return payload;
    }
    case VscMessageType.Error: {
      const payload = new Uint8Array(4);
      checkUint32(message.code, 'Error code');
      new DataView(payload.buffer).setUint32(0, message.code);
      return payload;
    }
    case VscMessageType.ReaderAdd:
      return new TextEncoder().encode(message.name);
    case VscMessageType.Atr:
      return message.atr;
    case VscMessageType.Apdu:
      return message.apdu;
    case VscMessageType.ReaderRemove:
    case VscMessageType.CardRemove:
    case VscMessageType.Flush:
    case VscMessageType.FlushComplete:
      return new Uint8Array(0);
  }
}

/**
 * Encodes one message with its header. Throws `VscProtocolError` with kind
 * 'payload-too-long' when the payload exceeds `MAX_PAYLOAD_LENGTH`, because
 * QEMU would drop the connection for good, and `RangeError` for a header or
 * numeric field outside uint32.
 */
export function encodeMessage(message: VscMessage): Uint8Array {
  checkUint32(message.readerId, 'reader_id');
  const payload = encodePayload(message);
  if (payload.length > MAX_PAYLOAD_LENGTH) {
    throw new VscProtocolError(
      'payload-too-long',
      `${messageTypeName(message.type)} payload of ${payload.length} bytes exceeds the ${MAX_PAYLOAD_LENGTH} bytes QEMU accepts`,
    );
  }

  const bytes = new Uint8Array(HEADER_LENGTH + payload.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, message.type);
  view.setUint32(4, message.readerId);
  view.setUint32(8, payload.length);
  bytes.set(payload, HEADER_LENGTH);
  return bytes;
}
