/**
 * Card management key (key reference 9B) authentication with GENERAL
 * AUTHENTICATE, in the two forms SP 800-73-4 part 2 appendix A.1 allows:
 *
 * - external authentication: the host requests a challenge (`7C 02 81 00`),
 *   the card returns `81 <R>`, the host returns `82 <E(K, R)>`;
 * - mutual authentication: the host requests a witness (`7C 02 80 00`), the
 *   card returns `80 <E(K, R)>`, the host sends `80 <R> 81 <C>` and the card
 *   returns `82 <E(K, C)>` (the flow yubico-piv-tool uses).
 *
 * E is single-block ECB encryption with 3DES or AES. A challenge serves for
 * one response only, right or wrong.
 */
import { createCipheriv, createDecipheriv, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ManagementKeyState } from './card-state.js';
import {
  ALGORITHM_3DES,
  ALGORITHM_3DES_LEGACY,
  ALGORITHM_AES_128,
  ALGORITHM_AES_192,
  ALGORITHM_AES_256,
} from './constants.js';

interface CipherSpec {
  readonly name: string;
  readonly keyLength: number;
  readonly blockSize: number;
}

const CIPHERS = new Map<number, CipherSpec>([
  [ALGORITHM_3DES, { name: 'des-ede3-ecb', keyLength: 24, blockSize: 8 }],
  [ALGORITHM_AES_128, { name: 'aes-128-ecb', keyLength: 16, blockSize: 16 }],
  [ALGORITHM_AES_192, { name: 'aes-192-ecb', keyLength: 24, blockSize: 16 }],
  [ALGORITHM_AES_256, { name: 'aes-256-ecb', keyLength: 32, blockSize: 16 }],
]);

/** Returns the cipher of a management key algorithm identifier, or undefined when it is not a symmetric PIV algorithm. */
export function managementKeyCipher(algorithm: number): CipherSpec | undefined {
  return CIPHERS.get(algorithm === ALGORITHM_3DES_LEGACY ? ALGORITHM_3DES : algorithm);
}

function encryptBlock(cipher: CipherSpec, key: Uint8Array, block: Uint8Array): Buffer {
  const context = createCipheriv(cipher.name, key, null);
  context.setAutoPadding(false);
  return Buffer.concat([context.update(block), context.final()]);
}

function decryptBlock(cipher: CipherSpec, key: Uint8Array, block: Uint8Array): Buffer {
  const context = createDecipheriv(cipher.name, key, null);
  context.setAutoPadding(false);
  return Buffer.concat([context.update(block), context.final()]);
}

/** Result of one authentication step. */
export type ManagementStep =
  | { readonly kind: 'data'; readonly tag: number; readonly value: Uint8Array }
  | { readonly kind: 'authenticated'; readonly tag?: number; readonly value?: Uint8Array }
  | { readonly kind: 'failed' }
  | { readonly kind: 'invalid'; readonly reason: string };

/** The authentication state machine for one card session; `reset` runs on card reset. */
export class ManagementKeyAuthenticator {
  private pendingChallenge: Buffer | undefined;
  private pendingWitness: Buffer | undefined;
  private authenticatedFlag = false;

  constructor(private readonly keyState: () => ManagementKeyState) {}

  get authenticated(): boolean {
    return this.authenticatedFlag;
  }

  reset(): void {
    this.pendingChallenge = undefined;
    this.pendingWitness = undefined;
    this.authenticatedFlag = false;
  }

  /**
   * Processes the 7C template of a GENERAL AUTHENTICATE for key 9B: `items`
   * maps each tag (80, 81, 82) to its value. The algorithm P1 must already be
   * checked against the key's.
   */
  step(items: ReadonlyMap<number, Uint8Array>): ManagementStep {
    const { algorithm, key } = this.keyState();
    const cipher = managementKeyCipher(algorithm);
    if (cipher === undefined) return { kind: 'invalid', reason: `management key algorithm ${algorithm} is unknown` };

    const witness = items.get(0x80);
    const challenge = items.get(0x81);
    const response = items.get(0x82);

    if (witness !== undefined && witness.length === 0 && challenge === undefined && response === undefined) {
      this.authenticatedFlag = false;
      this.pendingChallenge = undefined;
      this.pendingWitness = randomBytes(cipher.blockSize);
      return { kind: 'data', tag: 0x80, value: encryptBlock(cipher, key, this.pendingWitness) };
    }

    if (challenge !== undefined && challenge.length === 0 && witness === undefined && response === undefined) {
      this.authenticatedFlag = false;
      this.pendingWitness = undefined;
      this.pendingChallenge = randomBytes(cipher.blockSize);
      return { kind: 'data', tag: 0x81, value: Uint8Array.from(this.pendingChallenge) };
    }

    if (witness !== undefined && challenge !== undefined && witness.length > 0) {
      const expected = this.pendingWitness;
      this.pendingWitness = undefined;
      if (expected === undefined) return { kind: 'invalid', reason: 'no witness was requested before the mutual authentication' };
      if (witness.length !== cipher.blockSize || challenge.length !== cipher.blockSize) {
        return { kind: 'invalid', reason: `witness and challenge must be ${cipher.blockSize} bytes` };
      }
      if (!timingSafeEqual(witness, expected)) return { kind: 'failed' };
      this.authenticatedFlag = true;
      return { kind: 'authenticated', tag: 0x82, value: encryptBlock(cipher, key, challenge) };
    }

    if (response !== undefined && response.length > 0 && witness === undefined) {
      const expected = this.pendingChallenge;
      this.pendingChallenge = undefined;
      if (expected === undefined) return { kind: 'invalid', reason: 'no challenge was requested before the response' };
      if (response.length !== cipher.blockSize) return { kind: 'invalid', reason: `the response must be ${cipher.blockSize} bytes` };
      if (!timingSafeEqual(decryptBlock(cipher, key, response), expected)) return { kind: 'failed' };
      this.authenticatedFlag = true;
      return { kind: 'authenticated' };
    }

    return { kind: 'invalid', reason: 'the 7C template matches no management key authentication step' };
  }
}
