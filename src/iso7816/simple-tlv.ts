/**
 * SimpleTLV as the CAC card uses it (GSC-IS 2.1 §8.4, libcacard simpletlv.c).
 * A data object is a 1-byte tag from 01 to FE, a length and the value. The
 * length is one byte when below 255, else FF followed by the length as
 * 16-bit little-endian, so 255 itself takes the 3-byte form.
 */

/** One SimpleTLV data object. */
export interface SimpleTlv {
  readonly tag: number;
  readonly value: Uint8Array;
}

/** Largest value length the 3-byte length form can carry. */
export const MAX_SIMPLE_TLV_LENGTH = 0xffff;

/** Reason a byte string is not a valid SimpleTLV list. */
export type SimpleTlvDecodeErrorReason =
  /** Only a tag byte, or FF without its two length bytes, is left. */
  | 'truncated-header'
  /** The length announces more value bytes than are left. */
  | 'truncated-value';

export interface SimpleTlvDecodeError {
  readonly reason: SimpleTlvDecodeErrorReason;
  readonly message: string;
  /** Offset of the data object that could not be decoded. */
  readonly offset: number;
  /** The data objects decoded before the error, as libcacard keeps them. */
  readonly decoded: readonly SimpleTlv[];
}

export type SimpleTlvDecodeResult =
  | { readonly ok: true; readonly objects: readonly SimpleTlv[] }
  | { readonly ok: false; readonly error: SimpleTlvDecodeError };

function checkTag(tag: number): void {
  if (!Number.isInteger(tag) || tag < 0x01 || tag > 0xfe) {
    throw new RangeError(`SimpleTLV tag must be from 0x01 to 0xFE, got ${tag}`);
  }
}

function checkLength(length: number): void {
  if (!Number.isInteger(length) || length < 0 || length > MAX_SIMPLE_TLV_LENGTH) {
    throw new RangeError(`SimpleTLV length must be from 0 to ${MAX_SIMPLE_TLV_LENGTH}, got ${length}`);
  }
}

/** Returns the size of the tag and length bytes for a value of `length` bytes (2 or 4). */
export function simpleTlvHeaderSize(length: number): number {
  return length < 0xff ? 2 : 4;
}

/** Writes tag and length at `offset` and returns the offset after them. */
function writeHeader(out: Uint8Array, offset: number, tag: number, length: number): number {
  out[offset++] = tag;
  if (length < 0xff) {
    out[offset++] = length;
  } else {
    out[offset++] = 0xff;
    out[offset++] = length & 0xff;
    out[offset++] = length >> 8;
  }
  return offset;
}

/** Encodes the tag and length bytes of one data object. Throws RangeError for an invalid tag or length. */
export function encodeSimpleTlvHeader(tag: number, length: number): Uint8Array {
  checkTag(tag);
  checkLength(length);
  const out = new Uint8Array(simpleTlvHeaderSize(length));
  writeHeader(out, 0, tag, length);
  return out;
}

/**
 * Encodes data objects one after another. A constructed value (such as the
 * CAC properties objects 50 and 51) is encoded by passing the encoding of its
 * children as the value. Throws RangeError for an invalid tag or length.
 */
export function encodeSimpleTlv(objects: readonly SimpleTlv[]): Uint8Array {
  let size = 0;
  for (const object of objects) {
    checkTag(object.tag);
    checkLength(object.value.length);
    size += simpleTlvHeaderSize(object.value.length) + object.value.length;
  }

  const out = new Uint8Array(size);
  let offset = 0;
  for (const object of objects) {
    offset = writeHeader(out, offset, object.tag, object.value.length);
    out.set(object.value, offset);
    offset += object.value.length;
  }
  return out;
}

/** Encodes only the tag and length bytes of every object, as the CAC "tag/length buffer" contains them. */
export function encodeSimpleTlvHeaders(objects: readonly SimpleTlv[]): Uint8Array {
  let size = 0;
  for (const object of objects) {
    checkTag(object.tag);
    checkLength(object.value.length);
    size += simpleTlvHeaderSize(object.value.length);
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const object of objects) offset = writeHeader(out, offset, object.tag, object.value.length);
  return out;
}

/**
 * Decodes a list of data objects. Values are views of `bytes`, not copies.
 * Tags are not checked, so 00 and FF are decoded like any other tag.
 */
export function decodeSimpleTlv(bytes: Uint8Array): SimpleTlvDecodeResult {
  const objects: SimpleTlv[] = [];
  let offset = 0;

  while (offset < bytes.length) {
    const start = offset;
    const left = bytes.length - offset;
    if (left < 2 || (bytes[offset + 1] === 0xff && left < 4)) {
      return {
        ok: false,
        error: {
          reason: 'truncated-header',
          message: `SimpleTLV header at offset ${start} is truncated: ${left} bytes left`,
          offset: start,
          decoded: objects,
        },
      };
    }

    const tag = bytes[offset]!;
    let length = bytes[offset + 1]!;
    offset += 2;
    if (length === 0xff) {
      length = bytes[offset]! | (bytes[offset + 1]! << 8);
      offset += 2;
    }

    if (length > bytes.length - offset) {
      return {
        ok: false,
        error: {
          reason: 'truncated-value',
          message: `SimpleTLV object with tag ${tag.toString(16).padStart(2, '0')} at offset ${start} announces ${length} value bytes, but only ${bytes.length - offset} are left`,
          offset: start,
          decoded: objects,
        },
      };
    }
    objects.push({ tag, value: bytes.subarray(offset, offset + length) });
    offset += length;
  }
  return { ok: true, objects };
}
