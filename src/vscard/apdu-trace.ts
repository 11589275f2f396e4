/**
 * Human-readable APDU trace lines: the bytes, the instruction name, the
 * selected applet and the meaning of the status word.
 *
 * Secrets never reach a trace line. The data of PIN commands (VERIFY,
 * CHANGE REFERENCE DATA, RESET RETRY COUNTER) is replaced by its length.
 * The response data of these commands is masked too, and so is that of
 * private-key operations (CAC SIGN/DECRYPT, PERFORM SECURITY OPERATION,
 * GENERAL AUTHENTICATE), because a decryption result is a secret. Masking
 * continues through the GET RESPONSE calls that fetch the rest.
 */
import { parseCommandApdu } from '../iso7816/apdu.js';
import { describeStatusWord } from '../iso7816/status-words.js';

const INSTRUCTION_NAMES = new Map<number, string>([
  [0x0e, 'ERASE BINARY'],
  [0x20, 'VERIFY'],
  [0x22, 'MANAGE SECURITY ENVIRONMENT'],
  [0x24, 'CHANGE REFERENCE DATA'],
  [0x2a, 'PERFORM SECURITY OPERATION'],
  [0x2c, 'RESET RETRY COUNTER'],
  [0x42, 'SIGN/DECRYPT (CAC)'],
  [0x44, 'ACTIVATE FILE'],
  [0x47, 'GENERATE ASYMMETRIC KEY PAIR'],
  [0x4c, 'GET ACR (CAC)'],
  [0x50, 'INITIALIZE UPDATE (GlobalPlatform)'],
  [0x52, 'READ BUFFER (CAC)'],
  [0x56, 'GET PROPERTIES (CAC)'],
  [0x58, 'UPDATE BUFFER (CAC)'],
  [0x70, 'MANAGE CHANNEL'],
  [0x82, 'EXTERNAL AUTHENTICATE'],
  [0x84, 'GET CHALLENGE'],
  [0x87, 'GENERAL AUTHENTICATE'],
  [0x88, 'INTERNAL AUTHENTICATE'],
  [0xa4, 'SELECT'],
  [0xb0, 'READ BINARY'],
  [0xb2, 'READ RECORD'],
  [0xc0, 'GET RESPONSE'],
  [0xca, 'GET DATA'],
  [0xcb, 'GET DATA (BER-TLV)'],
  [0xd6, 'UPDATE BINARY'],
  [0xdb, 'PUT DATA (BER-TLV)'],
  [0xf2, 'GET STATUS (GlobalPlatform)'],
]);

/** Instructions whose command data is a PIN or PUK. Odd INS values are the BER-TLV variants. */
const SECRET_COMMAND_DATA = new Set([0x20, 0x21, 0x24, 0x25, 0x2c, 0x2d]);

/** Instructions whose response data may be a private-key result. */
const SECRET_RESPONSE_DATA = new Set([0x2a, 0x42, 0x87]);

const INS_SELECT = 0xa4;
const INS_GET_RESPONSE = 0xc0;
const SELECT_BY_AID = 0x04;

const CAC_RID = 'A000000079';

/** Names of the applets a libcacard CAC card and OpenSC's probing use, by AID in upper-case hex. */
const APPLET_NAMES = new Map<string, string>([
  [`${CAC_RID}0300`, 'CAC ACA'],
  ['A000000116DB00', 'CAC CCC'],
  [`${CAC_RID}02F0`, 'CAC empty applet F0'],
  [`${CAC_RID}02F1`, 'CAC empty applet F1'],
  [`${CAC_RID}02F2`, 'CAC empty applet F2'],
  [`${CAC_RID}02FB`, 'CAC generic container'],
  [`${CAC_RID}02FE`, 'CAC PKI certificate container'],
  [`${CAC_RID}02FD`, 'CAC PKI credential container'],
  [`${CAC_RID}0200`, 'CAC Person Instance'],
  [`${CAC_RID}0201`, 'CAC Personnel'],
  [`${CAC_RID}1201`, 'CAC empty container 12 01'],
  [`${CAC_RID}1202`, 'CAC empty container 12 02'],
  ['A0000001163000', 'CAC access control file'],
  ['A0000000030000', 'GlobalPlatform Card Manager'],
  ['A0000003974349445F0100', 'Microsoft PnP'],
  ['A00000030800001000', 'PIV'],
]);

function hexBytes(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).toUpperCase().padStart(2, '0')).join(' ');
}

function compactHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex').toUpperCase();
}

/** Returns the length of the Le field of a case 4 command (the only case with data and Le). */
function leFieldLength(apduCase: number, extended: boolean): number {
  if (apduCase !== 4) return 0;
  return extended ? 2 : 1;
}

/** Returns a name for an AID, e.g. "CAC PKI applet 0", or undefined when it is not a known applet. */
export function appletName(aid: Uint8Array): string | undefined {
  const key = compactHex(aid);
  const pki = /^A000000079010([0-9A-F])$/.exec(key);
  if (pki) return `CAC PKI applet ${parseInt(pki[1]!, 16)}`;
  return APPLET_NAMES.get(key);
}

/** Returns the name of an instruction byte, or "INS xx" when it has none here. */
export function instructionName(ins: number): string {
  return INSTRUCTION_NAMES.get(ins) ?? `INS ${ins.toString(16).toUpperCase().padStart(2, '0')}`;
}

/**
 * Formats the commands and responses of one card session. It is stateful:
 * it follows SELECT to name the current applet and remembers when a
 * response belongs to a private-key operation.
 */
export class ApduTracer {
  private currentApplet: string | undefined;
  private pendingSelect: string | undefined;
  private maskResponses = false;

  /** Forgets the selected applet, as a card reset does. */
  reset(): void {
    this.currentApplet = undefined;
    this.pendingSelect = undefined;
    this.maskResponses = false;
  }

  /** Formats a command APDU, masking PIN data. */
  command(apdu: Uint8Array): string {
    const parsed = parseCommandApdu(apdu);
    if (!parsed.ok) {
      this.pendingSelect = undefined;
      this.maskResponses = false;
      return `${hexBytes(apdu)}  malformed command: ${parsed.error.message}`;
    }
    const command = parsed.apdu;
    const name = instructionName(command.ins);

    // A GET RESPONSE keeps fetching the response of the command before it.
    if (command.ins !== INS_GET_RESPONSE) {
      this.maskResponses = SECRET_RESPONSE_DATA.has(command.ins) || SECRET_COMMAND_DATA.has(command.ins);
    }

    let bytes: string;
    if (SECRET_COMMAND_DATA.has(command.ins) && command.data.length > 0) {
      // Show the header and Lc, then only the length of the data; Le is left out.
      const headerLength = apdu.length - command.data.length - leFieldLength(command.apduCase, command.extended);
      bytes = `${hexBytes(apdu.subarray(0, headerLength))} <${command.data.length} bytes masked>`;
    } else {
      bytes = hexBytes(apdu);
    }

    this.pendingSelect = undefined;
    if (command.ins === INS_SELECT && command.p1 === SELECT_BY_AID) {
      const aid = compactHex(command.data);
      const applet = appletName(command.data);
      this.pendingSelect = applet ?? `AID ${aid}`;
      return `${bytes}  ${name} ${applet === undefined ? `AID ${aid}` : `${applet} (${aid})`}`;
    }
    const where = this.currentApplet === undefined ? '' : ` [${this.currentApplet}]`;
    return `${bytes}  ${name}${where}`;
  }

  /** Formats a response APDU (data followed by SW1 SW2), masking private-key results. */
  response(response: Uint8Array): string {
    if (response.length < 2) return `${hexBytes(response)}  malformed response: shorter than a status word`;
    const sw = (response[response.length - 2]! << 8) | response[response.length - 1]!;
    const data = response.subarray(0, response.length - 2);
    const status = response.subarray(response.length - 2);

    if (this.pendingSelect !== undefined) {
      const selected = sw === 0x9000 || sw >> 8 === 0x61;
      // libcacard deselects the current applet when SELECT by AID fails.
      this.currentApplet = selected ? this.pendingSelect : undefined;
      this.pendingSelect = undefined;
    }

    if (data.length === 0) return `${hexBytes(status)}  ${describeStatusWord(sw)}`;
    const dataText = this.maskResponses ? `<${data.length} bytes masked>` : hexBytes(data);
    return `${dataText} ${hexBytes(status)}  ${describeStatusWord(sw)} (${data.length} data bytes)`;
  }
}
