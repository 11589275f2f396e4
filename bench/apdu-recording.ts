/**
 * A recording of the APDU exchanges of a card, kept by `vpcd-card-server.js`
 * and replayed by `vpcd-replay-card.js`. Bytes are lowercase hexadecimal.
 * VERIFY exchanges are left out, because their command carries the PIN.
 */
import { writeFileSync } from 'node:fs';
import type { Reader } from '../src/reader/reader.js';

/** INS of the ISO 7816-4 VERIFY command. */
const INS_VERIFY = 0x20;

export interface ApduExchange {
  command: string;
  response: string;
}

export interface ApduRecording {
  atr: string;
  /** In the order the card processed them. */
  exchanges: ApduExchange[];
}

/**
 * Wraps `reader.transmit` so that every exchange except VERIFY is kept.
 * `save` writes them to `file`, readable by the owner only.
 */
export function recordApdus(reader: Reader, file: string): { save(): void } {
  const transmit = reader.transmit.bind(reader);
  const exchanges: ApduExchange[] = [];
  reader.transmit = async (command: Uint8Array): Promise<Uint8Array> => {
    const response = await transmit(command);
    if (command[1] !== INS_VERIFY) {
      exchanges.push({ command: Buffer.from(command).toString('hex'), response: Buffer.from(response).toString('hex') });
    }
    return response;
  };
  return {
    save(): void {
      const recording: ApduRecording = { atr: Buffer.from(reader.atr() ?? []).toString('hex'), exchanges };
      writeFileSync(file, `${JSON.stringify(recording, null, 1)}\n`, { mode: 0o600 });
    },
  };
}
