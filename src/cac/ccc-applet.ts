/**
 * The Card Capability Container (AID A0 00 00 01 16 DB 00), which lists
 * for middleware such as OpenSC the applets of the card (libcacard 2.8 cac.c).
 */
import type { SimpleTlv } from '../iso7816/simple-tlv.js';
import { BufferApplet } from './cac-applet.js';
import { bufferProperties, buildBufferFiles } from './buffer-files.js';
import { ACA_AID, CCC_AID, TAG_BUFFER_PROPERTIES, TAG_OBJECT_ID, TAG_TV_OBJECT } from './constants.js';
import { LONG_PROPERTY_SUFFIX, appletInformation, numberOfObjects, objectEntry } from './properties.js';

/** Card identifier: GSC RID, manufacturer 03, card type 02 (Java Card), then a fixed card ID. */
const CARD_IDENTIFIER = Uint8Array.of(
  0xa0, 0x00, 0x00, 0x00, 0x79, 0x03, 0x02, 0x40, 0x70, 0x50, 0x72,
  0x36, 0x0e, 0x00, 0x00, 0x58, 0xbd, 0x00, 0x2c, 0x19, 0xb5,
);

/**
 * The static CardURLs: RID (5 bytes), application type 01 (generic), object
 * ID (2), application ID (2), then 6 zero bytes (access profile, PIN ID,
 * key info and algorithm, unused by virtual cards).
 */
const STATIC_CARD_URLS: readonly (readonly number[])[] = [
  [0xa0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x02, 0xfb, 0x02, 0xfb],
  [0xa0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x02, 0xfe, 0x02, 0xfe],
  [0xa0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x02, 0xfd, 0x02, 0xfd],
  [0xa0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x02, 0x00, 0x02, 0x00],
  [0xa0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x02, 0x01, 0x02, 0x01],
  [0xa0, 0x00, 0x00, 0x01, 0x16, 0x01, 0x30, 0x00, 0x30, 0x00],
  [0xa0, 0x00, 0x00, 0x01, 0x16, 0x01, 0x60, 0x10, 0x30, 0x00],
  [0xa0, 0x00, 0x00, 0x01, 0x16, 0x01, 0x60, 0x30, 0x30, 0x00],
  [0xa0, 0x00, 0x00, 0x01, 0x16, 0x01, 0x90, 0x00, 0x30, 0x00],
  [0xa0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x12, 0x01, 0x12, 0x01],
  [0xa0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x12, 0x02, 0x12, 0x02],
];

/** CCC tags (GSC-IS 2.1 Table 6-2). */
const TAG_CARD_IDENTIFIER = 0xf0;
const TAG_CAPABILITY_CONTAINER_VERSION = 0xf1;
const TAG_CAPABILITY_GRAMMAR_VERSION = 0xf2;
const TAG_APPLICATION_CARD_URL = 0xf3;
const TAG_PKCS15 = 0xf4;
const TAG_REGISTERED_DATA_MODEL = 0xf5;
const TAG_ACCESS_CONTROL_RULE_TABLE = 0xf6;
const EMPTY_TAGS = [0xf7, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe]; // card APDUs, redirection, CTs, STs, next CCC, EDC

function cardUrl(prefix: readonly number[]): SimpleTlv {
  const value = new Uint8Array(16);
  value.set(prefix);
  return { tag: TAG_APPLICATION_CARD_URL, value };
}

/** Builds the CCC content for `pkiCount` PKI applets: one CardURL with application type 04 per PKI applet. */
export function cccObjects(pkiCount: number): SimpleTlv[] {
  const accessControlRuleTable = new Uint8Array(17);
  accessControlRuleTable[0] = 0x07;
  accessControlRuleTable.set(ACA_AID, 1);

  const pkiUrls = Array.from({ length: pkiCount }, (_, i) =>
    cardUrl([0xa0, 0x00, 0x00, 0x00, 0x79, 0x04, 0x01, i, 0x01, i]),
  );
  return [
    { tag: TAG_CARD_IDENTIFIER, value: CARD_IDENTIFIER },
    { tag: TAG_CAPABILITY_CONTAINER_VERSION, value: Uint8Array.of(0x21) },
    { tag: TAG_CAPABILITY_GRAMMAR_VERSION, value: Uint8Array.of(0x21) },
    ...STATIC_CARD_URLS.map(cardUrl),
    ...pkiUrls,
    { tag: TAG_PKCS15, value: Uint8Array.of(0x00) },
    // Data model 10 is the one NIST SP 800-73-4 assigns to PIV.
    { tag: TAG_REGISTERED_DATA_MODEL, value: Uint8Array.of(0x10) },
    { tag: TAG_ACCESS_CONTROL_RULE_TABLE, value: accessControlRuleTable },
    ...EMPTY_TAGS.map((tag) => ({ tag, value: new Uint8Array(0) })),
  ];
}

/** Creates the CCC applet for a card with `pkiCount` PKI applets. */
export function createCccApplet(pkiCount: number): BufferApplet {
  const objectId = Uint8Array.of(0xdb, 0x00);
  const files = buildBufferFiles(cccObjects(pkiCount));
  // Unlike the other applets, libcacard's CCC object entry has no tag 26.
  const properties = [
    appletInformation(),
    numberOfObjects(1),
    objectEntry(TAG_TV_OBJECT, [
      { tag: TAG_OBJECT_ID, value: objectId },
      { tag: TAG_BUFFER_PROPERTIES, value: bufferProperties(files) },
    ]),
  ];
  return new BufferApplet(
    {
      aid: CCC_AID,
      name: 'CCC',
      properties,
      longProperties: [...properties, ...LONG_PROPERTY_SUFFIX],
      objectIds: [objectId],
    },
    files,
  );
}
