/**
 * The Microsoft Plug and Play applet (AID A0 00 00 03 97 43 49 44 5F 01 00)
 * as libcacard 2.8 emulates it (msft.c). Windows reads GET DATA 7F 68 from
 * it; the card then sets its lasting Windows-compatibility flag.
 */
import type { Applet, AppletResult, CardContext } from '../card/applet.js';
import type { CommandApdu } from '../iso7816/apdu.js';
import { statusOnlyResponse } from '../iso7816/response.js';
import { SW_DATA_NOT_FOUND } from '../iso7816/status-words.js';
import { INS_GET_DATA, MICROSOFT_PNP_AID } from './constants.js';

/** DER SEQUENCE { 0, "MSFT", SEQUENCE { OCTET STRING (a fixed 16-byte GUID) } }, as libcacard returns it. */
const PNP_DATA = Uint8Array.of(
  0x30, 0x1d, 0x02, 0x01, 0x00, 0x16, 0x04, 0x4d, 0x53, 0x46, 0x54, 0x30, 0x12, 0x04, 0x10, 0xe2,
  0x80, 0xe9, 0xd2, 0x51, 0x88, 0x87, 0x4f, 0x81, 0xd6, 0x4f, 0x25, 0x4e, 0x38, 0x00, 0x1d,
);

const TAG_PNP = 0x7f68;

export class MicrosoftPnpApplet implements Applet {
  readonly aid = MICROSOFT_PNP_AID;
  readonly name = 'Microsoft PnP';

  process(apdu: CommandApdu, card: CardContext): AppletResult {
    if (apdu.ins !== INS_GET_DATA) return undefined;
    if (((apdu.p1 << 8) | apdu.p2) !== TAG_PNP) return statusOnlyResponse(SW_DATA_NOT_FOUND);

    card.setWindowsCompatible();
    return card.respond(PNP_DATA, apdu.le);
  }
}
