/**
 * Command APDU codec (ISO/IEC 7816-3 §12.1 and 7816-4 §5.1): cases 1 to 4 in
 * short and extended form.
 *
 * The parser follows the length rules of libcacard 2.8 (card_7816.c), which
 * the virtual CAC card must reproduce byte for byte:
 *
 * - fewer than 4 bytes is invalid;
 * - 4 bytes is case 1;
 * - 5 bytes is case 2 short, Le = P3 (00 means 256);
 * - P3 ≠ 00 makes P3 the short Lc, followed by exactly Lc bytes (case 3) or
 *   Lc bytes and one Le byte (case 4, 00 means 256);
 * - P3 = 00 with more bytes starts an extended length: 2 more bytes alone are
 *   an extended Le (case 2, 0000 means 65536); otherwise they are a non-zero
 *   Lc followed by exactly Lc bytes (case 3) or Lc bytes and a 2-byte Le
 *   (case 4, 0000 means 65536).
 *
 * Anything else is an {@link ApduFormatError}, which a card rejects with
 * 67 00 (wrong length).
 */

/** ISO 7816-4 command case: 1 = no data, no Le; 2 = Le only; 3 = data only; 4 = data and Le. */
export type ApduCase = 1 | 2 | 3 | 4;

/** A parsed command APDU. `data` and `raw` are views of the input, not copies. */
export interface CommandApdu {
  readonly cla: number;
  readonly ins: number;
  readonly p1: number;
  readonly p2: number;
  readonly apduCase: ApduCase;
  /** Whether Lc/Le use the extended (3-byte Lc, 2- or 3-byte Le) encoding. */
  readonly extended: boolean;
  /** Command data (Nc bytes); empty for cases 1 and 2. */
  readonly data: Uint8Array;
  /**
   * Maximum number of response bytes expected (Ne): 1 to 256 for short and
   * 1 to 65536 for extended Le. 0 when the APDU has no Le field (cases 1
   * and 3), as libcacard stores it.
   */
  readonly le: number;
  /** The whole encoded command. */
  readonly raw: Uint8Array;
}

/** Reason a byte string is not a valid command APDU. */
export type ApduFormatErrorReason =
  /** Fewer than the 4 header bytes. */
  | 'header-too-short'
  /** P3 = 00 announces an extended length, but fewer than 2 more bytes follow. */
  | 'extended-length-truncated'
  /** An extended Lc of 0000, which ISO 7816-4 reserves. */
  | 'extended-lc-zero'
  /** The bytes after the header match neither "Lc + data" nor "Lc + data + Le". */
  | 'length-mismatch';

export interface ApduFormatError {
  readonly reason: ApduFormatErrorReason;
  /** English description including the offending lengths. */
  readonly message: string;
  /** Length of the rejected byte string. */
  readonly length: number;
}

export type ApduParseResult =
  | { readonly ok: true; readonly apdu: CommandApdu }
  | { readonly ok: false; readonly error: ApduFormatError };

/** Maximum short and extended Lc. */
export const MAX_SHORT_LC = 255;
export const MAX_EXTENDED_LC = 65535;
/** Largest Ne expressible with a short Le (00) and an extended Le (0000). */
export const MAX_SHORT_LE = 256;
export const MAX_EXTENDED_LE = 65536;

const EMPTY = new Uint8Array(0);

function formatError(reason: ApduFormatErrorReason, message: string, length: number): ApduParseResult {
  return { ok: false, error: { reason, message, length } };
}

function success(
  raw: Uint8Array,
  apduCase: ApduCase,
  extended: boolean,
  data: Uint8Array,
  le: number,
): ApduParseResult {
  return {
    ok: true,
    apdu: { cla: raw[0]!, ins: raw[1]!, p1: raw[2]!, p2: raw[3]!, apduCase, extended, data, le, raw },
  };
}

/** Parses a command APDU. Never throws: malformed input gives `{ ok: false, error }`. */
export function parseCommandApdu(raw: Uint8Array): ApduParseResult {
  const length = raw.length;
  if (length < 4) {
    return formatError('header-too-short', `command APDU has ${length} bytes, but the header alone needs 4`, length);
  }

  const bodyLength = length - 4;
  if (bodyLength === 0) return success(raw, 1, false, EMPTY, 0);

  const p3 = raw[4]!;
  if (bodyLength === 1) return success(raw, 2, false, EMPTY, p3 === 0 ? MAX_SHORT_LE : p3);

  if (p3 !== 0) {
    const lc = p3;
    if (bodyLength === lc + 1) return success(raw, 3, false, raw.subarray(5, 5 + lc), 0);
    if (bodyLength === lc + 2) {
      const le = raw[length - 1]!;
      return success(raw, 4, false, raw.subarray(5, 5 + lc), le === 0 ? MAX_SHORT_LE : le);
    }
    return formatError(
      'length-mismatch',
      `short Lc is ${lc}, so ${lc + 1} or ${lc + 2} bytes must follow the header, but ${bodyLength} do`,
      length,
    );
  }

  if (bodyLength < 3) {
    return formatError(
      'extended-length-truncated',
      `P3 = 00 starts an extended length field of 3 bytes, but only ${bodyLength} bytes follow the header`,
      length,
    );
  }
  const first = (raw[5]! << 8) | raw[6]!;
  if (bodyLength === 3) return success(raw, 2, true, EMPTY, first === 0 ? MAX_EXTENDED_LE : first);
  if (first === 0) {
    return formatError('extended-lc-zero', 'extended Lc is 0000, which is reserved', length);
  }

  const lc = first;
  if (bodyLength === lc + 3) return success(raw, 3, true, raw.subarray(7, 7 + lc), 0);
  if (bodyLength === lc + 5) {
    const le = (raw[length - 2]! << 8) | raw[length - 1]!;
    return success(raw, 4, true, raw.subarray(7, 7 + lc), le === 0 ? MAX_EXTENDED_LE : le);
  }
  return formatError(
    'length-mismatch',
    `extended Lc is ${lc}, so ${lc + 3} or ${lc + 5} bytes must follow the header, but ${bodyLength} do`,
    length,
  );
}

/** Fields of a command APDU to encode. */
export interface CommandApduFields {
  readonly cla: number;
  readonly ins: number;
  readonly p1: number;
  readonly p2: number;
  /** Command data; omitted or empty means no Lc field. */
  readonly data?: Uint8Array;
  /** Expected response length Ne; omitted or 0 means no Le field. */
  readonly le?: number;
  /**
   * Force the extended encoding. Without it, extended is used only when the
   * data is longer than 255 bytes or Ne is above 256.
   */
  readonly extended?: boolean;
}

function checkByte(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xff) {
    throw new RangeError(`${name} must be an integer from 0 to 255, got ${value}`);
  }
}

/**
 * Encodes a command APDU. Throws RangeError for field values no APDU can
 * carry (a byte above 255, more than 65535 data bytes, Ne above 65536).
 */
export function encodeCommandApdu(fields: CommandApduFields): Uint8Array {
  checkByte('CLA', fields.cla);
  checkByte('INS', fields.ins);
  checkByte('P1', fields.p1);
  checkByte('P2', fields.p2);

  const data = fields.data ?? EMPTY;
  const le = fields.le ?? 0;
  if (data.length > MAX_EXTENDED_LC) {
    throw new RangeError(`command data is ${data.length} bytes, but an APDU carries at most ${MAX_EXTENDED_LC}`);
  }
  if (!Number.isInteger(le) || le < 0 || le > MAX_EXTENDED_LE) {
    throw new RangeError(`Le (Ne) must be an integer from 0 to ${MAX_EXTENDED_LE}, got ${le}`);
  }

  const extended = fields.extended === true || data.length > MAX_SHORT_LC || le > MAX_SHORT_LE;
  const hasData = data.length > 0;
  const hasLe = le > 0;

  let size = 4;
  if (extended) {
    if (hasData) size += 3 + data.length;
    if (hasLe) size += hasData ? 2 : 3;
  } else {
    if (hasData) size += 1 + data.length;
    if (hasLe) size += 1;
  }

  const out = new Uint8Array(size);
  out[0] = fields.cla;
  out[1] = fields.ins;
  out[2] = fields.p1;
  out[3] = fields.p2;
  let offset = 4;

  if (extended) {
    if (hasData) {
      out[offset++] = 0;
      out[offset++] = data.length >> 8;
      out[offset++] = data.length & 0xff;
      out.set(data, offset);
      offset += data.length;
    } else if (hasLe) {
      out[offset++] = 0;
    }
    if (hasLe) {
      const encoded = le === MAX_EXTENDED_LE ? 0 : le;
      out[offset++] = encoded >> 8;
      out[offset++] = encoded & 0xff;
    }
  } else {
    if (hasData) {
      out[offset++] = data.length;
      out.set(data, offset);
      offset += data.length;
    }
    if (hasLe) out[offset++] = le === MAX_SHORT_LE ? 0 : le;
  }
  return out;
}
