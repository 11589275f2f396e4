/**
 * Identifiers of the PIV card application (NIST SP 800-73-4 part 1 and 2,
 * SP 800-78-4): its AID, key references, algorithm identifiers and data
 * object tags.
 */
import { buildAtr } from '../iso7816/atr.js';

/** Full AID of the PIV card application, version 01 00. */
export const PIV_AID = Uint8Array.of(0xa0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00);

/** Shortest AID prefix SELECT accepts: the NIST RID (SP 800-73-4 part 1 allows the right-truncated AID). */
export const PIV_RID_LENGTH = 5;

/**
 * ATR of the virtual PIV card, with "virtcard PIV" as historical bytes after
 * the category indicator 80, so tools can tell it from the CAC card. It
 * offers T=0 first (the default protocol) and T=1. QEMU 7.2's usb-ccid
 * reader announces T=0 only, and with a T=1-only card in it SCardConnect in
 * the guest (pcscd 1.9.9, libccid 1.5.2) fails with SCARD_W_UNRESPONSIVE_CARD.
 */
export const PIV_ATR = buildAtr({
  ts: 0x3b,
  groups: [{ protocol: 0 }, { protocol: 1 }],
  historical: Uint8Array.of(0x80, ...new TextEncoder().encode('virtcardPIV')),
});

/** Key references (SP 800-73-4 part 1, table 4). */
export const KEY_PIV_AUTHENTICATION = 0x9a;
export const KEY_MANAGEMENT = 0x9b;
export const KEY_DIGITAL_SIGNATURE = 0x9c;
export const KEY_KEY_MANAGEMENT = 0x9d;
export const KEY_CARD_AUTHENTICATION = 0x9e;
export const KEY_RETIRED_FIRST = 0x82;
export const KEY_RETIRED_LAST = 0x95;

/** PIN references of VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER. */
export const REFERENCE_PIV_PIN = 0x80;
export const REFERENCE_PUK = 0x81;

/** Algorithm identifiers (SP 800-78-4 table 6-2). */
export const ALGORITHM_3DES = 0x03;
/** 00 is the legacy identifier of 3DES for the card management key. */
export const ALGORITHM_3DES_LEGACY = 0x00;
export const ALGORITHM_RSA_1024 = 0x06;
export const ALGORITHM_RSA_2048 = 0x07;
export const ALGORITHM_AES_128 = 0x08;
export const ALGORITHM_AES_192 = 0x0a;
export const ALGORITHM_AES_256 = 0x0c;
export const ALGORITHM_ECC_P256 = 0x11;
export const ALGORITHM_ECC_P384 = 0x14;

/** Tags of data objects outside the containers. */
export const TAG_TAG_LIST = 0x5c;
export const TAG_DATA = 0x53;
export const TAG_DYNAMIC_AUTHENTICATION = 0x7c;
export const TAG_DISCOVERY_OBJECT = 0x7e;
export const TAG_BIOMETRIC_GROUP_TEMPLATE = 0x7f61;
export const TAG_PUBLIC_KEY_TEMPLATE = 0x7f49;
export const TAG_KEY_TEMPLATE = 0xac;

/** Tags inside the dynamic authentication template (7C) of GENERAL AUTHENTICATE. */
export const TAG_WITNESS = 0x80;
export const TAG_CHALLENGE = 0x81;
export const TAG_RESPONSE = 0x82;
export const TAG_EXPONENTIATION = 0x85;

/** Container tags (SP 800-73-4 part 1, table 3). */
export const TAG_CARD_CAPABILITY_CONTAINER = 0x5fc107;
export const TAG_CHUID = 0x5fc102;
export const TAG_CERT_PIV_AUTHENTICATION = 0x5fc105;
export const TAG_CARDHOLDER_FINGERPRINTS = 0x5fc103;
export const TAG_SECURITY_OBJECT = 0x5fc106;
export const TAG_CARDHOLDER_FACIAL_IMAGE = 0x5fc108;
export const TAG_PRINTED_INFORMATION = 0x5fc109;
export const TAG_CERT_DIGITAL_SIGNATURE = 0x5fc10a;
export const TAG_CERT_KEY_MANAGEMENT = 0x5fc10b;
export const TAG_CERT_CARD_AUTHENTICATION = 0x5fc101;
export const TAG_KEY_HISTORY = 0x5fc10c;
export const TAG_CERT_RETIRED_FIRST = 0x5fc10d;
export const TAG_CARDHOLDER_IRIS_IMAGES = 0x5fc121;

/** Containers whose GET DATA needs the PIN, because they hold personal data (SP 800-73-4 part 1, table 2). */
export const PIN_PROTECTED_CONTAINERS: ReadonlySet<number> = new Set([
  TAG_CARDHOLDER_FINGERPRINTS,
  TAG_CARDHOLDER_FACIAL_IMAGE,
  TAG_PRINTED_INFORMATION,
  TAG_CARDHOLDER_IRIS_IMAGES,
]);

/** Returns the certificate container tag of an asymmetric key reference, or undefined for other references. */
export function certificateTagForKey(keyReference: number): number | undefined {
  switch (keyReference) {
    case KEY_PIV_AUTHENTICATION:
      return TAG_CERT_PIV_AUTHENTICATION;
    case KEY_DIGITAL_SIGNATURE:
      return TAG_CERT_DIGITAL_SIGNATURE;
    case KEY_KEY_MANAGEMENT:
      return TAG_CERT_KEY_MANAGEMENT;
    case KEY_CARD_AUTHENTICATION:
      return TAG_CERT_CARD_AUTHENTICATION;
    default:
      if (isRetiredKey(keyReference)) return TAG_CERT_RETIRED_FIRST + (keyReference - KEY_RETIRED_FIRST);
      return undefined;
  }
}

/** Returns whether `keyReference` is one of the 20 retired key management keys 82 to 95. */
export function isRetiredKey(keyReference: number): boolean {
  return keyReference >= KEY_RETIRED_FIRST && keyReference <= KEY_RETIRED_LAST;
}

/** Returns whether `keyReference` names an asymmetric key slot (9A, 9C, 9D, 9E, 82 to 95). */
export function isAsymmetricKey(keyReference: number): boolean {
  return certificateTagForKey(keyReference) !== undefined;
}

/**
 * Returns whether `tag` is a container PUT DATA may write: the SP 800-73-4
 * containers 5FC101 to 5FC123 and the vendor range 5FFF00 to 5FFFFF that
 * yubico-piv-tool uses for its administrative data.
 */
export function isWritableContainer(tag: number): boolean {
  return (tag >= 0x5fc101 && tag <= 0x5fc123) || (tag >= 0x5fff00 && tag <= 0x5fffff);
}

/** Status word "last command of the chain expected" (ISO/IEC 7816-4), missing from the shared table. */
export const SW_LAST_COMMAND_OF_CHAIN_EXPECTED = 0x6883;
