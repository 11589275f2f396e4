/**
 * A recording of the APDU exchanges of a card, kept by `vpcd-card-server.js`
 * and replayed by `vpcd-replay-card.js`. Bytes are lowercase hexadecimal.
 */
import { writeFileSync } from 'node:fs';
import type { Reader } from '../src/reader/reader.js';

export interface ApduExchange {
  command: string;
  response: string;
}

export interface ApduRecording {
  atr: string;
  /** In the order the card processed them. */
  exchanges: ApduExchange[];
}

/** Wraps `reader.transmit` so every exchange is kept; `save` writes them to `file`. */
export function recordApdus(reader: Reader, file: string): { save(): void } {
  const transmit = reader.transmit.bind(reader);
  const exchanges: ApduExchange[] = [];
  reader.transmit = async (command: Uint8Array): Promise<Uint8Array> => {
    const commandHex = Buffer.from(command).toString('hex');
    const response = await transmit(command);
    exchanges.push({ command: commandHex, response: Buffer.from(response).toString('hex') });
    return response;
  };
  return {
    save(): void {
      const recording: ApduRecording = { atr: Buffer.from(reader.atr() ?? []).toString('hex'), exchanges };
      writeFileSync(file, `${JSON.stringify(recording, null, 1)}\n`);
    },
  };
}
