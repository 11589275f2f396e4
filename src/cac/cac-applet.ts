/**
 * Instructions every CAC applet shares (libcacard 2.8 cac.c): GET
 * PROPERTIES, SELECT of an object by P1 = 02, and, for applets with
 * buffers, READ BUFFER and UPDATE BUFFER. CAC applets do not check CLA.
 */
import type { Applet, AppletResult, CardContext } from '../card/applet.js';
import type { CommandApdu } from '../iso7816/apdu.js';
import { encodeResponseApdu, statusOnlyResponse } from '../iso7816/response.js';
import { encodeSimpleTlv, type SimpleTlv } from '../iso7816/simple-tlv.js';
import {
  SW_COMMAND_NOT_ALLOWED,
  SW_DATA_INVALID,
  SW_DATA_NOT_FOUND,
  SW_FILE_NOT_FOUND,
  SW_INCORRECT_P1_P2,
  SW_INS_NOT_SUPPORTED,
  SW_SUCCESS,
  wrongLe,
} from '../iso7816/status-words.js';
import type { BufferFiles } from './buffer-files.js';
import {
  INS_GET_PROPERTIES,
  INS_GET_RESPONSE,
  INS_READ_BUFFER,
  INS_SELECT,
  INS_UPDATE_BUFFER,
  INS_VERIFY,
} from './constants.js';

const SELECT_OBJECT = 0x02;
const PROPERTIES_ALL = 0x01;
const PROPERTIES_BY_TAG = 0x02;
const PROPERTIES_LONG = 0x40;
const FILE_TAG_LENGTH = 0x01;
const FILE_VALUE = 0x02;

export interface CacAppletConfig {
  readonly aid: Uint8Array;
  readonly name: string;
  /** Properties returned for P1 = 01; P1 = 02 looks tags up among these. */
  readonly properties: readonly SimpleTlv[];
  /** Properties returned for the undocumented P1 = 40. */
  readonly longProperties: readonly SimpleTlv[];
  /** 2-byte object identifiers SELECT with P1 = 02 accepts. */
  readonly objectIds: readonly Uint8Array[];
}

/** A CAC applet with only the common instructions; the ACA builds on it. */
export class CacApplet implements Applet {
  readonly aid: Uint8Array;
  readonly name: string;
  private readonly properties: readonly SimpleTlv[];
  private readonly encodedProperties: Uint8Array;
  private readonly encodedLongProperties: Uint8Array;
  private readonly objectIds: readonly Uint8Array[];

  constructor(config: CacAppletConfig) {
    this.aid = config.aid;
    this.name = config.name;
    this.properties = config.properties;
    this.objectIds = config.objectIds;
    this.encodedProperties = encodeSimpleTlv(config.properties);
    this.encodedLongProperties = encodeSimpleTlv(config.longProperties);
  }

  process(apdu: CommandApdu, card: CardContext): AppletResult | Promise<AppletResult> {
    return this.processCommon(apdu, card);
  }

  /** Handles GET PROPERTIES and SELECT P1 = 02, passes SELECT by AID, VERIFY and GET RESPONSE on, returns 6D 00 otherwise. */
  protected processCommon(apdu: CommandApdu, card: CardContext): AppletResult {
    switch (apdu.ins) {
      case INS_GET_PROPERTIES:
        return this.getProperties(apdu, card);
      case INS_SELECT:
        return apdu.p1 === SELECT_OBJECT ? this.selectObject(apdu) : undefined;
      case INS_GET_RESPONSE:
      case INS_VERIFY:
        return undefined;
      default:
        return statusOnlyResponse(SW_INS_NOT_SUPPORTED);
    }
  }

  private getProperties(apdu: CommandApdu, card: CardContext): Uint8Array {
    if (apdu.p2 !== 0) return statusOnlyResponse(SW_INCORRECT_P1_P2);

    let encoded: Uint8Array;
    switch (apdu.p1) {
      case PROPERTIES_ALL:
        if (apdu.data.length !== 0) return statusOnlyResponse(SW_DATA_INVALID);
        encoded = this.encodedProperties;
        break;
      case PROPERTIES_BY_TAG: {
        if (apdu.data.length === 0) return statusOnlyResponse(SW_DATA_INVALID);
        const selected: SimpleTlv[] = [];
        for (const tag of apdu.data) {
          const found = this.properties.find((property) => property.tag === tag);
          if (found === undefined) return statusOnlyResponse(SW_DATA_NOT_FOUND);
          selected.push(found);
        }
        encoded = encodeSimpleTlv(selected);
        break;
      }
      case PROPERTIES_LONG:
        encoded = this.encodedLongProperties;
        break;
      default:
        // P1 = 00 requests GSC-IS 2.0 properties, which libcacard does not provide either.
        return statusOnlyResponse(SW_INCORRECT_P1_P2);
    }

    // Only GET PROPERTIES rejects a too-large Le with 6C xx, as libcacard does.
    if (apdu.le > encoded.length) return statusOnlyResponse(wrongLe(encoded.length));
    return card.respond(encoded, apdu.le);
  }

  private selectObject(apdu: CommandApdu): Uint8Array {
    if (apdu.data.length !== 2) return statusOnlyResponse(SW_DATA_INVALID);
    const [high, low] = apdu.data;
    const found = this.objectIds.some((id) => id[0] === high && id[1] === low);
    return statusOnlyResponse(found ? SW_SUCCESS : SW_FILE_NOT_FOUND);
  }
}

/**
 * A CAC applet with a TL file and a V file: READ BUFFER returns parts of
 * them, UPDATE BUFFER is rejected with `updateStatusWord` (69 00 for
 * read-only applets).
 */
export class BufferApplet extends CacApplet {
  constructor(
    config: CacAppletConfig,
    protected files: BufferFiles | undefined,
    private readonly updateStatusWord: number = SW_COMMAND_NOT_ALLOWED,
  ) {
    super(config);
  }

  override process(apdu: CommandApdu, card: CardContext): AppletResult | Promise<AppletResult> {
    switch (apdu.ins) {
      case INS_READ_BUFFER:
        return this.readBuffer(apdu, card);
      case INS_UPDATE_BUFFER:
        return statusOnlyResponse(this.updateStatusWord);
      default:
        return this.processCommon(apdu, card);
    }
  }

  /**
   * Handles READ BUFFER: data = file type (01 TL, 02 V) and byte count,
   * P1 P2 = offset into the file including its 2-byte length prefix.
   */
  protected readBuffer(apdu: CommandApdu, card: CardContext): Uint8Array {
    if (apdu.data.length !== 2) return statusOnlyResponse(SW_DATA_INVALID);

    const files = this.files;
    let file: Uint8Array;
    if (apdu.data[0] === FILE_VALUE) file = files?.value ?? new Uint8Array(0);
    else if (apdu.data[0] === FILE_TAG_LENGTH) file = files?.tagLength ?? new Uint8Array(0);
    else return statusOnlyResponse(SW_DATA_INVALID);

    const offset = (apdu.p1 << 8) | apdu.p2;
    const size = Math.min(apdu.data[1]!, file.length - offset);
    if (size < 0) return statusOnlyResponse(SW_INCORRECT_P1_P2);
    if (size === 0) return encodeResponseApdu(file, SW_SUCCESS, 0);
    return card.respond(file.subarray(offset, offset + size), apdu.le);
  }
}
