/**
 * Snapshots of PC/SC reader states, as `virtcard list` prints them and as
 * the monitor compares them.
 */
import {
  PNP_NOTIFICATION,
  PcscContext,
  SCARD_STATE_EMPTY,
  SCARD_STATE_EXCLUSIVE,
  SCARD_STATE_INUSE,
  SCARD_STATE_MUTE,
  SCARD_STATE_PRESENT,
  SCARD_STATE_UNAVAILABLE,
  SCARD_STATE_UNAWARE,
  SCARD_STATE_UNKNOWN,
} from './pcsc-lite.js';

/** The state of one reader at one moment. */
export interface ReaderSnapshot {
  readonly name: string;
  /** SCARD_STATE_* flags without pcsc-lite's event counter. */
  readonly flags: number;
  /** ATR of the card in the reader; empty when there is no card. */
  readonly atr: Uint8Array;
}

/** Returns whether the flags report a card in the reader (mute cards included). */
export function isCardPresent(flags: number): boolean {
  return (flags & SCARD_STATE_PRESENT) !== 0;
}

/** Returns whether the flags report the reader as gone or unusable. */
export function isReaderGone(flags: number): boolean {
  return (flags & (SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE)) !== 0;
}

const FLAG_WORDS: ReadonlyArray<[number, string]> = [
  [SCARD_STATE_UNKNOWN, 'unknown reader'],
  [SCARD_STATE_UNAVAILABLE, 'unavailable'],
  [SCARD_STATE_EMPTY, 'empty'],
  [SCARD_STATE_PRESENT, 'card present'],
  [SCARD_STATE_MUTE, 'mute card'],
  [SCARD_STATE_EXCLUSIVE, 'used exclusively'],
  [SCARD_STATE_INUSE, 'in use'],
];

/** Describes the flags in words, e.g. "card present, in use". */
export function describeReaderFlags(flags: number): string {
  const words = FLAG_WORDS.filter(([flag]) => (flags & flag) !== 0).map(([, word]) => word);
  return words.length > 0 ? words.join(', ') : 'state not reported';
}

/** Reads every reader's current state once, without waiting for a change. */
export async function readReaderSnapshots(context: PcscContext): Promise<ReaderSnapshot[]> {
  const readers = await context.listReaders();
  if (readers.length === 0) return [];

  const statuses = await context.getStatusChange(
    readers,
    readers.map(() => SCARD_STATE_UNAWARE),
    0,
  );
  return statuses
    .filter((status) => status.reader !== PNP_NOTIFICATION)
    .map((status) => ({
      name: status.reader,
      flags: status.eventState & 0xffff,
      atr: isCardPresent(status.eventState) ? status.atr : new Uint8Array(0),
    }));
}
