/**
 * The GlobalPlatform card manager (AID A0 00 00 00 03 00 00) as libcacard
 * 2.8 emulates it (gp.c, card_7816.c): its own SELECT response and GET DATA
 * for the CPLC and the card recognition data. Other instructions go to the
 * ISO handler.
 */
import type { Applet, AppletResult, CardContext } from '../card/applet.js';
import type { CommandApdu } from '../iso7816/apdu.js';
import { statusOnlyResponse } from '../iso7816/response.js';
import { SW_DATA_NOT_FOUND } from '../iso7816/status-words.js';
import { GP_CARD_MANAGER_AID, INS_GET_DATA } from './constants.js';

/** FCI: AID of the card manager with a trailing 00, life cycle data 9F 6E and maximum command length FF. */
const SELECT_RESPONSE = Uint8Array.of(
  0x6f, 0x19, 0x84, 0x08, 0xa0, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0xa5, 0x0d,
  0x9f, 0x6e, 0x06, 0x12, 0x91, 0x51, 0x81, 0x01, 0x00, 0x9f, 0x65, 0x01, 0xff,
);

/** Card production life cycle data (tag 9F 7F); bytes 15 to 20 are replaced by the card serial. */
const CPLC_TEMPLATE = Uint8Array.of(
  0x9f, 0x7f, 0x2a, 0x00, 0x05, 0x00, 0x45, 0xd0, 0x01, 0x40, 0x21, 0x01, 0x01, 0x07, 0x4f,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x47, 0x92, 0x72, 0x05, 0x16, 0x73, 0x72, 0x05, 0x16,
  0x74, 0x72, 0x05, 0x00, 0x00, 0x0a, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x29, 0xbb,
);
/** Offset of IC serial number (4 bytes) and IC batch identifier (2 bytes) in the CPLC. */
const CPLC_SERIAL_OFFSET = 15;
const CPLC_SERIAL_LENGTH = 6;

/** Card recognition data (tag 66): GlobalPlatform OIDs for card management, identification scheme and SCP03. */
const CARD_RECOGNITION_DATA = Uint8Array.of(
  0x66, 0x31, 0x73, 0x2f, 0x06, 0x07, 0x2a, 0x86, 0x48, 0x86, 0xfc, 0x6b, 0x01, 0x60, 0x0c,
  0x06, 0x0a, 0x2a, 0x86, 0x48, 0x86, 0xfc, 0x6b, 0x02, 0x02, 0x02, 0x01, 0x63, 0x09, 0x06,
  0x07, 0x2a, 0x86, 0x48, 0x86, 0xfc, 0x6b, 0x03, 0x64, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48,
  0x86, 0xfc, 0x6b, 0x04, 0x03, 0x10,
);

const TAG_CPLC = 0x9f7f;
const TAG_CARD_RECOGNITION_DATA = 0x0066;

/** Builds the CPLC with the first 6 bytes of `serial`; without a serial the bytes stay zero. */
export function buildCplc(serial: Uint8Array): Uint8Array {
  const cplc = CPLC_TEMPLATE.slice();
  if (serial.length > 0) cplc.set(serial.subarray(0, CPLC_SERIAL_LENGTH), CPLC_SERIAL_OFFSET);
  return cplc;
}

export class GpCardManagerApplet implements Applet {
  readonly aid = GP_CARD_MANAGER_AID;
  readonly name = 'GlobalPlatform card manager';
  private readonly cplc: Uint8Array;

  constructor(serial: Uint8Array) {
    this.cplc = buildCplc(serial);
  }

  selectResponse(): Uint8Array {
    return SELECT_RESPONSE;
  }

  process(apdu: CommandApdu, card: CardContext): AppletResult {
    if (apdu.ins !== INS_GET_DATA) return undefined;

    const tag = (apdu.p1 << 8) | apdu.p2;
    if (tag === TAG_CPLC) return card.respond(this.cplc, apdu.le);
    if (tag === TAG_CARD_RECOGNITION_DATA) return card.respond(CARD_RECOGNITION_DATA, apdu.le);
    return statusOnlyResponse(SW_DATA_NOT_FOUND);
  }
}
