/** Fuzz target: the BER-TLV decoder, and encode(decode(x)) for every object it accepts. */
import { decodeBerTlv, encodeBerTlv } from '../../src/iso7816/ber-tlv.js';
import { guardSync } from './guard.js';

/** Throws when the input reveals a bug. */
export function check(data: Buffer): void {
  const decoded = decodeBerTlv(data);
  if (!decoded.ok) return;
  for (const object of decoded.objects) {
    const again = decodeBerTlv(encodeBerTlv(object));
    if (!again.ok || again.objects.length !== 1) {
      throw new Error(`BER-TLV object of tag ${object.tag.toString(16)} from ${Buffer.from(data).toString('hex')} did not survive encode and decode`);
    }
  }
}

export const fuzz = guardSync(check);
