/** Builders for the properties objects libcacard 2.8 returns from GET PROPERTIES (cac.c). */
import { encodeSimpleTlv, type SimpleTlv } from '../iso7816/simple-tlv.js';
import {
  ACA_AID,
  APPLET_INFORMATION,
  TAG_APPLET_INFORMATION,
  TAG_BUFFER_PROPERTIES,
  TAG_NUMBER_OF_OBJECTS,
  TAG_OBJECT_ID,
  TAG_TV_OBJECT,
} from './constants.js';

/** Tag 26 with value 01, an unnamed property libcacard places in object entries. */
export const PROPERTY_26: SimpleTlv = { tag: 0x26, value: Uint8Array.of(0x01) };

export function appletInformation(value: Uint8Array = APPLET_INFORMATION): SimpleTlv {
  return { tag: TAG_APPLET_INFORMATION, value };
}

export function numberOfObjects(count: number): SimpleTlv {
  return { tag: TAG_NUMBER_OF_OBJECTS, value: Uint8Array.of(count) };
}

/** The two unnamed properties (39 = 00, 3A = ACA AID) that P1 = 40 adds after the short list. */
export const LONG_PROPERTY_SUFFIX: readonly SimpleTlv[] = [
  { tag: 0x39, value: Uint8Array.of(0x00) },
  { tag: 0x3a, value: ACA_AID },
];

/** Builds a constructed object entry (tag 50 or 51) from its children. */
export function objectEntry(tag: number, children: readonly SimpleTlv[]): SimpleTlv {
  return { tag, value: encodeSimpleTlv(children) };
}

/**
 * Builds the TV object entry of an applet without real buffers:
 * `50 0E 41 02 <oid> 42 05 <type> 60 00 60 00 26 01 01`, with the fixed
 * lengths 0x60 libcacard reports.
 */
export function placeholderObjectEntry(objectId: Uint8Array, bufferType: number): SimpleTlv {
  return objectEntry(TAG_TV_OBJECT, [
    { tag: TAG_OBJECT_ID, value: objectId },
    { tag: TAG_BUFFER_PROPERTIES, value: Uint8Array.of(bufferType, 0x60, 0x00, 0x60, 0x00) },
    PROPERTY_26,
  ]);
}
