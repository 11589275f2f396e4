/**
 * A `Reader` around an in-process virtual card: the slot a transport sees
 * when it serves the emulated CAC card.
 */
import { EventEmitter } from 'node:events';
import { NoCardError, type Reader, type ReaderEvents } from '../reader/reader.js';
import type { SmartCard } from './virtual-card.js';

export class EmulatedReader extends EventEmitter<ReaderEvents> implements Reader {
  private card: SmartCard | undefined;
  private closed = false;

  /** Creates the reader, with `card` already inserted when given (no 'insert' event for it). */
  constructor(
    readonly name: string,
    card?: SmartCard,
  ) {
    super();
    this.card = card;
  }

  /** The inserted card, if any. */
  get insertedCard(): SmartCard | undefined {
    return this.card;
  }

  atr(): Uint8Array | undefined {
    return this.card?.atr;
  }

  reset(_kind: 'cold' | 'warm'): Promise<Uint8Array> {
    const card = this.card;
    if (card === undefined) return Promise.reject(new NoCardError(this.name));
    card.reset();
    return Promise.resolve(card.atr);
  }

  powerOff(): Promise<void> {
    this.card?.powerOff();
    return Promise.resolve();
  }

  /**
   * Sends a command to the inserted card. The card runs commands one at a
   * time in arrival order. Rejects with NoCardError when the slot is empty,
   * also for a command queued before the card was removed.
   */
  async transmit(command: Uint8Array): Promise<Uint8Array> {
    const card = this.card;
    if (card === undefined) throw new NoCardError(this.name);
    const response = await card.transmit(command);
    if (this.card !== card) throw new NoCardError(this.name);
    return response;
  }

  /** Inserts `card`, resets it to its power-on state and emits 'insert'. A present card is removed first. */
  insert(card: SmartCard): void {
    if (this.card !== undefined) this.remove();
    card.reset();
    this.card = card;
    this.emit('insert', card.atr);
  }

  /** Removes the card and emits 'remove'; does nothing when the slot is empty. */
  remove(): void {
    const card = this.card;
    if (card === undefined) return;
    card.powerOff();
    this.card = undefined;
    this.emit('remove');
  }

  /** Removes the card and emits 'close' once; the reader is unusable afterwards. */
  close(): void {
    if (this.closed) return;
    this.remove();
    this.closed = true;
    this.emit('close');
  }
}
