/**
 * Response APDU codec: response data followed by the status word SW1 SW2
 * (ISO/IEC 7816-4 §5.1).
 */
import { formatStatusWord } from './status-words.js';

/** A response APDU split into its data and its 16-bit status word. */
export interface ResponseApdu {
  readonly data: Uint8Array;
  readonly sw: number;
}

export interface ResponseFormatError {
  readonly reason: 'too-short';
  readonly message: string;
}

export type ResponseParseResult =
  | { readonly ok: true; readonly response: ResponseApdu }
  | { readonly ok: false; readonly error: ResponseFormatError };

/**
 * Encodes data followed by SW1 SW2 in one newly allocated buffer. With
 * `length`, only the first `length` bytes of `data` are taken.
 */
export function encodeResponseApdu(data: Uint8Array, sw: number, length = data.length): Uint8Array {
  const out = new Uint8Array(length + 2);
  if (length > 0) out.set(length === data.length ? data : data.subarray(0, length));
  out[length] = (sw >> 8) & 0xff;
  out[length + 1] = sw & 0xff;
  return out;
}

/** Encodes a response that is only a status word. */
export function statusOnlyResponse(sw: number): Uint8Array {
  return Uint8Array.of((sw >> 8) & 0xff, sw & 0xff);
}

/** Splits a response APDU into data (a view, not a copy) and status word. */
export function parseResponseApdu(bytes: Uint8Array): ResponseParseResult {
  if (bytes.length < 2) {
    return {
      ok: false,
      error: {
        reason: 'too-short',
        message: `response APDU has ${bytes.length} bytes, but the status word alone needs 2`,
      },
    };
  }
  const end = bytes.length - 2;
  return { ok: true, response: { data: bytes.subarray(0, end), sw: (bytes[end]! << 8) | bytes[end + 1]! } };
}

/** Returns the status word of an encoded response APDU; throws RangeError when it has fewer than 2 bytes. */
export function statusWordOf(bytes: Uint8Array): number {
  if (bytes.length < 2) throw new RangeError(`response APDU has ${bytes.length} bytes, so it has no status word`);
  return (bytes[bytes.length - 2]! << 8) | bytes[bytes.length - 1]!;
}

/** Formats a response APDU for logs as `<n> bytes, SW 90 00`. */
export function summarizeResponseApdu(bytes: Uint8Array): string {
  if (bytes.length < 2) return `${bytes.length} bytes, no status word`;
  return `${bytes.length - 2} bytes, SW ${formatStatusWord(statusWordOf(bytes))}`;
}
