/**
 * The PIV instructions that change the card and need the card management
 * key: GENERATE ASYMMETRIC KEY PAIR (INS 47), PUT DATA (INS DB) and
 * YubiKey's SET MANAGEMENT KEY (INS FF), which yubico-piv-tool uses to
 * change the management key.
 */
import type { CardContext } from '../card/applet.js';
import type { CommandApdu } from '../iso7816/apdu.js';
import { statusOnlyResponse } from '../iso7816/response.js';
import {
  SW_INCORRECT_P1_P2,
  SW_NOT_ENOUGH_MEMORY,
  SW_SECURITY_STATUS_NOT_SATISFIED,
  SW_SUCCESS,
  SW_WRONG_DATA,
} from '../iso7816/status-words.js';
import { logger } from '../log/logger.js';
import type { PinPolicy } from './card-state.js';
import {
  ALGORITHM_3DES,
  ALGORITHM_3DES_LEGACY,
  KEY_CARD_AUTHENTICATION,
  KEY_DIGITAL_SIGNATURE,
  KEY_MANAGEMENT,
  TAG_BIOMETRIC_GROUP_TEMPLATE,
  TAG_DATA,
  TAG_DISCOVERY_OBJECT,
  TAG_KEY_TEMPLATE,
  TAG_TAG_LIST,
  isAsymmetricKey,
  isWritableContainer,
} from './constants.js';
import { managementKeyCipher } from './management-key.js';
import type { PivApplication } from './piv-application.js';
import { encodePublicKeyTemplate, generateSlotKey, slotAlgorithmOf } from './slot-keys.js';
import { decodeFlatTemplate, decodeObjects, tagFromBytes } from './tlv-input.js';

const log = logger.child({ component: 'piv' });

/** Largest data object PUT DATA stores, well above the 3 KB a 4096-bit certificate container needs. */
export const MAX_OBJECT_SIZE = 16384;

/** Tags of the key template AC: algorithm, and YubiKey's PIN and touch policies. */
const TAG_ALGORITHM = 0x80;
const TAG_PIN_POLICY = 0xaa;
const TAG_TOUCH_POLICY = 0xab;

/** Returns the default PIN policy of a slot, as on a YubiKey: never for 9E, always for 9C, once for the rest. */
function defaultPinPolicy(keyReference: number): PinPolicy {
  if (keyReference === KEY_CARD_AUTHENTICATION) return 'never';
  if (keyReference === KEY_DIGITAL_SIGNATURE) return 'always';
  return 'once';
}

/** Returns the PIN policy that the value of tag AA sets for `keyReference`, or undefined for an invalid value. */
export function pinPolicyOf(value: Uint8Array | undefined, keyReference: number): PinPolicy | undefined {
  if (value === undefined) return defaultPinPolicy(keyReference);
  if (value.length !== 1) return undefined;
  switch (value[0]) {
    case 0:
      return defaultPinPolicy(keyReference);
    case 1:
      return 'never';
    case 2:
      return 'once';
    case 3:
      return 'always';
    default:
      return undefined;
  }
}

/** Processes GENERATE ASYMMETRIC KEY PAIR: P2 is the slot, the data an AC template with the algorithm. */
export async function generateAsymmetricKeyPair(
  application: PivApplication,
  apdu: CommandApdu,
  card: CardContext,
): Promise<Uint8Array> {
  if (apdu.p1 !== 0x00 || !isAsymmetricKey(apdu.p2)) return statusOnlyResponse(SW_INCORRECT_P1_P2);
  if (!application.management.authenticated) return statusOnlyResponse(SW_SECURITY_STATUS_NOT_SATISFIED);

  const template = decodeFlatTemplate(apdu.data, TAG_KEY_TEMPLATE);
  const algorithmValue = template?.get(TAG_ALGORITHM);
  if (template === undefined || algorithmValue?.length !== 1) return statusOnlyResponse(SW_WRONG_DATA);
  const algorithm = slotAlgorithmOf(algorithmValue[0]!);
  const pinPolicy = pinPolicyOf(template.get(TAG_PIN_POLICY), apdu.p2);
  // NOTE: a touch policy (AB) is accepted and ignored, because a virtual card has no touch sensor.
  const touchPolicy = template.get(TAG_TOUCH_POLICY);
  if (algorithm === undefined || pinPolicy === undefined || (touchPolicy !== undefined && touchPolicy.length !== 1)) {
    return statusOnlyResponse(SW_WRONG_DATA);
  }

  const key = await generateSlotKey(algorithm, pinPolicy);
  await application.setKey(apdu.p2, key);
  log.info({ keyReference: apdu.p2.toString(16), algorithm, pinPolicy }, 'generated a key pair');
  return card.respond(encodePublicKeyTemplate(key), apdu.le);
}

/**
 * Processes PUT DATA (P1 P2 = 3F FF): `5C <tag> 53 <contents>` for a
 * container, or the discovery object (7E) or biometric group template (7F61)
 * written whole. Empty contents delete the object.
 */
export async function putData(application: PivApplication, apdu: CommandApdu): Promise<Uint8Array> {
  if (apdu.p1 !== 0x3f || apdu.p2 !== 0xff) return statusOnlyResponse(SW_INCORRECT_P1_P2);
  if (!application.management.authenticated) return statusOnlyResponse(SW_SECURITY_STATUS_NOT_SATISFIED);

  const objects = decodeObjects(apdu.data);
  const first = objects?.[0];
  if (objects === undefined || first === undefined) return statusOnlyResponse(SW_WRONG_DATA);

  let tag: number | undefined;
  let contents: Uint8Array | undefined;
  if (first.tag === TAG_TAG_LIST && objects.length === 2 && objects[1]?.tag === TAG_DATA) {
    tag = tagFromBytes(first.value);
    contents = objects[1].value;
    if (tag === undefined || !isWritableContainer(tag)) return statusOnlyResponse(SW_WRONG_DATA);
  } else if ((first.tag === TAG_DISCOVERY_OBJECT || first.tag === TAG_BIOMETRIC_GROUP_TEMPLATE) && objects.length === 1) {
    tag = first.tag;
    contents = first.value;
  } else {
    return statusOnlyResponse(SW_WRONG_DATA);
  }

  if (contents.length > MAX_OBJECT_SIZE) return statusOnlyResponse(SW_NOT_ENOUGH_MEMORY);
  await application.putObject(tag, contents);
  log.info({ tag: tag.toString(16), length: contents.length }, contents.length === 0 ? 'deleted a data object' : 'stored a data object');
  return statusOnlyResponse(SW_SUCCESS);
}

/**
 * Processes YubiKey's SET MANAGEMENT KEY (P1 FF, P2 FF or FE for "touch
 * required", which is ignored): data = algorithm, 9B, key length, key.
 */
export async function setManagementKey(application: PivApplication, apdu: CommandApdu): Promise<Uint8Array> {
  if (apdu.p1 !== 0xff || (apdu.p2 !== 0xff && apdu.p2 !== 0xfe)) return statusOnlyResponse(SW_INCORRECT_P1_P2);
  if (!application.management.authenticated) return statusOnlyResponse(SW_SECURITY_STATUS_NOT_SATISFIED);

  const data = apdu.data;
  const algorithm = data[0] === ALGORITHM_3DES_LEGACY ? ALGORITHM_3DES : data[0];
  const cipher = algorithm === undefined ? undefined : managementKeyCipher(algorithm);
  const key = data.subarray(3);
  if (
    algorithm === undefined ||
    cipher === undefined ||
    data[1] !== KEY_MANAGEMENT ||
    data[2] !== cipher.keyLength ||
    key.length !== cipher.keyLength
  ) {
    return statusOnlyResponse(SW_WRONG_DATA);
  }

  application.state.managementKey = { algorithm, key: Uint8Array.from(key) };
  await application.save();
  log.info({ algorithm }, 'changed the card management key');
  return statusOnlyResponse(SW_SUCCESS);
}
