/**
 * Replays what CoolKey 1.1 (Debian coolkey 1.1.0-16) sends to a CAC card
 * with a CCC, command for command, so unit tests can check the card against
 * CoolKey's expectations without a PC/SC stack. docs/coolkey.md lists the
 * commands; the C functions named below are CoolKey's.
 */
import { inflateSync } from 'node:zlib';

/** The card side: one command APDU in, one response APDU out. */
export interface ApduTransmitter {
  transmit(command: Uint8Array): Promise<Uint8Array>;
}

/** Result of CoolKey's certificate load for one PKI instance. */
export type CoolKeyCertificate =
  | { readonly instance: number; readonly ok: true; readonly der: Uint8Array }
  | { readonly instance: number; readonly ok: false; readonly error: string };

/** Status word of a response APDU. */
export function statusWord(response: Uint8Array): number {
  return ((response[response.length - 2] ?? 0) << 8) | (response[response.length - 1] ?? 0);
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex').toUpperCase();
}

const COOLKEY_APPLET_AID = Uint8Array.of(0x62, 0x76, 0x01, 0xff, 0x00, 0x00, 0x00);
const CCC_AID = Uint8Array.of(0xa0, 0x00, 0x00, 0x01, 0x16, 0xdb, 0x00);
const TAG_CARD_URL = 0xf3;
const TAG_CERTIFICATE = 0x70;
const APPLICATION_TYPE_PKI = 0x04;
/** CoolKey reads at most three PKI applets (MAX_CERT_SLOTS). */
const MAX_CERT_SLOTS = 3;
/** CKY_MAX_READ_CHUNK_SIZE and CKY_MAX_WRITE_CHUNK_SIZE. */
const READ_CHUNK = 255;
const WRITE_CHUNK = 240;

/** A PKI applet as CoolKey finds it in the CCC: applet AID and file ID bytes. */
export interface CoolKeyPkiLocation {
  readonly aid: Uint8Array;
  readonly fileId: Uint8Array;
}

export class CoolKeyClient {
  constructor(private readonly card: ApduTransmitter) {}

  /**
   * Sends one command and, like CKYCardConnection_ExchangeAPDU, fetches
   * `61 xx` data with GET RESPONSE. Returns the data and the final status word.
   */
  async exchange(command: Uint8Array): Promise<{ data: Uint8Array; sw: number }> {
    let response = await this.card.transmit(command);
    const chunks: Uint8Array[] = [];
    while ((statusWord(response) & 0xff00) === 0x6100) {
      chunks.push(response.subarray(0, response.length - 2));
      const le = statusWord(response) & 0xff;
      response = await this.card.transmit(Uint8Array.of(0x00, 0xc0, 0x00, 0x00, le));
    }
    chunks.push(response.subarray(0, response.length - 2));
    return { data: Buffer.concat(chunks), sw: statusWord(response) };
  }

  private async expectSuccess(command: Uint8Array): Promise<Uint8Array> {
    const { data, sw } = await this.exchange(command);
    if (sw !== 0x9000) throw new Error(`command ${hex(command)} answered ${sw.toString(16).toUpperCase()}`);
    return data;
  }

  /** SELECT by AID as CKYAppletFactory_SelectFile builds it: P2 = 00 and no Le. */
  selectAid(aid: Uint8Array): Promise<{ data: Uint8Array; sw: number }> {
    return this.exchange(Uint8Array.of(0x00, 0xa4, 0x04, 0x00, aid.length, ...aid));
  }

  /** READ BUFFER of the whole file, as CACApplet_ReadFile reads it (class 80, no Le, length first). */
  async readFile(type: 1 | 2): Promise<Uint8Array> {
    const read = (offset: number, count: number): Promise<Uint8Array> =>
      this.expectSuccess(Uint8Array.of(0x80, 0x52, offset >> 8, offset & 0xff, 0x02, type, count));

    const parts = [await read(0, 2)];
    const size = ((parts[0]?.[0] ?? 0) | ((parts[0]?.[1] ?? 0) << 8)) + 2;
    let offset = parts[0]?.length ?? 0;
    while (offset < size) {
      const part = await read(offset, Math.min(size - offset, READ_CHUNK));
      if (part.length === 0) throw new Error(`READ BUFFER of file ${type} returned no data at offset ${offset}`);
      parts.push(part);
      offset += part.length;
    }
    return Buffer.concat(parts);
  }

  /**
   * Runs CoolKey's card detection (Slot::connectToToken, Slot::getCACAid)
   * and returns the PKI applets it found, or throws when CoolKey would
   * treat the card as unknown.
   */
  async detectCac(): Promise<CoolKeyPkiLocation[]> {
    const coolKeyApplet = await this.selectAid(COOLKEY_APPLET_AID);
    if (coolKeyApplet.sw === 0x9000) throw new Error('the card has a CoolKey applet; CoolKey would not use the CAC path');
    const ccc = await this.selectAid(CCC_AID);
    if (ccc.sw !== 0x9000) throw new Error(`SELECT of the CCC answered ${ccc.sw.toString(16)}: CoolKey would take the old-CAC path`);

    const tags = await this.readFile(1);
    const values = await this.readFile(2);
    const found: CoolKeyPkiLocation[] = [];
    let tagOffset = 2;
    let valueOffset = 2;
    while (found.length < MAX_CERT_SLOTS && tagOffset < tags.length && valueOffset < values.length) {
      const tag = tags[tagOffset] ?? 0;
      let length = tags[tagOffset + 1] ?? 0;
      tagOffset += 2;
      if (length === 0xff) {
        length = (tags[tagOffset] ?? 0) | ((tags[tagOffset + 1] ?? 0) << 8);
        tagOffset += 2;
      }
      const url = values.subarray(valueOffset, valueOffset + length);
      valueOffset += length;
      if (tag !== TAG_CARD_URL || length < 10 || url[5] !== APPLICATION_TYPE_PKI) continue;
      found.push({ aid: Uint8Array.of(...url.subarray(0, 5), ...url.subarray(8, 10)), fileId: url.slice(6, 8) });
    }
    if (found.length === 0) throw new Error('the CCC lists no PKI applet; CoolKey would treat the card as unknown');
    return found;
  }

  /** Selects a PKI applet and its file as Slot::selectCACApplet does. */
  async selectPki(location: CoolKeyPkiLocation): Promise<void> {
    await this.expectSuccess(Uint8Array.of(0x00, 0xa4, 0x04, 0x00, location.aid.length, ...location.aid));
    await this.expectSuccess(Uint8Array.of(0x00, 0xa4, 0x02, 0x0c, 0x02, ...location.fileId));
  }

  /**
   * Loads a certificate as CoolKey 1.1's Slot::loadCACCert does on a card
   * with a CCC: the value of tag 70, always passed to zlib's uncompress().
   */
  async loadCertificate(location: CoolKeyPkiLocation, instance: number): Promise<CoolKeyCertificate> {
    await this.selectPki(location);
    const tags = await this.readFile(1);
    const values = await this.readFile(2);

    let certificate: Uint8Array | undefined;
    let tagOffset = 2;
    let valueOffset = 2;
    while (tagOffset < tags.length && valueOffset < values.length) {
      const tag = tags[tagOffset] ?? 0;
      let length = tags[tagOffset + 1] ?? 0;
      tagOffset += 2;
      if (length === 0xff) {
        length = (tags[tagOffset] ?? 0) | ((tags[tagOffset + 1] ?? 0) << 8);
        tagOffset += 2;
      }
      if (tag === TAG_CERTIFICATE) {
        certificate = values.subarray(valueOffset, valueOffset + length);
        break;
      }
      valueOffset += length;
    }
    if (certificate === undefined) return { instance, ok: false, error: 'no certificate object (tag 70)' };

    try {
      return { instance, ok: true, der: new Uint8Array(inflateSync(certificate)) };
    } catch (error) {
      return { instance, ok: false, error: `Corrupted compressed CAC Cert (${(error as Error).message})` };
    }
  }

  /** Runs detection and loads every certificate CoolKey would load. */
  async loadCertificates(): Promise<CoolKeyCertificate[]> {
    const locations = await this.detectCac();
    const results: CoolKeyCertificate[] = [];
    for (const [instance, location] of locations.entries()) results.push(await this.loadCertificate(location, instance));
    return results;
  }

  /** VERIFY as CACAPDUFactory_VerifyPIN builds it: the PIN cut to 8 bytes and padded with FF. */
  async verifyPin(pin: string): Promise<number> {
    const block = Buffer.alloc(8, 0xff);
    Buffer.from(pin, 'utf8').copy(block, 0, 0, 8);
    const { sw } = await this.exchange(Uint8Array.of(0x00, 0x20, 0x00, 0x00, 0x08, ...block));
    return sw;
  }

  /** Raw RSA through SIGN/DECRYPT as CACApplet_SignDecrypt sends it: 240-byte blocks with P1 = 80, then P1 = 00. */
  async signDecrypt(location: CoolKeyPkiLocation, input: Uint8Array): Promise<{ data: Uint8Array; sw: number }> {
    await this.selectPki(location);
    let offset = 0;
    for (; input.length - offset > WRITE_CHUNK; offset += WRITE_CHUNK) {
      const block = input.subarray(offset, offset + WRITE_CHUNK);
      const step = await this.exchange(Uint8Array.of(0x00, 0x42, 0x80, 0x00, block.length, ...block));
      if (step.sw !== 0x9000) return step;
    }
    const last = input.subarray(offset);
    return this.exchange(Uint8Array.of(0x00, 0x42, 0x00, 0x00, last.length, ...last));
  }
}
