/**
 * The data objects a new virtual PIV card starts with: a CHUID, a Card
 * Capability Container and a discovery object (SP 800-73-4 part 1,
 * appendix A). OpenSC reads them to identify the card.
 */
import { encodeBerTlv } from '../iso7816/ber-tlv.js';
import { PIV_AID, TAG_CARD_CAPABILITY_CONTAINER, TAG_CHUID, TAG_DISCOVERY_OBJECT } from './constants.js';

/**
 * FASC-N of a test credential (agency code 9999, system code 9999,
 * credential 999999), in the 25-byte BCD form with parity of TIG SCEPACS.
 * The value is a fixed placeholder because a virtual card has no issuer.
 */
const TEST_FASC_N = Buffer.from('d4e739da739ced39ce739d836858210842108421c84210c3eb', 'hex');

/** Expiration date of the CHUID, YYYYMMDD. */
const CHUID_EXPIRATION = '20991231';

function tlv(tag: number, value: Uint8Array | readonly number[]): Uint8Array {
  return encodeBerTlv({ tag, value: Uint8Array.from(value) });
}

function concat(parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}

/** Builds the CHUID contents: FASC-N, GUID, expiration date, an empty issuer signature and the error detection code. */
export function buildChuid(guid: Uint8Array): Uint8Array {
  return concat([
    tlv(0x30, TEST_FASC_N),
    tlv(0x34, guid),
    tlv(0x35, new TextEncoder().encode(CHUID_EXPIRATION)),
    tlv(0x3e, []),
    tlv(0xfe, []),
  ]);
}

/**
 * Builds the Card Capability Container contents: card identifier (GSC-RID
 * A0 00 00 01 16, manufacturer FF, card type 02 = Java Card, then 14 bytes
 * of the GUID as the card's own identifier), versions 2.1, and the empty
 * fields SP 800-73-4 requires.
 */
export function buildCardCapabilityContainer(guid: Uint8Array): Uint8Array {
  const cardIdentifier = concat([Uint8Array.of(0xa0, 0x00, 0x00, 0x01, 0x16, 0xff, 0x02), guid.subarray(0, 14)]);
  return concat([
    tlv(0xf0, cardIdentifier),
    tlv(0xf1, [0x21]),
    tlv(0xf2, [0x21]),
    tlv(0xf3, []),
    tlv(0xf4, [0x00]),
    tlv(0xf5, [0x10]),
    tlv(0xf6, []),
    tlv(0xf7, []),
    tlv(0xfa, []),
    tlv(0xfb, []),
    tlv(0xfc, []),
    tlv(0xfd, []),
    tlv(0xfe, []),
  ]);
}

/** Builds the discovery object contents: the PIV AID and the PIN usage policy 40 00 (PIV PIN only). */
export function buildDiscoveryObject(): Uint8Array {
  return concat([tlv(0x4f, PIV_AID), tlv(0x5f2f, [0x40, 0x00])]);
}

/** Returns the default objects of a new card whose GUID is `guid` (16 bytes). */
export function buildDefaultObjects(guid: Uint8Array): Map<number, Uint8Array> {
  return new Map([
    [TAG_CHUID, buildChuid(guid)],
    [TAG_CARD_CAPABILITY_CONTAINER, buildCardCapabilityContainer(guid)],
    [TAG_DISCOVERY_OBJECT, buildDiscoveryObject()],
  ]);
}
