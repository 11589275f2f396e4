/**
 * The tables behind GET ACR in the Access Control Applet, with the content
 * libcacard 2.8 serves (cac-aca.c; GSC-IS 2.1 §5.3.3.5, Tables 5-15 to 5-21).
 */
import { ACCESS_CONTROL_FILE_AID, CCC_AID, dodAid, pkiAid } from './constants.js';

/** One access method: provider ID and key ID or reference. */
export type AccessMethod = readonly [provider: number, key: number];

/** One entry of the ACR table. */
export interface AcrEntry {
  readonly acrId: number;
  /** ACR type (GSC-IS Table 3-2): 00 always, 01 never, 02 XAUTH, 03 XAUTH or PIN, 04 GP secure channel, 06 PIN. */
  readonly type: number;
  /** Applet byte libcacard adds in the extended format; its meaning is undocumented. */
  readonly appletId: number;
  readonly accessMethods: readonly AccessMethod[];
}

export const ACR_TABLE: readonly AcrEntry[] = [
  { acrId: 0x00, type: 0x00, appletId: 0x00, accessMethods: [] },
  { acrId: 0x01, type: 0x01, appletId: 0x00, accessMethods: [] },
  { acrId: 0x02, type: 0x00, appletId: 0x1f, accessMethods: [] },
  { acrId: 0x06, type: 0x06, appletId: 0x00, accessMethods: [[0x1e, 0x00]] },
  { acrId: 0x04, type: 0x04, appletId: 0x1f, accessMethods: [[0x1f, 0x21]] },
  { acrId: 0x08, type: 0x03, appletId: 0x00, accessMethods: [[0x1d, 0x01], [0x1e, 0x01]] },
  { acrId: 0x09, type: 0x02, appletId: 0x00, accessMethods: [[0x1d, 0x01]] },
  { acrId: 0x0a, type: 0x03, appletId: 0x00, accessMethods: [[0x1d, 0x03], [0x1e, 0x01]] },
  { acrId: 0x0b, type: 0x02, appletId: 0x00, accessMethods: [[0x1d, 0x00]] },
  { acrId: 0x10, type: 0x00, appletId: 0x1e, accessMethods: [] },
  { acrId: 0x11, type: 0x00, appletId: 0x1d, accessMethods: [] },
];

/** One entry of the service applet table: applet ID and AID. */
export interface ServiceApplet {
  readonly appletId: number;
  readonly aid: Uint8Array;
}

/** Returns the service applet table: PKI applets 61 + i first, then the static applets. */
export function serviceApplets(pkiCount: number): ServiceApplet[] {
  const pki = Array.from({ length: pkiCount }, (_, i) => ({ appletId: 0x61 + i, aid: pkiAid(i) }));
  return [
    ...pki,
    { appletId: 0x40, aid: ACCESS_CONTROL_FILE_AID },
    { appletId: 0x4f, aid: CCC_AID },
    { appletId: 0x4b, aid: dodAid(0x02, 0xfb) },
    { appletId: 0x41, aid: dodAid(0x02, 0x00) },
    { appletId: 0x42, aid: dodAid(0x02, 0x01) },
    { appletId: 0x4e, aid: dodAid(0x02, 0xfe) },
    { appletId: 0x4d, aid: dodAid(0x02, 0xfd) },
    { appletId: 0x50, aid: dodAid(0x02, 0xf2) },
    { appletId: 0x51, aid: dodAid(0x02, 0xf0) },
    { appletId: 0x52, aid: dodAid(0x02, 0xf1) },
    { appletId: 0x44, aid: dodAid(0x12, 0x01) },
    { appletId: 0x45, aid: dodAid(0x12, 0x02) },
  ];
}

/** Access method providers: all three are served by the ACA itself. */
export const ACCESS_METHOD_PROVIDER_IDS: readonly number[] = [0x1f, 0x1e, 0x1d];

/**
 * The extended-format provider table exactly as libcacard sends it:
 * per provider `<id> 00 07 <AID> <4 bytes>`.
 */
export const AMP_TABLE_EXTENDED = Uint8Array.of(
  0x1f, 0x00, 0x07, 0xa0, 0x00, 0x00, 0x00, 0x79, 0x03, 0x00, 0x12, 0x00, 0x00, 0x00,
  0x1e, 0x00, 0x07, 0xa0, 0x00, 0x00, 0x00, 0x79, 0x03, 0x00, 0x10, 0x01, 0x00, 0x00,
  0x1d, 0x00, 0x07, 0xa0, 0x00, 0x00, 0x00, 0x79, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00,
);

/** Instruction rule configuration bits: which of P1, P2 and the first data byte follow the config byte. */
export const RULE_P1 = 0x01;
export const RULE_P2 = 0x02;
export const RULE_DATA1 = 0x04;

/** One rule: instruction (with optional P1, P2 or first data byte) → ACRID. */
export interface InstructionRule {
  readonly ins: number;
  readonly config: number;
  readonly p1?: number;
  readonly p2?: number;
  readonly data1?: number;
  readonly acrId: number;
}

export interface AcrObject {
  readonly objectId: Uint8Array;
  readonly rules: readonly InstructionRule[];
}

export interface AcrApplet {
  readonly appletId: number;
  readonly objects: readonly AcrObject[];
}

const rule = (ins: number, acrId: number): InstructionRule => ({ ins, config: 0, acrId });
const ruleP1 = (ins: number, p1: number, acrId: number): InstructionRule => ({ ins, config: RULE_P1, p1, acrId });
const ruleData1 = (ins: number, data1: number, acrId: number): InstructionRule => ({ ins, config: RULE_DATA1, data1, acrId });
const oid = (high: number, low: number): Uint8Array => Uint8Array.of(high, low);

const UPDATE_BUFFER = 0x58;
const READ_BUFFER = 0x52;
const SIGN_DECRYPT = 0x42;
const VERIFY = 0x20;
const EXTERNAL_AUTHENTICATE = 0x82;
const GET_CHALLENGE = 0x84;
const READ_BINARY = 0xb0;

/** The card-wide object FF FF of most static applets: EXTERNAL AUTHENTICATE, GET CHALLENGE, VERIFY. */
const COMMON_OBJECT: AcrObject = {
  objectId: oid(0xff, 0xff),
  rules: [ruleP1(EXTERNAL_AUTHENTICATE, 0x00, 0x11), rule(GET_CHALLENGE, 0x11), rule(VERIFY, 0x10)],
};

function readableObject(objectId: Uint8Array, updateAcr: number): AcrObject {
  return { objectId, rules: [rule(UPDATE_BUFFER, updateAcr), rule(READ_BUFFER, 0x00)] };
}

function splitReadObject(objectId: Uint8Array, updateAcr: number, valueReadAcr: number): AcrObject {
  return {
    objectId,
    rules: [rule(UPDATE_BUFFER, updateAcr), ruleData1(READ_BUFFER, 0x01, 0x00), rule(READ_BUFFER, valueReadAcr)],
  };
}

const EMPTY_APPLET_OBJECT: AcrObject = {
  objectId: oid(0xff, 0xff),
  rules: [
    rule(UPDATE_BUFFER, 0x04),
    rule(READ_BUFFER, 0x00),
    ruleP1(EXTERNAL_AUTHENTICATE, 0x00, 0x11),
    rule(GET_CHALLENGE, 0x11),
    rule(VERIFY, 0x10),
  ],
};

/** Returns the applet/object ACR table: PKI applets first, then the static applets in libcacard's order. */
export function acrApplets(pkiCount: number): AcrApplet[] {
  const pki = Array.from({ length: pkiCount }, (_, i) => ({
    appletId: 0x61 + i,
    objects: [
      { objectId: oid(0x01, i), rules: [rule(UPDATE_BUFFER, 0x04), rule(READ_BUFFER, 0x00), rule(SIGN_DECRYPT, 0x06)] },
      { objectId: oid(0xff, 0xff), rules: [rule(VERIFY, 0x10)] },
    ],
  }));
  return [
    ...pki,
    { appletId: 0x1f, objects: [{ objectId: oid(0xff, 0xff), rules: [rule(VERIFY, 0x00)] }] },
    // libcacard lists the CCC as F4 here, although its service applet ID is 4F.
    { appletId: 0xf4, objects: [readableObject(oid(0xdb, 0x00), 0x04), COMMON_OBJECT] },
    { appletId: 0x4b, objects: [readableObject(oid(0x02, 0xfb), 0x06), COMMON_OBJECT] },
    { appletId: 0x41, objects: [splitReadObject(oid(0x02, 0x00), 0x09, 0x08), COMMON_OBJECT] },
    { appletId: 0x42, objects: [splitReadObject(oid(0x02, 0x01), 0x0b, 0x0a), COMMON_OBJECT] },
    {
      appletId: 0x40,
      objects: [
        { objectId: oid(0x30, 0x00), rules: [rule(UPDATE_BUFFER, 0x04), rule(READ_BUFFER, 0x00), rule(READ_BINARY, 0x00)] },
        splitReadObject(oid(0x60, 0x10), 0x04, 0x06),
        splitReadObject(oid(0x60, 0x30), 0x04, 0x06),
        readableObject(oid(0x90, 0x00), 0x04),
        COMMON_OBJECT,
      ],
    },
    { appletId: 0x4e, objects: [readableObject(oid(0x02, 0xfe), 0x04), COMMON_OBJECT] },
    { appletId: 0x4d, objects: [splitReadObject(oid(0x02, 0xfd), 0x06, 0x06), COMMON_OBJECT] },
    { appletId: 0x50, objects: [EMPTY_APPLET_OBJECT] },
    { appletId: 0x51, objects: [EMPTY_APPLET_OBJECT] },
    { appletId: 0x52, objects: [EMPTY_APPLET_OBJECT] },
    { appletId: 0x44, objects: [splitReadObject(oid(0x12, 0x01), 0x06, 0x06), COMMON_OBJECT] },
    { appletId: 0x45, objects: [splitReadObject(oid(0x12, 0x02), 0x06, 0x06), COMMON_OBJECT] },
  ];
}

/** Encodes an object's ACR: object ID, then per rule INS, config, the selected P1/P2/data byte and the ACRID. */
export function encodeAcrObject(object: AcrObject): Uint8Array {
  const bytes: number[] = [object.objectId[0]!, object.objectId[1]!];
  for (const entry of object.rules) {
    bytes.push(entry.ins, entry.config);
    if (entry.config & RULE_P1) bytes.push(entry.p1 ?? 0);
    if (entry.config & RULE_P2) bytes.push(entry.p2 ?? 0);
    if (entry.config & RULE_DATA1) bytes.push(entry.data1 ?? 0);
    bytes.push(entry.acrId);
  }
  return Uint8Array.from(bytes);
}
