/**
 * YubiKey instructions beyond SP 800-73-4 that yubico-piv-tool uses to
 * provision a card: IMPORT ASYMMETRIC KEY (INS FE), SET PIN RETRIES (INS FA)
 * and RESET (INS FB). Their formats follow yubico-piv-tool 2.2.0's ykpiv
 * library.
 */
import { createECDH, createPrivateKey } from 'node:crypto';
import type { CommandApdu } from '../iso7816/apdu.js';
import { statusOnlyResponse } from '../iso7816/response.js';
import {
  SW_CONDITIONS_NOT_SATISFIED,
  SW_INCORRECT_P1_P2,
  SW_SECURITY_STATUS_NOT_SATISFIED,
  SW_SUCCESS,
  SW_WRONG_DATA,
} from '../iso7816/status-words.js';
import { MAX_PIN_RETRIES } from '../card/pin.js';
import { logger } from '../log/logger.js';
import type { SlotAlgorithm, SlotKey } from './card-state.js';
import { isAsymmetricKey } from './constants.js';
import type { PivApplication } from './piv-application.js';
import { pinPolicyOf } from './provisioning.js';
import { slotAlgorithmOf } from './slot-keys.js';
import { decodeFlatObjects } from './tlv-input.js';

const log = logger.child({ component: 'piv' });

const RSA_PUBLIC_EXPONENT = 65537n;
const TAG_PIN_POLICY = 0xaa;
const TAG_TOUCH_POLICY = 0xab;

function toBigInt(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
}

function toBase64Url(value: bigint): string {
  let hex = value.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  return Buffer.from(hex, 'hex').toString('base64url');
}

function modularInverse(value: bigint, modulus: bigint): bigint | undefined {
  let [oldR, r] = [value % modulus, modulus];
  let [oldS, s] = [1n, 0n];
  while (r !== 0n) {
    const quotient = oldR / r;
    [oldR, r] = [r, oldR - quotient * r];
    [oldS, s] = [s, oldS - quotient * s];
  }
  if (oldR !== 1n) return undefined;
  return ((oldS % modulus) + modulus) % modulus;
}

/** Builds an RSA-2048 key from the CRT parameters (tags 01 to 05); undefined when they do not form one with e = 65537. */
function rsaKeyFromParameters(items: ReadonlyMap<number, Uint8Array>): SlotKey['privateKey'] | undefined {
  const [p, q, dp, dq, qi] = [1, 2, 3, 4, 5].map((tag) => toBigInt(items.get(tag) ?? new Uint8Array(0))) as [bigint, bigint, bigint, bigint, bigint];
  if (p < 2n || q < 2n) return undefined;
  const n = p * q;
  if (n.toString(2).length !== 2048) return undefined;
  const d = modularInverse(RSA_PUBLIC_EXPONENT, (p - 1n) * (q - 1n));
  if (d === undefined || d % (p - 1n) !== dp || d % (q - 1n) !== dq || (qi * q) % p !== 1n) return undefined;

  const jwk = {
    kty: 'RSA',
    n: toBase64Url(n),
    e: toBase64Url(RSA_PUBLIC_EXPONENT),
    d: toBase64Url(d),
    p: toBase64Url(p),
    q: toBase64Url(q),
    dp: toBase64Url(dp),
    dq: toBase64Url(dq),
    qi: toBase64Url(qi),
  };
  return createPrivateKey({ key: jwk, format: 'jwk' });
}

/** Builds an EC key from its private scalar (tag 06); undefined when the scalar is not a valid key of the curve. */
function ecKeyFromScalar(algorithm: 'eccp256' | 'eccp384', scalar: Uint8Array | undefined): SlotKey['privateKey'] | undefined {
  const size = algorithm === 'eccp256' ? 32 : 48;
  if (scalar?.length !== size) return undefined;
  const ecdh = createECDH(algorithm === 'eccp256' ? 'prime256v1' : 'secp384r1');
  try {
    ecdh.setPrivateKey(scalar);
  } catch {
    return undefined;
  }
  const point = ecdh.getPublicKey();
  const jwk = {
    kty: 'EC',
    crv: algorithm === 'eccp256' ? 'P-256' : 'P-384',
    d: Buffer.from(scalar).toString('base64url'),
    x: point.subarray(1, 1 + size).toString('base64url'),
    y: point.subarray(1 + size).toString('base64url'),
  };
  return createPrivateKey({ key: jwk, format: 'jwk' });
}

/**
 * Processes IMPORT ASYMMETRIC KEY: P1 is the algorithm, P2 the slot, the
 * data the CRT parameters 01 to 05 of an RSA key or the private scalar 06 of
 * an EC key, then optional PIN (AA) and touch (AB) policies.
 */
export async function importAsymmetricKey(application: PivApplication, apdu: CommandApdu): Promise<Uint8Array> {
  const algorithm: SlotAlgorithm | undefined = slotAlgorithmOf(apdu.p1);
  if (algorithm === undefined || !isAsymmetricKey(apdu.p2)) return statusOnlyResponse(SW_INCORRECT_P1_P2);
  if (!application.management.authenticated) return statusOnlyResponse(SW_SECURITY_STATUS_NOT_SATISFIED);

  const items = decodeFlatObjects(apdu.data);
  const pinPolicy = pinPolicyOf(items?.get(TAG_PIN_POLICY), apdu.p2);
  const touchPolicy = items?.get(TAG_TOUCH_POLICY);
  if (items === undefined || pinPolicy === undefined || (touchPolicy !== undefined && touchPolicy.length !== 1)) {
    return statusOnlyResponse(SW_WRONG_DATA);
  }

  const privateKey = algorithm === 'rsa2048' ? rsaKeyFromParameters(items) : ecKeyFromScalar(algorithm, items.get(0x06));
  if (privateKey === undefined) return statusOnlyResponse(SW_WRONG_DATA);

  await application.setKey(apdu.p2, { algorithm, pinPolicy, privateKey });
  log.info({ keyReference: apdu.p2.toString(16), algorithm, pinPolicy }, 'imported a key');
  return statusOnlyResponse(SW_SUCCESS);
}

/**
 * Processes SET PIN RETRIES: P1 and P2 are the new PIN and PUK retry counts
 * (1 to 15, because 63 Cx reports at most 15). Needs the management key and
 * the PIN, and resets PIN and PUK to their defaults.
 */
export async function setPinRetries(application: PivApplication, apdu: CommandApdu): Promise<Uint8Array> {
  const valid = (count: number): boolean => count >= 1 && count <= MAX_PIN_RETRIES;
  if (!valid(apdu.p1) || !valid(apdu.p2)) return statusOnlyResponse(SW_INCORRECT_P1_P2);
  if (!application.management.authenticated || !application.pin.verified) {
    return statusOnlyResponse(SW_SECURITY_STATUS_NOT_SATISFIED);
  }
  await application.setRetries(apdu.p1, apdu.p2);
  log.info({ pinRetries: apdu.p1, pukRetries: apdu.p2 }, 'set PIN and PUK retry counts; PIN and PUK are back to their defaults');
  return statusOnlyResponse(SW_SUCCESS);
}

/** Processes RESET, which erases the card and works only while both PIN and PUK are blocked. */
export async function resetCard(application: PivApplication, apdu: CommandApdu): Promise<Uint8Array> {
  if (apdu.p1 !== 0x00 || apdu.p2 !== 0x00) return statusOnlyResponse(SW_INCORRECT_P1_P2);
  if (!application.pin.blocked || !application.puk.blocked) return statusOnlyResponse(SW_CONDITIONS_NOT_SATISFIED);
  await application.resetToFactory();
  log.info('reset the PIV card to its factory state');
  return statusOnlyResponse(SW_SUCCESS);
}
