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
