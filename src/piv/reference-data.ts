/**
 * PIV PIN and PUK checks with retry counters (SP 800-73-4 part 2, VERIFY,
 * CHANGE REFERENCE DATA and RESET RETRY COUNTER): a wrong value gets
 * 63 Cx with x tries left, the value blocks when x reaches 0 (69 83 from
 * then on, even for the right value), and a right value refills the counter.
 */
import { timingSafeEqual } from 'node:crypto';
import { KeyStoreError } from '../backends/key-store.js';
import { statusWordForKeyStoreError } from '../card/key-store-status.js';
import type { PinChecker } from '../card/pin.js';
import { SW_AUTHENTICATION_METHOD_BLOCKED, SW_SUCCESS, verificationFailed } from '../iso7816/status-words.js';
import type { ReferenceDataState } from './card-state.js';

/** Length of a PIN or PUK in command data: the value padded with FF. */
export const PADDED_LENGTH = 8;

/** Shortest PIN or PUK that CHANGE REFERENCE DATA and RESET RETRY COUNTER accept (SP 800-73-4 allows 6 to 8). */
export const MIN_VALUE_LENGTH = 6;

/** Removes the FF padding; returns undefined when the value is not 8 bytes or has FF before other bytes. */
export function unpadReferenceValue(padded: Uint8Array): Uint8Array | undefined {
  if (padded.length !== PADDED_LENGTH) return undefined;
  let end = padded.length;
  while (end > 0 && padded[end - 1] === 0xff) end--;
  const value = padded.subarray(0, end);
  return value.includes(0xff) ? undefined : value;
}

function sameValue(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export class PivReferenceData {
  private verifiedFlag = false;

  /**
   * `externalCheck`, when given, replaces the comparison with the stored
   * value: a card whose keys come from a key store takes the store's PIN.
   */
  constructor(
    private readonly data: ReferenceDataState,
    private readonly externalCheck?: PinChecker,
  ) {}

  get verified(): boolean {
    return this.verifiedFlag;
  }

  get triesLeft(): number {
    return this.data.triesLeft;
  }

  get blocked(): boolean {
    return this.data.triesLeft === 0;
  }

  /** Whether the value can be changed on the card; false when a key store checks it. */
  get changeable(): boolean {
    return this.externalCheck === undefined;
  }

  resetSecurityStatus(): void {
    this.verifiedFlag = false;
  }

  /** Returns the status of VERIFY without data: 90 00 when verified, 69 83 when blocked, else 63 Cx. */
  status(): number {
    if (this.verifiedFlag) return SW_SUCCESS;
    if (this.blocked) return SW_AUTHENTICATION_METHOD_BLOCKED;
    return verificationFailed(this.data.triesLeft);
  }

  /**
   * Checks the unpadded `candidate` and counts the try: 90 00 and a full
   * counter when right, 63 Cx when wrong (63 C0 for the try that blocks),
 * 69 83 when already blocked. Every check
   * first clears the verified state. A key store failure returns its status
   * word and does not count.
   */
  async check(candidate: Uint8Array): Promise<number> {
    this.verifiedFlag = false;
    if (this.blocked) return SW_AUTHENTICATION_METHOD_BLOCKED;

    let correct: boolean;
    if (this.externalCheck === undefined) {
      correct = sameValue(candidate, this.data.value);
    } else {
      try {
        correct = await this.externalCheck(candidate);
      } catch (error) {
        if (error instanceof KeyStoreError) return statusWordForKeyStoreError(error);
        throw error;
      }
    }

    if (!correct) {
      this.data.triesLeft -= 1;
      return verificationFailed(this.data.triesLeft);
    }
    this.data.triesLeft = this.data.maxRetries;
    this.verifiedFlag = true;
    return SW_SUCCESS;
  }

  /** Stores a new value and refills the counter. */
  replace(value: Uint8Array): void {
    this.data.value = Uint8Array.from(value);
    this.data.triesLeft = this.data.maxRetries;
  }
}
