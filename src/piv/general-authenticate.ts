/**
 * GENERAL AUTHENTICATE (INS 87) of the PIV card application: card
 * management key authentication (key 9B) and the private-key operations of
 * the asymmetric slots. Requests and responses use the dynamic
 * authentication template 7C (SP 800-73-4 part 2, 3.2.4).
 */
import { KeyStoreError } from '../backends/key-store.js';
import type { CardContext } from '../card/applet.js';
import { statusWordForKeyStoreError } from '../card/key-store-status.js';
import type { CommandApdu } from '../iso7816/apdu.js';
import { encodeBerTlv } from '../iso7816/ber-tlv.js';
import { statusOnlyResponse } from '../iso7816/response.js';
import {
  SW_INCORRECT_P1_P2,
  SW_DATA_NOT_FOUND,
  SW_SECURITY_STATUS_NOT_SATISFIED,
  SW_SUCCESS,
  SW_WRONG_DATA,
} from '../iso7816/status-words.js';
import { logger } from '../log/logger.js';
import {
  KEY_MANAGEMENT,
  TAG_CHALLENGE,
  TAG_DYNAMIC_AUTHENTICATION,
  TAG_EXPONENTIATION,
  TAG_RESPONSE,
  isAsymmetricKey,
} from './constants.js';
import { managementKeyCipher } from './management-key.js';
import type { PivApplication } from './piv-application.js';
import { algorithmIdentifier, KeyInputError } from './slot-keys.js';
import { decodeTemplate } from './tlv-input.js';

const log = logger.child({ component: 'piv' });

function dynamicAuthenticationResponse(tag: number, value: Uint8Array): Uint8Array {
  return encodeBerTlv({ tag: TAG_DYNAMIC_AUTHENTICATION, value: new Uint8Array(0), children: [{ tag, value }] });
}

function authenticateManagementKey(
  application: PivApplication,
  apdu: CommandApdu,
  items: ReadonlyMap<number, Uint8Array>,
  card: CardContext,
): Uint8Array {
  const requested = managementKeyCipher(apdu.p1);
  const actual = managementKeyCipher(application.state.managementKey.algorithm);
  if (requested === undefined || requested !== actual) return statusOnlyResponse(SW_INCORRECT_P1_P2);

  const step = application.management.step(items);
  switch (step.kind) {
    case 'data':
      return card.respond(dynamicAuthenticationResponse(step.tag, step.value), apdu.le);
    case 'authenticated':
      log.info('card management key authenticated');
      if (step.tag === undefined || step.value === undefined) return statusOnlyResponse(SW_SUCCESS);
      return card.respond(dynamicAuthenticationResponse(step.tag, step.value), apdu.le);
    case 'failed':
      log.info('card management key authentication failed');
      return statusOnlyResponse(SW_SECURITY_STATUS_NOT_SATISFIED);
    case 'invalid':
      log.debug({ reason: step.reason }, 'invalid management key authentication step');
      return statusOnlyResponse(SW_WRONG_DATA);
  }
}

/** Processes GENERAL AUTHENTICATE; P1 is the algorithm, P2 the key reference. */
export async function generalAuthenticate(application: PivApplication, apdu: CommandApdu, card: CardContext): Promise<Uint8Array> {
  const items = decodeTemplate(apdu.data, TAG_DYNAMIC_AUTHENTICATION);
  if (items === undefined) return statusOnlyResponse(SW_WRONG_DATA);

  if (apdu.p2 === KEY_MANAGEMENT) return authenticateManagementKey(application, apdu, items, card);
  if (!isAsymmetricKey(apdu.p2)) return statusOnlyResponse(SW_INCORRECT_P1_P2);

  const key = application.keyOperations(apdu.p2);
  if (key === undefined) return statusOnlyResponse(SW_DATA_NOT_FOUND);
  if (algorithmIdentifier(key.algorithm) !== apdu.p1) return statusOnlyResponse(SW_INCORRECT_P1_P2);
  const response = items.get(TAG_RESPONSE);
  const challenge = items.get(TAG_CHALLENGE);
  const exponentiation = items.get(TAG_EXPONENTIATION);
  if (response === undefined || response.length !== 0 || (challenge === undefined) === (exponentiation === undefined)) {
    return statusOnlyResponse(SW_WRONG_DATA);
  }
  // A key with PIN policy "always" (9C by default) needs a PIN VERIFY before every operation.
  if (!application.consumePinForKey(key.pinPolicy)) return statusOnlyResponse(SW_SECURITY_STATUS_NOT_SATISFIED);

  let result: Uint8Array;
  try {
    if (key.algorithm === 'rsa2048') {
      if (challenge === undefined) return statusOnlyResponse(SW_WRONG_DATA);
      result = await key.rsaPrivateRaw(challenge);
    } else if (challenge !== undefined) {
      result = key.ecdsaSign(challenge);
    } else {
      result = key.ecdh(exponentiation ?? new Uint8Array(0));
    }
  } catch (error) {
    if (error instanceof KeyInputError) {
      log.debug({ keyReference: apdu.p2.toString(16), reason: error.message }, 'GENERAL AUTHENTICATE input rejected');
      return statusOnlyResponse(SW_WRONG_DATA);
    }
    if (error instanceof KeyStoreError) return statusOnlyResponse(statusWordForKeyStoreError(error));
    throw error;
  }
  return card.respond(dynamicAuthenticationResponse(TAG_RESPONSE, result), apdu.le);
}
