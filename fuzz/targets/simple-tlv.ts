/**
 * Fuzz target: the SimpleTLV decoder. Every list it accepts must survive
 * encodeSimpleTlv and a second decode, except that the decoder accepts the
 * tags 00 and FF (as libcacard does) while the encoder rejects them, so
 * such lists are not re-encoded.
 */
import { decodeSimpleTlv, encodeSimpleTlv } from '../../src/iso7816/simple-tlv.js';
import { guardSync } from './guard.js';

/** Throws when the input reveals a bug. */
export function check(data: Buffer): void {
  const decoded = decodeSimpleTlv(data);
  if (!decoded.ok) return;
  if (decoded.objects.some((object) => object.tag === 0x00 || object.tag === 0xff)) return;

  const again = decodeSimpleTlv(encodeSimpleTlv(decoded.objects));
  if (!again.ok || again.objects.length !== decoded.objects.length) {
    throw new Error(`SimpleTLV ${Buffer.from(data).toString('hex')} did not survive encode and decode`);
  }
}

export const fuzz = guardSync(check);
