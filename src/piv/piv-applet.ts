/**
 * The PIV card application (NIST SP 800-73-4 part 2) as an applet of the
 * card engine: SELECT with the full or right-truncated AID, GET DATA, the
 * PIN instructions, GENERAL AUTHENTICATE, key generation, PUT DATA and
 * command chaining (CLA 10). GET RESPONSE goes on to the card engine.
 */
import type { Applet, AppletResult, CardContext } from '../card/applet.js';
import type { CommandApdu } from '../iso7816/apdu.js';
import { encodeBerTlv } from '../iso7816/ber-tlv.js';
import { statusOnlyResponse } from '../iso7816/response.js';
import {
  SW_CLA_NOT_SUPPORTED,
  SW_CONDITIONS_NOT_SATISFIED,
  SW_DATA_NOT_FOUND,
  SW_FILE_NOT_FOUND,
  SW_FUNCTION_NOT_SUPPORTED,
  SW_INCORRECT_P1_P2,
  SW_INS_NOT_SUPPORTED,
  SW_SECURITY_STATUS_NOT_SATISFIED,
  SW_SUCCESS,
  SW_WRONG_DATA,
  SW_WRONG_LENGTH,
  formatStatusWord,
} from '../iso7816/status-words.js';
import { logger } from '../log/logger.js';
import {
  PIN_PROTECTED_CONTAINERS,
  PIV_AID,
  PIV_RID_LENGTH,
  REFERENCE_PIV_PIN,
  REFERENCE_PUK,
  SW_LAST_COMMAND_OF_CHAIN_EXPECTED,
  TAG_DATA,
  TAG_DISCOVERY_OBJECT,
  TAG_BIOMETRIC_GROUP_TEMPLATE,
  TAG_TAG_LIST,
} from './constants.js';
import { generalAuthenticate } from './general-authenticate.js';
import type { PivApplication } from './piv-application.js';
import { generateAsymmetricKeyPair, putData, setManagementKey } from './provisioning.js';
import { MIN_VALUE_LENGTH, PADDED_LENGTH, unpadReferenceValue, type PivReferenceData } from './reference-data.js';
import { decodeObjects, tagFromBytes } from './tlv-input.js';
import { importAsymmetricKey, resetCard, setPinRetries } from './yubikey-extensions.js';

const log = logger.child({ component: 'piv' });

const INS_SELECT = 0xa4;
const INS_VERIFY = 0x20;
const INS_CHANGE_REFERENCE_DATA = 0x24;
const INS_RESET_RETRY_COUNTER = 0x2c;
const INS_GENERATE_ASYMMETRIC_KEY_PAIR = 0x47;
const INS_GENERAL_AUTHENTICATE = 0x87;
const INS_GET_RESPONSE = 0xc0;
const INS_GET_DATA = 0xcb;
const INS_PUT_DATA = 0xdb;
/** YubiKey's SET MANAGEMENT KEY, IMPORT ASYMMETRIC KEY, SET PIN RETRIES and RESET. */
const INS_SET_MANAGEMENT_KEY = 0xff;
const INS_IMPORT_ASYMMETRIC_KEY = 0xfe;
const INS_SET_PIN_RETRIES = 0xfa;
const INS_RESET = 0xfb;

/** CLA bit of command chaining (ISO/IEC 7816-4 5.4.1). */
const CLA_CHAINING = 0x10;

/** Largest command data a chain may collect, well above a 16 KiB data object. */
export const MAX_CHAINED_DATA = 65536;

/** Application label in the application property template. */
const APPLICATION_LABEL = 'virtcard PIV';

/** Builds the application property template (SP 800-73-4 part 2, table 3) that SELECT returns. */
export function buildApplicationPropertyTemplate(): Uint8Array {
  const algorithms = [0x03, 0x08, 0x0a, 0x0c, 0x07, 0x11, 0x14].map((id) => ({ tag: 0x80, value: Uint8Array.of(id) }));
  return encodeBerTlv({
    tag: 0x61,
    value: new Uint8Array(0),
    children: [
      { tag: 0x4f, value: PIV_AID.subarray(PIV_RID_LENGTH) },
      { tag: 0x79, value: new Uint8Array(0), children: [{ tag: 0x4f, value: PIV_AID.subarray(0, PIV_RID_LENGTH) }] },
      { tag: 0x50, value: new TextEncoder().encode(APPLICATION_LABEL) },
      { tag: 0xac, value: new Uint8Array(0), children: [...algorithms, { tag: 0x06, value: Uint8Array.of(0x00) }] },
    ],
  });
}

/** Returns whether `requested` is the PIV AID or a right-truncation of it at least as long as the RID. */
export function isPivAid(requested: Uint8Array): boolean {
  if (requested.length < PIV_RID_LENGTH || requested.length > PIV_AID.length) return false;
  return requested.every((byte, index) => byte === PIV_AID[index]);
}

interface PendingChain {
  readonly ins: number;
  readonly p1: number;
  readonly p2: number;
  readonly parts: Uint8Array[];
  size: number;
}

export class PivApplet implements Applet {
  readonly aid = PIV_AID;
  readonly name = 'PIV';
  private chain: PendingChain | undefined;

  constructor(private readonly application: PivApplication) {}

  matchesAid(requested: Uint8Array): boolean {
    return isPivAid(requested);
  }

  selectResponse(): Uint8Array {
    return buildApplicationPropertyTemplate();
  }

  onSelect(): void {
    this.chain = undefined;
  }

  /** Drops a half-received chain; the card does this on reset. */
  reset(): void {
    this.chain = undefined;
  }

  process(apdu: CommandApdu, card: CardContext): AppletResult | Promise<AppletResult> {
    // Bits 1-0 are the logical channel, which the card engine has already used.
    if ((apdu.cla & ~(CLA_CHAINING | 0x03)) !== 0) return statusOnlyResponse(SW_CLA_NOT_SUPPORTED);
    if (apdu.ins === INS_GET_RESPONSE && this.chain === undefined) return undefined;

    const command = this.collectChain(apdu);
    if (command instanceof Uint8Array) return command;
    return this.dispatch(command, card);
  }

  /**
   * Adds a chained command to the pending chain (status 90 00), or returns
   * the whole command once its last part arrives. A command with another
   * header than the chain's drops the chain and gets 68 83.
   */
  private collectChain(apdu: CommandApdu): CommandApdu | Uint8Array {
    const chain = this.chain;
    const chained = (apdu.cla & CLA_CHAINING) !== 0;
    if (chain !== undefined && (chain.ins !== apdu.ins || chain.p1 !== apdu.p1 || chain.p2 !== apdu.p2)) {
      this.chain = undefined;
      return statusOnlyResponse(SW_LAST_COMMAND_OF_CHAIN_EXPECTED);
    }

    if (chained) {
      const pending = chain ?? { ins: apdu.ins, p1: apdu.p1, p2: apdu.p2, parts: [], size: 0 };
      pending.parts.push(Uint8Array.from(apdu.data));
      pending.size += apdu.data.length;
      if (pending.size > MAX_CHAINED_DATA) {
        this.chain = undefined;
        return statusOnlyResponse(SW_WRONG_LENGTH);
      }
      this.chain = pending;
      return statusOnlyResponse(SW_SUCCESS);
    }

    if (chain === undefined) return apdu;
    this.chain = undefined;
    if (chain.size + apdu.data.length > MAX_CHAINED_DATA) return statusOnlyResponse(SW_WRONG_LENGTH);
    const data = Uint8Array.from(Buffer.concat([...chain.parts, apdu.data]));
    return { ...apdu, cla: apdu.cla & ~CLA_CHAINING, data };
  }

  private dispatch(apdu: CommandApdu, card: CardContext): AppletResult | Promise<AppletResult> {
    switch (apdu.ins) {
      case INS_SELECT:
        return this.select(apdu, card);
      case INS_GET_DATA:
        return this.getData(apdu, card);
      case INS_VERIFY:
        return this.verify(apdu);
      case INS_CHANGE_REFERENCE_DATA:
        return this.changeReferenceData(apdu);
      case INS_RESET_RETRY_COUNTER:
        return this.resetRetryCounter(apdu);
      case INS_GENERAL_AUTHENTICATE:
        return generalAuthenticate(this.application, apdu, card);
      case INS_GENERATE_ASYMMETRIC_KEY_PAIR:
        return generateAsymmetricKeyPair(this.application, apdu, card);
      case INS_PUT_DATA:
        return putData(this.application, apdu);
      case INS_SET_MANAGEMENT_KEY:
        return setManagementKey(this.application, apdu);
      case INS_IMPORT_ASYMMETRIC_KEY:
        return importAsymmetricKey(this.application, apdu);
      case INS_SET_PIN_RETRIES:
        return setPinRetries(this.application, apdu);
      case INS_RESET:
        return resetCard(this.application, apdu);
      case INS_GET_RESPONSE:
        // Only a chain of GET RESPONSE parts ends here, and GET RESPONSE takes no command data to chain.
        return statusOnlyResponse(SW_LAST_COMMAND_OF_CHAIN_EXPECTED);
      default:
        return statusOnlyResponse(SW_INS_NOT_SUPPORTED);
    }
  }

  /**
   * Processes SELECT while PIV is selected. Selecting PIV again returns the
   * template. Any other AID fails with 6A 82 and leaves PIV selected, so a
   * host that probes for other applets (as yubico-piv-tool does for the
   * YubiKey OTP applet) keeps its session.
   */
  private select(apdu: CommandApdu, card: CardContext): Uint8Array {
    if (apdu.p1 !== 0x04) return statusOnlyResponse(SW_FUNCTION_NOT_SUPPORTED);
    if (!isPivAid(apdu.data)) return statusOnlyResponse(SW_FILE_NOT_FOUND);
    this.onSelect();
    return card.respond(this.selectResponse(), apdu.le);
  }

  private getData(apdu: CommandApdu, card: CardContext): Uint8Array {
    if (apdu.p1 !== 0x3f || apdu.p2 !== 0xff) return statusOnlyResponse(SW_INCORRECT_P1_P2);
    const objects = decodeObjects(apdu.data);
    const tagList = objects?.length === 1 ? objects[0] : undefined;
    const tag = tagList?.tag === TAG_TAG_LIST ? tagFromBytes(tagList.value) : undefined;
    if (tag === undefined) return statusOnlyResponse(SW_WRONG_DATA);

    if (PIN_PROTECTED_CONTAINERS.has(tag) && !this.application.pin.verified) {
      return statusOnlyResponse(SW_SECURITY_STATUS_NOT_SATISFIED);
    }
    const contents = this.application.getObject(tag);
    if (contents === undefined) return statusOnlyResponse(SW_FILE_NOT_FOUND);

    // The discovery object and the biometric group template are returned under their own tag, the rest inside 53.
    const outerTag = tag === TAG_DISCOVERY_OBJECT || tag === TAG_BIOMETRIC_GROUP_TEMPLATE ? tag : TAG_DATA;
    return card.respond(encodeBerTlv({ tag: outerTag, value: contents }), apdu.le);
  }

  /** Returns the PIN or PUK that P2 names, or undefined for other references. */
  private referenceData(p2: number): PivReferenceData | undefined {
    if (p2 === REFERENCE_PIV_PIN) return this.application.pin;
    if (p2 === REFERENCE_PUK) return this.application.puk;
    return undefined;
  }

  /**
   * Processes VERIFY: P2 80 (PIN) or 81 (PUK, which SP 800-73-4 checks only
   * inside RESET RETRY COUNTER; this card also verifies it alone). P1 FF
   * without data clears the verified state.
   */
  private async verify(apdu: CommandApdu): Promise<Uint8Array> {
    const reference = this.referenceData(apdu.p2);
    if (apdu.p1 !== 0x00 && apdu.p1 !== 0xff) return statusOnlyResponse(SW_INCORRECT_P1_P2);
    if (reference === undefined) return statusOnlyResponse(SW_DATA_NOT_FOUND);

    if (apdu.p1 === 0xff) {
      if (apdu.data.length !== 0) return statusOnlyResponse(SW_WRONG_DATA);
      reference.resetSecurityStatus();
      if (reference === this.application.pin) this.application.revokePinUse();
      return statusOnlyResponse(SW_SUCCESS);
    }
    if (apdu.data.length === 0) return statusOnlyResponse(reference.status());

    const value = unpadReferenceValue(apdu.data);
    if (value === undefined) return statusOnlyResponse(SW_WRONG_DATA);
    const sw = await reference.check(value);
    if (sw === SW_SUCCESS && reference === this.application.pin) this.application.grantPinUse();
    await this.application.save();
    log.info({ reference: apdu.p2.toString(16), result: formatStatusWord(sw), triesLeft: reference.triesLeft }, 'VERIFY');
    return statusOnlyResponse(sw);
  }

  /** Splits 16 bytes of command data into two unpadded values, or returns undefined when either is invalid. */
  private static splitValues(data: Uint8Array): [Uint8Array, Uint8Array] | undefined {
    if (data.length !== 2 * PADDED_LENGTH) return undefined;
    const current = unpadReferenceValue(data.subarray(0, PADDED_LENGTH));
    const next = unpadReferenceValue(data.subarray(PADDED_LENGTH));
    if (current === undefined || next === undefined || next.length < MIN_VALUE_LENGTH) return undefined;
    return [current, next];
  }

  /** Processes CHANGE REFERENCE DATA: the current and the new value of the PIN (80) or PUK (81), 8 bytes each. */
  private async changeReferenceData(apdu: CommandApdu): Promise<Uint8Array> {
    const reference = this.referenceData(apdu.p2);
    if (apdu.p1 !== 0x00) return statusOnlyResponse(SW_INCORRECT_P1_P2);
    if (reference === undefined) return statusOnlyResponse(SW_DATA_NOT_FOUND);
    if (!reference.changeable) return statusOnlyResponse(SW_CONDITIONS_NOT_SATISFIED);
    const values = PivApplet.splitValues(apdu.data);
    if (values === undefined) return statusOnlyResponse(SW_WRONG_DATA);

    const sw = await reference.check(values[0]);
    if (sw === SW_SUCCESS) reference.replace(values[1]);
    await this.application.save();
    log.info({ reference: apdu.p2.toString(16), result: formatStatusWord(sw) }, 'CHANGE REFERENCE DATA');
    return statusOnlyResponse(sw);
  }

  /** Processes RESET RETRY COUNTER: the PUK and the new PIN, 8 bytes each; a right PUK unblocks the PIN. */
  private async resetRetryCounter(apdu: CommandApdu): Promise<Uint8Array> {
    if (apdu.p1 !== 0x00) return statusOnlyResponse(SW_INCORRECT_P1_P2);
    if (apdu.p2 !== REFERENCE_PIV_PIN) return statusOnlyResponse(SW_DATA_NOT_FOUND);
    const { pin, puk } = this.application;
    if (!pin.changeable) return statusOnlyResponse(SW_CONDITIONS_NOT_SATISFIED);
    const values = PivApplet.splitValues(apdu.data);
    if (values === undefined) return statusOnlyResponse(SW_WRONG_DATA);

    const sw = await puk.check(values[0]);
    puk.resetSecurityStatus();
    if (sw === SW_SUCCESS) pin.replace(values[1]);
    await this.application.save();
    log.info({ result: formatStatusWord(sw), pukTriesLeft: puk.triesLeft }, 'RESET RETRY COUNTER');
    return statusOnlyResponse(sw);
  }
}
