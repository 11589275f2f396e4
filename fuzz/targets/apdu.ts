/**
 * Fuzz target: the ISO 7816-4 command APDU parser. Every APDU it accepts
 * must survive encodeCommandApdu and a second parse with the same fields.
 */
import { encodeCommandApdu, parseCommandApdu } from '../../src/iso7816/apdu.js';
import { guardSync } from './guard.js';

/** Throws when the input reveals a bug. */
export function check(data: Buffer): void {
  const parsed = parseCommandApdu(data);
  if (!parsed.ok) return;

  const { apdu } = parsed;
  const again = parseCommandApdu(encodeCommandApdu(apdu));
  if (!again.ok) throw new Error(`encodeCommandApdu produced an APDU that parseCommandApdu rejects: ${again.error.message}`);
  const same =
    again.apdu.cla === apdu.cla &&
    again.apdu.ins === apdu.ins &&
    again.apdu.p1 === apdu.p1 &&
    again.apdu.p2 === apdu.p2 &&
    again.apdu.apduCase === apdu.apduCase &&
    again.apdu.le === apdu.le &&
    Buffer.from(again.apdu.data).equals(Buffer.from(apdu.data));
  if (!same) throw new Error(`APDU ${Buffer.from(data).toString('hex')} changed when encoded and parsed again`);
}

export const fuzz = guardSync(check);
