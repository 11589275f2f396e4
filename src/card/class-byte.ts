/**
 * Decoding of the CLA byte the way libcacard 2.8 does it (card_7816.c).
 *
 * The interindustry classes 0x, 8x, 9x and Ax take the logical channel from
 * bits 1-0 and the secure messaging indication from bits 3-1. The two fields
 * overlap in bit 1, so CLA x2 and x3 always count as secure messaging: only
 * channels 0 and 1 are usable, as on the C card. Classes Bx and Cx are
 * channel 0 without secure messaging. 1x to 7x are reserved for future use
 * and Dx to Fx are proprietary; the ISO handler rejects both with 69 00,
 * but reach a selected applet on channel 0. The chaining bit (CLA 10) is
 * therefore not command chaining here, exactly as on the C card.
 */

export type ClassKind = 'interindustry' | 'reserved' | 'proprietary';

export interface DecodedClass {
  readonly kind: ClassKind;
  /** Logical channel 0 to 3. */
  readonly channel: number;
  /** Secure messaging bits (CLA & 0x0E); non-zero makes the ISO handler return 68 82. */
  readonly secureMessaging: number;
}

/** Number of logical channels the card keeps a selected applet for. */
export const LOGICAL_CHANNELS = 4;

const DECODED: readonly DecodedClass[] = Array.from({ length: 256 }, (_, cla) => decode(cla));

function decode(cla: number): DecodedClass {
  switch (cla & 0xf0) {
    case 0x00:
    case 0x80:
    case 0x90:
    case 0xa0:
      return { kind: 'interindustry', channel: cla & 0x03, secureMessaging: cla & 0x0e };
    case 0xb0:
    case 0xc0:
      return { kind: 'interindustry', channel: 0, secureMessaging: 0 };
    case 0xd0:
    case 0xe0:
    case 0xf0:
      return { kind: 'proprietary', channel: 0, secureMessaging: 0 };
    default:
      return { kind: 'reserved', channel: 0, secureMessaging: 0 };
  }
}

/** Decodes a CLA byte (0 to 255) from a precomputed table. */
export function decodeClass(cla: number): DecodedClass {
  return DECODED[cla & 0xff]!;
}
