/** Identifiers and fixed values of the CAC card as libcacard 2.8 emulates it (cac.c, cac-aca.c, gp.c, msft.c). */

/** ATR of libcacard's CAC card ("older CAC card from the official CAC document"): T=0, 10 historical bytes. */
export const CAC_ATR = Uint8Array.of(0x3b, 0x7a, 0x18, 0x00, 0x00, 0x73, 0x66, 0x74, 0x65, 0x20, 0x63, 0x64, 0x31, 0x34, 0x34);

/** Largest number of PKI applets (certificates) the card supports. */
export const MAX_PKI_APPLETS = 10;

/** Registered application provider identifier of the US Department of Defense (GSC-IS). */
export const DOD_RID = Uint8Array.of(0xa0, 0x00, 0x00, 0x00, 0x79);

export const ACA_AID = Uint8Array.of(0xa0, 0x00, 0x00, 0x00, 0x79, 0x03, 0x00);
export const CCC_AID = Uint8Array.of(0xa0, 0x00, 0x00, 0x01, 0x16, 0xdb, 0x00);
export const ACCESS_CONTROL_FILE_AID = Uint8Array.of(0xa0, 0x00, 0x00, 0x01, 0x16, 0x30, 0x00);
export const GP_CARD_MANAGER_AID = Uint8Array.of(0xa0, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00);
export const MICROSOFT_PNP_AID = Uint8Array.of(0xa0, 0x00, 0x00, 0x03, 0x97, 0x43, 0x49, 0x44, 0x5f, 0x01, 0x00);

/** Returns the AID `A0 00 00 00 79 <high> <low>` of a DoD applet. */
export function dodAid(high: number, low: number): Uint8Array {
  return Uint8Array.of(0xa0, 0x00, 0x00, 0x00, 0x79, high, low);
}

/** Returns the AID of PKI applet `index` (`A0 00 00 00 79 01 0i`). */
export function pkiAid(index: number): Uint8Array {
  return dodAid(0x01, index);
}

/** CAC instruction codes (GSC-IS 2.1 §5.3.3). */
export const INS_GET_PROPERTIES = 0x56;
export const INS_READ_BUFFER = 0x52;
export const INS_UPDATE_BUFFER = 0x58;
export const INS_SIGN_DECRYPT = 0x42;
export const INS_GET_ACR = 0x4c;
export const INS_GET_DATA = 0xca;
export const INS_SELECT = 0xa4;
export const INS_VERIFY = 0x20;
export const INS_GET_RESPONSE = 0xc0;

/** Properties tags (GSC-IS 2.1 Table 5-9) and the unnamed ones libcacard also sends. */
export const TAG_APPLET_INFORMATION = 0x01;
export const TAG_NUMBER_OF_OBJECTS = 0x40;
export const TAG_TV_OBJECT = 0x50;
export const TAG_PKI_OBJECT = 0x51;
export const TAG_OBJECT_ID = 0x41;
export const TAG_BUFFER_PROPERTIES = 0x42;
export const TAG_PKI_PROPERTIES = 0x43;

/** Applet information value: family 10, version 02 06 02 03 (ACA: 02 06 02 02). */
export const APPLET_INFORMATION = Uint8Array.of(0x10, 0x02, 0x06, 0x02, 0x03);
export const ACA_APPLET_INFORMATION = Uint8Array.of(0x10, 0x02, 0x06, 0x02, 0x02);
