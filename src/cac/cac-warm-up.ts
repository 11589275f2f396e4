/**
 * Warm-up of the CAC card's command paths at start-up.
 *
 * V8 compiles a function on its first call and optimises it after many, so
 * the first client of a freshly started card pays for compiling every
 * command path it touches. For pkcs11-tool -O (OpenSC 0.23, 71 APDUs),
 * pcscd's APDU timestamps showed about 16 ms of card time on a new card
 * against 7 ms once warm. Running the
 * same read-only commands once at start-up moves that cost out of the first
 * client's session.
 */
import type { VirtualCard } from '../card/virtual-card.js';
import { logger } from '../log/logger.js';
import { ACA_AID, CCC_AID, INS_GET_DATA, INS_GET_PROPERTIES, INS_READ_BUFFER, INS_SELECT, pkiAid } from './constants.js';

const log = logger.child({ component: 'cac-warm-up' });

const INS_GET_RESPONSE = 0xc0;

/** Status word 61 xx: xx more response bytes wait for GET RESPONSE. */
const SW1_MORE_DATA = 0x61;

/** Upper bound on GET RESPONSE rounds per command, against a card that never stops returning 61 xx. */
const MAX_GET_RESPONSE_ROUNDS = 16;

function apdu(ins: number, p1: number, p2: number, data: readonly number[] = [], le?: number): Uint8Array {
  const body = data.length > 0 ? [data.length, ...data] : [];
  return Uint8Array.from([0x00, ins, p1, p2, ...body, ...(le === undefined ? [] : [le])]);
}

/**
 * Lists the read-only commands OpenSC sends when it reads the objects of a
 * CAC card: SELECT of each applet, GET PROPERTIES, and READ BUFFER of the
 * tag and value buffers of each PKI applet. None of them needs the PIN or
 * a key.
 */
function warmUpCommands(slotCount: number): Uint8Array[] {
  const commands = [
    apdu(INS_SELECT, 0x04, 0x0c, [...CCC_AID]),
    apdu(INS_GET_DATA, 0xdf, 0x30, [], 0x05),
    apdu(INS_SELECT, 0x04, 0x00, [...ACA_AID]),
    apdu(INS_READ_BUFFER, 0x00, 0x00, [0x01, 0x02]),
    apdu(INS_READ_BUFFER, 0x00, 0x02, [0x01, 0x34]),
  ];
  for (let index = 0; index < slotCount; index++) {
    commands.push(
      apdu(INS_SELECT, 0x04, 0x00, [...pkiAid(index)]),
      apdu(INS_SELECT, 0x02, 0x00, [0x01, index]),
      apdu(INS_GET_PROPERTIES, 0x01, 0x00, [], 0xff),
      apdu(INS_GET_PROPERTIES, 0x01, 0x00, [], 0x20),
      apdu(INS_READ_BUFFER, 0x00, 0x00, [0x01, 0x02]),
      apdu(INS_READ_BUFFER, 0x00, 0x02, [0x01, 0x0a]),
      apdu(INS_READ_BUFFER, 0x00, 0x00, [0x02, 0x02]),
      apdu(INS_READ_BUFFER, 0x00, 0x02, [0x02, 0xf0]),
      apdu(INS_READ_BUFFER, 0x00, 0xf2, [0x02, 0xf0]),
    );
  }
  return commands;
}

/**
 * Sends the warm-up commands to `card`, a throwaway CAC card with
 * `slotCount` PKI applets built for the same key store as the real one, so
 * the card that clients use keeps its power-on state. Never rejects: a
 * failure only means the first client meets cold code, so it is logged at
 * debug level.
 */
export async function warmUpCacCard(card: VirtualCard, slotCount: number): Promise<void> {
  try {
    card.reset();
    for (const command of warmUpCommands(slotCount)) {
      let response = await card.transmit(command);
      for (let round = 0; round < MAX_GET_RESPONSE_ROUNDS && response[response.length - 2] === SW1_MORE_DATA; round++) {
        response = await card.transmit(apdu(INS_GET_RESPONSE, 0x00, 0x00, [], response[response.length - 1]));
      }
    }
  } catch (error) {
    log.debug({ err: error }, 'warming up the CAC card failed; the first client meets uncompiled code');
  }
}
