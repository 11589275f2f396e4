/**
 * The Access Control Applet (AID A0 00 00 00 79 03 00) and its GET ACR
 * instruction (GSC-IS 2.1 §5.3.3.5, libcacard 2.8 cac-aca.c).
 *
 * P1 bit 40 selects libcacard's undocumented extended format, which is
 * reproduced byte for byte. The SimpleTLV format deliberately differs from
 * libcacard in three places, because libcacard copies C structure memory
 * where GSC-IS defines values:
 *
 * - an ACR entry is `[ACRID, type, n, (provider, key) × n]`, where
 *   libcacard sends ACRID, type, applet byte and structure padding;
 * - a service applet entry carries the applet's AID, where libcacard sends
 *   structure bytes;
 * - the access method provider table lists the three providers 1F, 1E and
 *   1D, where libcacard lists 1E, 1D and an empty entry.
 */
import type { AppletResult, CardContext } from '../card/applet.js';
import type { CommandApdu } from '../iso7816/apdu.js';
import { statusOnlyResponse } from '../iso7816/response.js';
import { encodeSimpleTlv, type SimpleTlv } from '../iso7816/simple-tlv.js';
import {
  SW_COMMAND_NOT_ALLOWED,
  SW_DATA_INVALID,
  SW_DATA_NOT_FOUND,
  SW_INCORRECT_P1_P2,
  SW_WRONG_DATA,
} from '../iso7816/status-words.js';
import {
  ACCESS_METHOD_PROVIDER_IDS,
  ACR_TABLE,
  AMP_TABLE_EXTENDED,
  acrApplets,
  encodeAcrObject,
  serviceApplets,
  type AcrApplet,
  type AcrEntry,
  type ServiceApplet,
} from './aca-tables.js';
import { CacApplet } from './cac-applet.js';
import { ACA_AID, ACA_APPLET_INFORMATION, INS_GET_ACR } from './constants.js';
import { appletInformation } from './properties.js';

/** SimpleTLV tags of the GET ACR responses (GSC-IS 2.1 Tables 5-15 to 5-21). */
const TAG_ACR_ENTRY = 0xa0;
const TAG_ACR_COUNT = 0xa1;
const TAG_APPLET_ACR = 0x80;
const TAG_APPLET_COUNT = 0x81;
const TAG_OBJECT_ACR = 0x82;
const TAG_AMP_ENTRY = 0x90;
const TAG_AMP_COUNT = 0x91;
const TAG_AID = 0x92;
const TAG_SERVICE_ENTRY = 0x93;
const TAG_SERVICE_COUNT = 0x94;

const EXTENDED_FORMAT = 0x40;

/** The ACA's long properties (P1 = 40): unnamed values copied from a real card by libcacard. */
const ACA_LONG_PROPERTIES: readonly SimpleTlv[] = [
  appletInformation(ACA_APPLET_INFORMATION),
  { tag: 0x23, value: Uint8Array.of(0x20, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x58) },
  { tag: 0x2a, value: Uint8Array.of(0x02, 0x00) },
  { tag: 0x2b, value: Uint8Array.of(0xa0, 0x00, 0x00, 0x00, 0x79) },
  {
    tag: 0x22,
    value: Uint8Array.of(0x00, 0x00, 0x00, 0xda, 0x01, 0xb4, 0x03, 0x30, 0x00, 0x00, 0x00, 0x70, 0x00, 0x51, 0x02, 0x9d),
  },
  { tag: 0x2c, value: Uint8Array.of(0x00) },
  { tag: 0x20, value: Uint8Array.of(0x08, 0x01) },
  { tag: 0x21, value: Uint8Array.of(0x0f) },
  { tag: 0x32, value: Uint8Array.of(0x03, 0x03, 0x03, 0x03) },
  { tag: 0x30, value: Uint8Array.of(0x08) },
  { tag: 0x31, value: Uint8Array.of(0x06, 0x08, 0x00, 0x00) },
  { tag: 0x24, value: Uint8Array.of(0xff) },
  { tag: 0x25, value: Uint8Array.of(0x01, 0x00) },
  { tag: 0x26, value: Uint8Array.of(0x01) },
];

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** Encodes an ACR entry value in the GSC-IS form: ACRID, type, number of access methods, then each (provider, key). */
export function acrEntryValue(entry: AcrEntry): Uint8Array {
  return Uint8Array.from([entry.acrId, entry.type, entry.accessMethods.length, ...entry.accessMethods.flat()]);
}

function encodeAcrTableExtended(): Uint8Array {
  const bytes: number[] = [];
  for (const entry of ACR_TABLE) {
    bytes.push(entry.accessMethods.length === 2 ? 0x08 : 0x06, entry.acrId, entry.type, entry.appletId);
    for (const [provider, key] of entry.accessMethods) bytes.push(provider, key);
    if (entry.accessMethods.length === 0) bytes.push(0x00, 0x00);
    bytes.push(0x00);
  }
  return Uint8Array.from(bytes);
}

function encodeAppletAcrExtended(applets: readonly AcrApplet[]): Uint8Array {
  const bytes: number[] = [];
  for (const applet of applets) {
    const body: number[] = [applet.appletId, applet.objects.length];
    for (const object of applet.objects) {
      const encoded = encodeAcrObject(object);
      body.push(encoded.length, ...encoded);
    }
    bytes.push(body.length, ...body);
  }
  return Uint8Array.from(bytes);
}

function appletAcrObject(applet: AcrApplet): SimpleTlv {
  const objects = applet.objects.map((object) => ({ tag: TAG_OBJECT_ACR, value: encodeAcrObject(object) }));
  const encodedObjects = encodeSimpleTlv(objects);
  const value = new Uint8Array(encodedObjects.length + 2);
  value[0] = applet.appletId;
  value[1] = applet.objects.length;
  value.set(encodedObjects, 2);
  return { tag: TAG_APPLET_ACR, value };
}

function serviceEntry(appletId: number, aid: Uint8Array): SimpleTlv {
  return { tag: TAG_SERVICE_ENTRY, value: Uint8Array.from([appletId, TAG_AID, aid.length, ...aid]) };
}

export class AcaApplet extends CacApplet {
  private readonly services: readonly ServiceApplet[];
  private readonly applets: readonly AcrApplet[];
  private readonly info = appletInformation(ACA_APPLET_INFORMATION);
  private readonly acrTableSimpleTlv: Uint8Array;
  private readonly acrTableExtended: Uint8Array;
  private readonly appletTableSimpleTlv: Uint8Array;
  private readonly appletTableExtended: Uint8Array;
  private readonly ampTableSimpleTlv: Uint8Array;
  private readonly serviceTableSimpleTlv: Uint8Array;
  private readonly serviceTableExtended: Uint8Array;

  constructor(pkiCount: number) {
    super({
      aid: ACA_AID,
      name: 'ACA',
      properties: [appletInformation(ACA_APPLET_INFORMATION)],
      longProperties: ACA_LONG_PROPERTIES,
      objectIds: [Uint8Array.of(0x03, 0x00)],
    });
    this.services = serviceApplets(pkiCount);
    this.applets = acrApplets(pkiCount);

    this.acrTableSimpleTlv = encodeSimpleTlv([
      this.info,
      { tag: TAG_ACR_COUNT, value: Uint8Array.of(ACR_TABLE.length) },
      ...ACR_TABLE.map((entry) => ({ tag: TAG_ACR_ENTRY, value: acrEntryValue(entry) })),
    ]);
    this.acrTableExtended = encodeAcrTableExtended();
    this.appletTableSimpleTlv = encodeSimpleTlv([
      this.info,
      { tag: TAG_APPLET_COUNT, value: Uint8Array.of(this.applets.length) },
      ...this.applets.map(appletAcrObject),
    ]);
    this.appletTableExtended = encodeAppletAcrExtended(this.applets);
    this.ampTableSimpleTlv = encodeSimpleTlv([
      this.info,
      { tag: TAG_AMP_COUNT, value: Uint8Array.of(ACCESS_METHOD_PROVIDER_IDS.length) },
      ...ACCESS_METHOD_PROVIDER_IDS.map((id) => ({
        tag: TAG_AMP_ENTRY,
        value: Uint8Array.from([id, TAG_AID, ACA_AID.length, ...ACA_AID]),
      })),
    ]);
    this.serviceTableSimpleTlv = encodeSimpleTlv([
      this.info,
      { tag: TAG_SERVICE_COUNT, value: Uint8Array.of(this.services.length) },
      ...this.services.map((service) => serviceEntry(service.appletId, service.aid)),
    ]);
    this.serviceTableExtended = Uint8Array.from(
      this.services.flatMap((service) => [service.appletId, 0x00, service.aid.length, ...service.aid]),
    );
  }

  override process(apdu: CommandApdu, card: CardContext): AppletResult {
    if (apdu.ins === INS_GET_ACR) return this.getAcr(apdu, card);
    return this.processCommon(apdu, card);
  }

  private getAcr(apdu: CommandApdu, card: CardContext): Uint8Array {
    if (apdu.p2 !== 0) return statusOnlyResponse(SW_INCORRECT_P1_P2);
    const extended = (apdu.p1 & EXTENDED_FORMAT) !== 0;
    const lc = apdu.data.length;
    const invalid = statusOnlyResponse.bind(undefined, SW_DATA_INVALID);

    switch (apdu.p1) {
      case 0x00:
      case 0x40:
      case 0x41:
        if (lc !== 0) return invalid();
        return card.respond(extended ? this.acrTableExtended : this.acrTableSimpleTlv, apdu.le);
      case 0x01:
        if (lc !== 1) return invalid();
        return this.acrEntry(apdu.data[0]!, apdu.le, card);
      case 0x10:
      case 0x50:
      case 0x51:
      case 0x52:
        if (lc !== 0) return invalid();
        return card.respond(extended ? this.appletTableExtended : this.appletTableSimpleTlv, apdu.le);
      case 0x11:
        if (lc !== 7) return invalid();
        return this.appletAcrByAid(apdu.data, apdu.le, card);
      case 0x12:
        if (lc !== 2) return invalid();
        return this.objectAcr(apdu.data, apdu.le, card);
      case 0x20:
      case 0x60:
        if (lc !== 0) return invalid();
        return card.respond(extended ? AMP_TABLE_EXTENDED : this.ampTableSimpleTlv, apdu.le);
      case 0x21:
      case 0x61:
        if (lc !== 0) return invalid();
        return card.respond(extended ? this.serviceTableExtended : this.serviceTableSimpleTlv, apdu.le);
      default:
        return statusOnlyResponse(SW_COMMAND_NOT_ALLOWED);
    }
  }

  private acrEntry(acrId: number, le: number, card: CardContext): Uint8Array {
    const entry = ACR_TABLE.find((candidate) => candidate.acrId === acrId);
    if (entry === undefined) return statusOnlyResponse(SW_DATA_NOT_FOUND);
    return card.respond(encodeSimpleTlv([this.info, { tag: TAG_ACR_ENTRY, value: acrEntryValue(entry) }]), le);
  }

  /**
   * Returns the P1 = 11 response. The AID is mapped to an applet ID through the service
   * table, so the ACA's own AID is not found (6A 88). The CCC's service ID 4F
   * has no applet ACR entry (that table calls it F4), so the CCC gets only
   * the applet information, as on libcacard.
   */
  private appletAcrByAid(aid: Uint8Array, le: number, card: CardContext): Uint8Array {
    const service = this.services.find((candidate) => sameBytes(candidate.aid, aid));
    if (service === undefined) return statusOnlyResponse(SW_DATA_NOT_FOUND);
    const entries = this.applets.filter((applet) => applet.appletId === service.appletId).map(appletAcrObject);
    return card.respond(encodeSimpleTlv([this.info, ...entries]), le);
  }

  /** Returns the P1 = 12 response: the first object of that ID (FF FF: the first applet's), or 6A 80. */
  private objectAcr(objectId: Uint8Array, le: number, card: CardContext): Uint8Array {
    for (const applet of this.applets) {
      const object = applet.objects.find((candidate) => sameBytes(candidate.objectId, objectId));
      if (object !== undefined) {
        return card.respond(encodeSimpleTlv([this.info, { tag: TAG_OBJECT_ACR, value: encodeAcrObject(object) }]), le);
      }
    }
    return statusOnlyResponse(SW_WRONG_DATA);
  }
}
