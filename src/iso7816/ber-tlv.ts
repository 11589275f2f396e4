/**
 * BER-TLV codec for the data objects of ISO/IEC 7816-4 clause 5.2 (FCI
 * templates, PIV containers, GET DATA responses).
 *
 * Tags are kept as numbers holding the tag bytes big-endian (`0x5FC105`), so
 * they read as they are written in the standards. Lengths use the short form
 * below 128 and the long forms 81 to 84 above it.
 */

/** One decoded data object; `children` is set for constructed tags (bit 6 of the first tag byte). */
export interface BerTlv {
  tag: number;
  value: Uint8Array;
  children?: BerTlv[];
}

/** Returned when bytes are not well-formed BER-TLV. */
export class BerTlvFormatError extends Error {
  constructor(
    message: string,
    /** Offset of the offending byte in the input. */
    readonly offset: number,
  ) {
    super(`${message} (at byte ${offset})`);
    this.name = 'BerTlvFormatError';
  }
}

export type BerTlvResult = { ok: true; objects: BerTlv[] } | { ok: false; error: BerTlvFormatError };

/** Deepest nesting decoded; deeper input is rejected so hostile data cannot exhaust the stack. */
const MAX_DEPTH = 32;

/** Returns whether a tag (in this module's number form) marks a constructed data object. */
export function isConstructed(tag: number): boolean {
  let first = tag;
  while (first > 0xff) first = Math.floor(first / 256);
  return (first & 0x20) !== 0;
}

function encodeTag(tag: number): number[] {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xffffffff) throw new RangeError(`invalid BER-TLV tag ${tag}`);
  const bytes: number[] = [];
  let rest = tag;
  do {
    bytes.unshift(rest & 0xff);
    rest = Math.floor(rest / 256);
  } while (rest > 0);
  return bytes;
}

/** Encodes a length in the shortest form: one byte below 128, else 81 to 84 followed by the length. */
export function encodeBerLength(length: number): number[] {
  if (length < 0x80) return [length];
  const bytes: number[] = [];
  let rest = length;
  while (rest > 0) {
    bytes.unshift(rest & 0xff);
    rest = Math.floor(rest / 256);
  }
  if (bytes.length > 4) throw new RangeError(`BER-TLV length ${length} needs more than 4 bytes`);
  return [0x80 | bytes.length, ...bytes];
}

/** Encodes one data object; `children`, when given, replace `value` as the encoded contents. */
export function encodeBerTlv(object: BerTlv): Uint8Array {
  const value = object.children ? concat(object.children.map(encodeBerTlv)) : object.value;
  const header = [...encodeTag(object.tag), ...encodeBerLength(value.length)];
  const out = new Uint8Array(header.length + value.length);
  out.set(header, 0);
  out.set(value, header.length);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Decodes a sequence of data objects, descending into constructed ones.
 * Padding bytes 00 and FF between objects are skipped (ISO/IEC 7816-4 5.2).
 */
export function decodeBerTlv(bytes: Uint8Array): BerTlvResult {
  try {
    return { ok: true, objects: decodeSequence(bytes, 0, bytes.length, 0) };
  } catch (error) {
    if (error instanceof BerTlvFormatError) return { ok: false, error };
    throw error;
  }
}

function decodeSequence(bytes: Uint8Array, start: number, end: number, depth: number): BerTlv[] {
  if (depth > MAX_DEPTH) throw new BerTlvFormatError(`data objects nested deeper than ${MAX_DEPTH} levels`, start);

  const objects: BerTlv[] = [];
  let offset = start;

  while (offset < end) {
    const first = bytes[offset]!;
    if (first === 0x00 || first === 0xff) {
      offset++;
      continue;
    }

    // Tag: a first byte with low bits 11111 continues while bit 8 of the next bytes is set.
    const tagStart = offset;
    let tag = bytes[offset++]!;
    if ((first & 0x1f) === 0x1f) {
      let next: number;
      do {
        if (offset >= end) throw new BerTlvFormatError('the input ends inside a tag', tagStart);
        if (offset - tagStart >= 4) throw new BerTlvFormatError('tags longer than 4 bytes are not supported', tagStart);
        next = bytes[offset++]!;
        tag = tag * 256 + next;
      } while ((next & 0x80) !== 0);
    }

    // Length: short form, or 81..84 followed by 1 to 4 length bytes.
    if (offset >= end) throw new BerTlvFormatError(`the input ends before the length of tag ${tag.toString(16)}`, offset);
    const lengthByte = bytes[offset++]!;
    let length = lengthByte;
    if (lengthByte >= 0x80) {
      const count = lengthByte & 0x7f;
      if (count === 0 || count > 4) {
        throw new BerTlvFormatError(`length byte ${lengthByte.toString(16)} is not 00-7F or 81-84`, offset - 1);
      }
      if (offset + count > end) throw new BerTlvFormatError('the input ends inside a length field', offset);
      length = 0;
      for (let index = 0; index < count; index++) length = length * 256 + bytes[offset++]!;
    }

    if (offset + length > end) {
      throw new BerTlvFormatError(`tag ${tag.toString(16)} announces ${length} bytes but ${end - offset} remain`, offset);
    }

    const value = bytes.subarray(offset, offset + length);
    const object: BerTlv = { tag, value };
    if (isConstructed(tag)) object.children = decodeSequence(bytes, offset, offset + length, depth + 1);
    objects.push(object);
    offset += length;
  }
  return objects;
}

/** Finds the first data object with `tag`, searching constructed objects depth-first. */
export function findBerTlv(objects: readonly BerTlv[], tag: number): BerTlv | undefined {
  for (const object of objects) {
    if (object.tag === tag) return object;
    const found = object.children ? findBerTlv(object.children, tag) : undefined;
    if (found) return found;
  }
  return undefined;
}
