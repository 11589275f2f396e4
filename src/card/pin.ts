/**
 * Cardholder PIN state with a retry counter, as a physical CAC keeps it.
 *
 * This deliberately differs from libcacard 2.8, which has no retry counter:
 * there a wrong PIN returns 69 85, nothing ever blocks, and VERIFY without
 * data returns 6A 88 (or 63 C3 once the Windows-compatibility flag is set).
 * Here a wrong PIN answers 63 Cx with x tries left, the PIN blocks when the
 * counter reaches 0 (69 83 from then on, even for the right PIN), and VERIFY
 * without data answers 63 Cx or 90 00. The PIN is checked by the key store
 * on every VERIFY; a login the store may still hold is never trusted.
 */
import { KeyStoreError } from '../backends/key-store.js';
import {
  SW_AUTHENTICATION_METHOD_BLOCKED,
  SW_SUCCESS,
  verificationFailed,
} from '../iso7816/status-words.js';
import { statusWordForKeyStoreError } from './key-store-status.js';

/** Default number of wrong PINs before the PIN blocks, as on a CAC. */
export const DEFAULT_PIN_RETRIES = 3;

/** Largest retry count, because 63 Cx reports at most 15 tries. */
export const MAX_PIN_RETRIES = 15;

/** Checks a PIN against the key store; resolves true when it is correct. */
export type PinChecker = (pin: Uint8Array) => Promise<boolean>;

/** Removes the trailing FF bytes OpenSC pads the PIN with, as libcacard does. */
export function stripPinPadding(pin: Uint8Array): Uint8Array {
  let end = pin.length;
  while (end > 0 && pin[end - 1] === 0xff) end--;
  return pin.subarray(0, end);
}

export class PinState {
  private verifiedFlag = false;
  private triesLeft: number;

  constructor(
    private readonly check: PinChecker,
    readonly maxRetries: number = DEFAULT_PIN_RETRIES,
  ) {
    if (!Number.isInteger(maxRetries) || maxRetries < 1 || maxRetries > MAX_PIN_RETRIES) {
      throw new RangeError(`PIN retry count must be an integer from 1 to ${MAX_PIN_RETRIES}, got ${maxRetries}`);
    }
    this.triesLeft = maxRetries;
  }

  /** Whether the PIN was verified since the last reset. */
  get verified(): boolean {
    return this.verifiedFlag;
  }

  /** Number of wrong PINs still allowed before the PIN blocks. */
  get remainingTries(): number {
    return this.triesLeft;
  }

  get blocked(): boolean {
    return this.triesLeft === 0;
  }

  /** Clears the verified state; a reset or power-on does this. The retry counter is kept. */
  resetSecurityStatus(): void {
    this.verifiedFlag = false;
  }

  /** Returns the VERIFY status without data: 90 00 when verified, 69 83 when blocked, else 63 Cx. */
  status(): number {
    if (this.verifiedFlag) return SW_SUCCESS;
    if (this.blocked) return SW_AUTHENTICATION_METHOD_BLOCKED;
    return verificationFailed(this.triesLeft);
  }

  /**
   * Verifies `pin` (trailing FF padding removed) and returns the status word:
   * 90 00 and a full counter when correct, 63 Cx with x tries left when wrong,
   * 69 83 when blocked. Any VERIFY with data first clears the verified state,
   * so a wrong PIN logs out. A key store failure returns its mapped status
   * word and does not count as a try.
   */
  async verify(pin: Uint8Array): Promise<number> {
    this.verifiedFlag = false;
    if (this.blocked) return SW_AUTHENTICATION_METHOD_BLOCKED;

    let correct: boolean;
    try {
      correct = await this.check(stripPinPadding(pin));
    } catch (error) {
      if (error instanceof KeyStoreError) return statusWordForKeyStoreError(error);
      throw error;
    }

    if (correct) {
      this.triesLeft = this.maxRetries;
      this.verifiedFlag = true;
      return SW_SUCCESS;
    }
    this.triesLeft -= 1;
    return verificationFailed(this.triesLeft);
  }
}
