/**
 * Fuzz target: the VSCard streaming decoder, fed the input in pieces whose
 * sizes come from the input itself. VscProtocolError is the decoder's
 * contract for invalid streams; anything else is a crash.
 */
import { VscDecoder } from '../../src/vscard/decoder.js';
import { VscProtocolError } from '../../src/vscard/errors.js';
import { guardSync } from './guard.js';

/** Returns true for the error the module raises by contract for invalid input. */
export function isExpectedError(error: unknown): boolean {
  return error instanceof VscProtocolError;
}

/** Throws when the input reveals a bug; check isExpectedError first. */
export function check(data: Buffer): void {
  const decoder = new VscDecoder();
  const pieceSize = 1 + ((data[0] ?? 0) % 64);
  for (let offset = 1; offset < data.length; offset += pieceSize) {
    decoder.push(data.subarray(offset, offset + pieceSize));
    while (decoder.next() !== undefined) {
      // Drain every complete message.
    }
  }
}

export const fuzz = guardSync(check, isExpectedError);
