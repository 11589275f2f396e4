/**
 * A `Reader` that an export keeps for its whole life while the reader
 * behind it comes and goes: `virtcard host` plugs a VSCard client's reader
 * into a free slot and the slot becomes free again when that reader closes.
 * An empty slot behaves like a reader without a card; the slot itself never
 * emits 'close'.
 */
import { EventEmitter } from 'node:events';
import { NoCardError, type Reader, type ReaderEvents } from '../reader/reader.js';

export class ReaderSlot extends EventEmitter<ReaderEvents> implements Reader {
  private inner: Reader | undefined;
  private readonly innerListeners = {
    insert: (atr: Uint8Array) => this.emit('insert', atr),
    remove: () => this.emit('remove'),
    close: () => this.unplug(),
  };

  constructor(readonly name: string) {
    super();
  }

  /** The reader plugged in, if any. */
  get plugged(): Reader | undefined {
    return this.inner;
  }

  /** Plugs `reader` into the empty slot; a card already in it is inserted at once. Throws when the slot is taken. */
  plug(reader: Reader): void {
    if (this.inner !== undefined) throw new Error(`reader slot "${this.name}" already contains reader "${this.inner.name}"`);
    this.inner = reader;
    reader.on('insert', this.innerListeners.insert);
    reader.on('remove', this.innerListeners.remove);
    reader.on('close', this.innerListeners.close);
    const atr = reader.atr();
    if (atr !== undefined) this.emit('insert', atr);
  }

  /** Empties the slot; emits 'remove' when the plugged reader had a card. */
  unplug(): void {
    const reader = this.inner;
    if (reader === undefined) return;
    this.inner = undefined;
    reader.off('insert', this.innerListeners.insert);
    reader.off('remove', this.innerListeners.remove);
    reader.off('close', this.innerListeners.close);
    if (reader.atr() !== undefined) this.emit('remove');
  }

  atr(): Uint8Array | undefined {
    return this.inner?.atr();
  }

  reset(kind: 'cold' | 'warm'): Promise<Uint8Array> {
    return this.inner ? this.inner.reset(kind) : Promise.reject(new NoCardError(this.name));
  }

  powerOff(): Promise<void> {
    return this.inner ? this.inner.powerOff() : Promise.resolve();
  }

  transmit(command: Uint8Array): Promise<Uint8Array> {
    return this.inner ? this.inner.transmit(command) : Promise.reject(new NoCardError(this.name));
  }
}
