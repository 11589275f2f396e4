/** Mapping of key store failures to the status words libcacard 2.8 gives for the NSS errors behind them. */
import type { KeyStoreError, KeyStoreFailure } from '../backends/key-store.js';
import {
  SW_CONDITIONS_NOT_SATISFIED,
  SW_DATA_INVALID,
  SW_EXECUTION_ERROR_NV_CHANGED,
  SW_MEMORY_FAILURE,
} from '../iso7816/status-words.js';

const STATUS_WORDS: Record<KeyStoreFailure, number> = {
  'invalid-input': SW_DATA_INVALID,
  'not-logged-in': SW_CONDITIONS_NOT_SATISFIED,
  'no-memory': SW_MEMORY_FAILURE,
  failed: SW_EXECUTION_ERROR_NV_CHANGED,
};

/** Returns 69 84, 69 85, 65 81 or 65 00 for the reason of `error`. */
export function statusWordForKeyStoreError(error: KeyStoreError): number {
  return STATUS_WORDS[error.reason];
}
