/**
 * Framing of the vpcd protocol (vsmartcard's virtual reader driver for pcscd).
 *
 * Every message in both directions is a 2-byte big-endian length followed by
 * that many payload bytes. vpcd sends a 1-byte payload as a control message
 * (power off, power on, reset, get ATR) and any longer payload as a command
 * APDU. The card answers "get ATR" with the ATR and each APDU with the
 * response APDU, and sends nothing for the other control messages.
 *
 * Pure functions and a streaming decoder over bytes; the socket lives in vpcd.ts.
 */

/** Largest payload the 16-bit length prefix can describe. */
export const VPCD_MAX_PAYLOAD = 0xffff;

/** Control codes vpcd sends as 1-byte messages (vsmartcard vpcd.h, VPCD_CTRL_*). */
export const VpcdControl = {
  powerOff: 0x00,
  powerOn: 0x01,
  reset: 0x02,
  getAtr: 0x04,
} as const;

/** One decoded vpcd message, classified by what the card has to do with it. */
export type VpcdMessage =
  | { kind: 'power-off' }
  | { kind: 'power-on' }
  | { kind: 'reset' }
  | { kind: 'get-atr' }
  /** A 1-byte message with a code vpcd does not define; the card ignores it. */
  | { kind: 'unknown-control'; code: number }
  /** A zero-length message, which vpcd never sends on purpose; the card ignores it. */
  | { kind: 'empty' }
  | { kind: 'apdu'; apdu: Uint8Array };

/** Raised when a payload cannot be framed because it is longer than 65535 bytes. */
export class VpcdPayloadTooLargeError extends Error {
  constructor(readonly length: number) {
    super(`vpcd payload of ${length} bytes is longer than the maximum of ${VPCD_MAX_PAYLOAD} bytes`);
    this.name = 'VpcdPayloadTooLargeError';
  }
}

/** Raised when a stream ends with a partial frame still buffered. */
export class VpcdTruncatedFrameError extends Error {
  constructor(readonly bufferedBytes: number) {
    super(`vpcd stream ended in the middle of a frame (${bufferedBytes} bytes of it received)`);
    this.name = 'VpcdTruncatedFrameError';
  }
}

/** Encodes one message: the 2-byte big-endian length, then the payload. */
export function encodeVpcdFrame(payload: Uint8Array): Buffer {
  if (payload.length > VPCD_MAX_PAYLOAD) throw new VpcdPayloadTooLargeError(payload.length);

  const frame = Buffer.allocUnsafe(2 + payload.length);
  frame.writeUInt16BE(payload.length, 0);
  frame.set(payload, 2);
  return frame;
}

/** Classifies a decoded payload as a control message, an APDU or an empty message. */
export function classifyVpcdMessage(payload: Uint8Array): VpcdMessage {
  if (payload.length === 0) return { kind: 'empty' };
  if (payload.length > 1) return { kind: 'apdu', apdu: payload };

  const code = payload[0] ?? 0;
  switch (code) {
    case VpcdControl.powerOff:
      return { kind: 'power-off' };
    case VpcdControl.powerOn:
      return { kind: 'power-on' };
    case VpcdControl.reset:
      return { kind: 'reset' };
    case VpcdControl.getAtr:
      return { kind: 'get-atr' };
    default:
      return { kind: 'unknown-control', code };
  }
}

/**
 * Reassembles vpcd frames from a byte stream that TCP may split or coalesce
 * at any point. Feed each received chunk to `push`, which returns the
 * payloads completed by it, in order.
 */
const EMPTY = Buffer.alloc(0);

export class VpcdFrameDecoder {
  private buffer: Buffer = EMPTY;

  /** Number of bytes received that do not yet form a complete frame. */
  get bufferedBytes(): number {
    return this.buffer.length;
  }

  /**
   * Appends a chunk and returns every payload it completes (possibly none).
   * Payloads and leftover bytes are copied, so the caller may reuse `chunk`
   * for its next read.
   */
  push(chunk: Uint8Array): Buffer[] {
    // Frames are parsed in place unless a partial frame is waiting for this chunk.
    const bytes = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);

    const payloads: Buffer[] = [];
    let offset = 0;
    while (bytes.length - offset >= 2) {
      const length = (bytes[offset]! << 8) | bytes[offset + 1]!;
      const end = offset + 2 + length;
      if (end > bytes.length) break;

      // Copy, so a payload kept by the caller neither changes nor pins the receive buffer.
      payloads.push(Buffer.from(bytes.subarray(offset + 2, end)));
      offset = end;
    }

    this.buffer = offset === bytes.length ? EMPTY : Buffer.from(bytes.subarray(offset));
    return payloads;
  }

  /** Checks that the stream ended on a frame boundary; raises `VpcdTruncatedFrameError` otherwise. */
  end(): void {
    const buffered = this.buffer.length;
    this.buffer = EMPTY;
    if (buffered > 0) throw new VpcdTruncatedFrameError(buffered);
  }
}
