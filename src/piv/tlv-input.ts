/** Small helpers to read the BER-TLV command data of PIV instructions. */
import { decodeBerTlv, type BerTlv } from '../iso7816/ber-tlv.js';

/** Decodes `data` and returns its top-level objects, or undefined when it is not well-formed BER-TLV. */
export function decodeObjects(data: Uint8Array): BerTlv[] | undefined {
  const decoded = decodeBerTlv(data);
  return decoded.ok ? decoded.objects : undefined;
}

/**
 * Returns the children of the single constructed object `tag` that makes up
 * `data` as a map from tag to value, or undefined when `data` is anything
 * else or a child tag repeats.
 */
export function decodeTemplate(data: Uint8Array, tag: number): Map<number, Uint8Array> | undefined {
  const objects = decodeObjects(data);
  const template = objects?.length === 1 ? objects[0] : undefined;
  if (template?.tag !== tag || template.children === undefined) return undefined;

  const items = new Map<number, Uint8Array>();
  for (const child of template.children) {
    if (items.has(child.tag)) return undefined;
    items.set(child.tag, child.value);
  }
  return items;
}

/** Reads a tag written as its bytes (the value of a 5C tag list), or undefined for an empty or over-long list. */
export function tagFromBytes(bytes: Uint8Array): number | undefined {
  if (bytes.length === 0 || bytes.length > 3) return undefined;
  let tag = 0;
  for (const byte of bytes) tag = tag * 256 + byte;
  return tag;
}

/** Reads a BER length at `offset`; returns [length, bytes used] or undefined when it is invalid or truncated. */
function readLength(data: Uint8Array, offset: number): [number, number] | undefined {
  const first = data[offset];
  if (first === undefined) return undefined;
  if (first < 0x80) return [first, 1];
  const count = first & 0x7f;
  if (count === 0 || count > 3 || offset + count >= data.length) return undefined;
  let length = 0;
  for (let index = 1; index <= count; index++) length = length * 256 + data[offset + index]!;
  return [length, 1 + count];
}

/**
 * Decodes a sequence of single-byte-tag objects, each read as primitive,
 * into a map from tag to value. Returns undefined for truncated input or a
 * repeated tag.
 */
export function decodeFlatObjects(data: Uint8Array): Map<number, Uint8Array> | undefined {
  const items = new Map<number, Uint8Array>();
  let offset = 0;
  while (offset < data.length) {
    const childTag = data[offset]!;
    const length = readLength(data, offset + 1);
    if (length === undefined) return undefined;
    const start = offset + 1 + length[1];
    const end = start + length[0];
    if (end > data.length || items.has(childTag)) return undefined;
    items.set(childTag, data.subarray(start, end));
    offset = end;
  }
  return items;
}

/**
 * Decodes the single-byte tag `tag` with one level of single-byte-tag
 * children into a map from tag to value. Unlike `decodeTemplate` it reads
 * every child as primitive, because the key template AC carries YubiKey's
 * PIN and touch policies under AA and AB, which BER marks as constructed.
 */
export function decodeFlatTemplate(data: Uint8Array, tag: number): Map<number, Uint8Array> | undefined {
  if (data[0] !== tag) return undefined;
  const outer = readLength(data, 1);
  if (outer === undefined || 1 + outer[1] + outer[0] !== data.length) return undefined;
  return decodeFlatObjects(data.subarray(1 + outer[1]));
}
