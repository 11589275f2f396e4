/** Fuzz target: the parser of libcacard's emulator option string (vscclient -e). */
import { EmulatorOptionsError, parseEmulatorOptions } from '../../src/cli/libcacard-options.js';
import { guardSync } from './guard.js';

/** Returns true for the error the module raises by contract for invalid input. */
export function isExpectedError(error: unknown): boolean {
  return error instanceof EmulatorOptionsError;
}

/** Throws when the input reveals a bug; check isExpectedError first. */
export function check(data: Buffer): void {
  parseEmulatorOptions(data.toString('latin1'));
}

export const fuzz = guardSync(check, isExpectedError);
