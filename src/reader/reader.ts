/**
 * The seam between card sources and transports.
 *
 * Every card source (the emulated CAC card, a relayed PC/SC card, the remote
 * card of a VSCard client) implements `Reader`, and every transport (VSCard,
 * vpcd, CCID over usbredir or USB/IP) consumes it. A transport never needs to
 * know which kind of card it carries.
 */
import { EventEmitter } from 'node:events';

/** Events a reader emits when its slot changes. */
export interface ReaderEvents {
  /** A card was inserted; the argument is its ATR. */
  insert: [atr: Uint8Array];
  /** The card was removed from the slot. */
  remove: [];
  /** The reader itself went away (a physical reader was unplugged, a client left). */
  close: [];
}

/**
 * One card slot as a transport uses it: a name, the ATR of the present card,
 * power control, and APDU exchange.
 */
export interface Reader extends EventEmitter<ReaderEvents> {
  /** Reader name shown to the host or guest, e.g. "virtcard CAC". */
  readonly name: string;

  /** Returns the ATR of the inserted card, or undefined when the slot is empty. */
  atr(): Uint8Array | undefined;

  /**
   * Powers the card on (cold reset) or resets it (warm reset) and returns its ATR.
   * Rejects with `NoCardError` when the slot is empty.
   */
  reset(kind: 'cold' | 'warm'): Promise<Uint8Array>;

  /** Powers the card off. Does nothing when the slot is empty. */
  powerOff(): Promise<void>;

  /**
   * Sends one command APDU and returns the response APDU (data followed by
   * SW1 SW2). Rejects with `NoCardError` when the slot is empty; a card-level
   * failure is a status word, never a rejection.
   */
  transmit(command: Uint8Array): Promise<Uint8Array>;
}

/** Raised by a reader when an operation needs a card and the slot is empty. */
export class NoCardError extends Error {
  constructor(readerName: string) {
    super(`no card in reader "${readerName}": insert a card and try again`);
    this.name = 'NoCardError';
  }
}
