/**
 * Private-key operations of the PIV asymmetric slots: raw RSA for sign and
 * decrypt, ECDSA over a digest the host computed, ECDH, key generation and
 * the public key template (7F49) that GENERATE ASYMMETRIC KEY PAIR returns.
 *
 * The KeyStore interface offers raw RSA only, so EC keys live in the card
 * state and use node:crypto (generation, ECDH) and @noble/curves (ECDSA on
 * a precomputed digest, which node:crypto cannot sign without hashing).
 */
import { constants, createECDH, generateKeyPair, privateDecrypt, type KeyObject } from 'node:crypto';
import { p256, p384 } from '@noble/curves/nist.js';
import type { KeyStore } from '../backends/key-store.js';
import { encodeBerTlv } from '../iso7816/ber-tlv.js';
import type { PinPolicy, SlotAlgorithm, SlotKey } from './card-state.js';
import {
  ALGORITHM_ECC_P256,
  ALGORITHM_ECC_P384,
  ALGORITHM_RSA_2048,
  TAG_PUBLIC_KEY_TEMPLATE,
} from './constants.js';

/** Raised when the command data does not fit the key: wrong length, value above the modulus, point not on the curve. */
export class KeyInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyInputError';
  }
}

/** The private-key side of one slot, whether the key is in the card state or in a key store. */
export interface SlotKeyOperations {
  readonly algorithm: SlotAlgorithm;
  readonly pinPolicy: PinPolicy;
  /** Raw RSA private operation; `input` must be as long as the modulus. Only for RSA keys. */
  rsaPrivateRaw(input: Uint8Array): Promise<Uint8Array>;
  /** DER-encoded ECDSA signature over `digest`. Only for EC keys. */
  ecdsaSign(digest: Uint8Array): Uint8Array;
  /** x coordinate of the ECDH shared point with the uncompressed `publicPoint`. Only for EC keys. */
  ecdh(publicPoint: Uint8Array): Uint8Array;
}

/** Returns the SP 800-78-4 algorithm identifier of `algorithm`. */
export function algorithmIdentifier(algorithm: SlotAlgorithm): number {
  switch (algorithm) {
    case 'rsa2048':
      return ALGORITHM_RSA_2048;
    case 'eccp256':
      return ALGORITHM_ECC_P256;
    case 'eccp384':
      return ALGORITHM_ECC_P384;
  }
}

/** Returns the slot algorithm of an SP 800-78-4 identifier, or undefined for algorithms slots cannot have. */
export function slotAlgorithmOf(identifier: number): SlotAlgorithm | undefined {
  switch (identifier) {
    case ALGORITHM_RSA_2048:
      return 'rsa2048';
    case ALGORITHM_ECC_P256:
      return 'eccp256';
    case ALGORITHM_ECC_P384:
      return 'eccp384';
    default:
      return undefined;
  }
}

const CURVES = {
  eccp256: { noble: p256, openssl: 'prime256v1', jwk: 'P-256', size: 32 },
  eccp384: { noble: p384, openssl: 'secp384r1', jwk: 'P-384', size: 48 },
} as const;

function curveOf(algorithm: SlotAlgorithm): (typeof CURVES)[keyof typeof CURVES] {
  if (algorithm === 'rsa2048') throw new KeyInputError('the slot contains an RSA key, so ECDSA and ECDH do not apply');
  return CURVES[algorithm];
}

function privateScalar(privateKey: KeyObject): Buffer {
  const d = privateKey.export({ format: 'jwk' }).d;
  if (d === undefined) throw new Error('the EC private key has no scalar d');
  return Buffer.from(d, 'base64url');
}

/** Computes a DER ECDSA signature over `digest`, left-padding a short digest to the field size. */
export function ecdsaSignDigest(privateKey: KeyObject, algorithm: SlotAlgorithm, digest: Uint8Array): Uint8Array {
  const curve = curveOf(algorithm);
  if (digest.length === 0 || digest.length > curve.size) {
    throw new KeyInputError(`ECDSA input is ${digest.length} bytes, but ${algorithm} takes 1 to ${curve.size}`);
  }
  const padded = new Uint8Array(curve.size);
  padded.set(digest, curve.size - digest.length);
  return curve.noble.sign(padded, privateScalar(privateKey), { prehash: false, format: 'der' });
}

/** Computes the ECDH shared secret (the x coordinate) with the uncompressed point `publicPoint`. */
export function ecdhSharedSecret(privateKey: KeyObject, algorithm: SlotAlgorithm, publicPoint: Uint8Array): Uint8Array {
  const curve = curveOf(algorithm);
  if (publicPoint.length !== 2 * curve.size + 1 || publicPoint[0] !== 0x04) {
    throw new KeyInputError(`ECDH needs an uncompressed ${algorithm} point of ${2 * curve.size + 1} bytes, got ${publicPoint.length}`);
  }
  const ecdh = createECDH(curve.openssl);
  ecdh.setPrivateKey(privateScalar(privateKey));
  try {
    return Uint8Array.from(ecdh.computeSecret(publicPoint));
  } catch {
    throw new KeyInputError(`the ECDH public point is not on ${algorithm}`);
  }
}

/** Performs raw RSA (no padding) with a local key; the input must be as long as the modulus and below it. */
export function rsaPrivateRawLocal(privateKey: KeyObject, input: Uint8Array): Uint8Array {
  const modulusBytes = (privateKey.asymmetricKeyDetails?.modulusLength ?? 0) / 8;
  if (input.length !== modulusBytes) {
    throw new KeyInputError(`RSA input is ${input.length} bytes, but the modulus is ${modulusBytes}`);
  }
  try {
    return Uint8Array.from(privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, input));
  } catch {
    throw new KeyInputError('RSA input is not below the modulus');
  }
}

/** Wraps a key of the card state. */
export function localKeyOperations(key: SlotKey): SlotKeyOperations {
  return {
    algorithm: key.algorithm,
    pinPolicy: key.pinPolicy,
    rsaPrivateRaw: (input) => Promise.resolve(rsaPrivateRawLocal(key.privateKey, input)),
    ecdsaSign: (digest) => ecdsaSignDigest(key.privateKey, key.algorithm, digest),
    ecdh: (point) => ecdhSharedSecret(key.privateKey, key.algorithm, point),
  };
}

/** Wraps slot `index` of a key store (RSA-2048 only, the one kind of key the KeyStore interface offers). */
export function storeKeyOperations(store: KeyStore, index: number, pinPolicy: PinPolicy): SlotKeyOperations {
  const notEc = (): never => {
    throw new KeyInputError('the slot contains an RSA key, so ECDSA and ECDH do not apply');
  };
  return {
    algorithm: 'rsa2048',
    pinPolicy,
    rsaPrivateRaw: (input) => {
      if (input.length !== 256) throw new KeyInputError(`RSA input is ${input.length} bytes, but the modulus is 256`);
      return store.rsaPrivateRaw(index, input);
    },
    ecdsaSign: notEc,
    ecdh: notEc,
  };
}

/** Generates a new key pair for a slot. RSA keys get the public exponent 65537. */
export function generateSlotKey(algorithm: SlotAlgorithm, pinPolicy: PinPolicy): Promise<SlotKey> {
  return new Promise((resolve, reject) => {
    const done = (error: Error | null, _publicKey: KeyObject, privateKey: KeyObject): void => {
      if (error) reject(error);
      else resolve({ algorithm, pinPolicy, privateKey });
    };
    if (algorithm === 'rsa2048') generateKeyPair('rsa', { modulusLength: 2048, publicExponent: 65537 }, done);
    else generateKeyPair('ec', { namedCurve: CURVES[algorithm].jwk }, done);
  });
}

/**
 * Encodes the public key template 7F49 of SP 800-73-4 part 2 table 13:
 * modulus (81) and public exponent (82) for RSA, the uncompressed point
 * (86) for EC.
 */
export function encodePublicKeyTemplate(key: SlotKey): Uint8Array {
  const jwk = key.privateKey.export({ format: 'jwk' });
  const field = (value: string | undefined): Uint8Array => Uint8Array.from(Buffer.from(value ?? '', 'base64url'));

  if (key.algorithm === 'rsa2048') {
    return encodeBerTlv({
      tag: TAG_PUBLIC_KEY_TEMPLATE,
      value: new Uint8Array(0),
      children: [
        { tag: 0x81, value: field(jwk.n) },
        { tag: 0x82, value: field(jwk.e) },
      ],
    });
  }

  const size = CURVES[key.algorithm].size;
  const point = new Uint8Array(2 * size + 1);
  point[0] = 0x04;
  point.set(field(jwk.x), 1);
  point.set(field(jwk.y), 1 + size);
  return encodeBerTlv({ tag: TAG_PUBLIC_KEY_TEMPLATE, value: new Uint8Array(0), children: [{ tag: 0x86, value: point }] });
}
