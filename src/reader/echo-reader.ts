/**
 * A reader whose card returns every command APDU followed by 90 00.
 *
 * It has no card logic at all, so tests of a transport see only the
 * transport, and a benchmark through it measures the transport's limit.
 */
import { EventEmitter } from 'node:events';
import { NoCardError, type Reader, type ReaderEvents } from './reader.js';

/** ATR of the echo card: a minimal T=0 ATR with the historical bytes "echo". */
export const ECHO_ATR = Uint8Array.from([0x3b, 0x04, 0x65, 0x63, 0x68, 0x6f]);

export class EchoReader extends EventEmitter<ReaderEvents> implements Reader {
  private present: boolean;
  /** Number of APDUs transmitted since the reader was created. */
  transmitted = 0;
  /** Power state as the last control operation left it. */
  powered = false;

  constructor(
    readonly name = 'virtcard echo',
    private readonly cardAtr: Uint8Array = ECHO_ATR,
    options: { inserted?: boolean } = {},
  ) {
    super();
    this.present = options.inserted ?? true;
  }

  atr(): Uint8Array | undefined {
    return this.present ? this.cardAtr : undefined;
  }

  reset(_kind: 'cold' | 'warm'): Promise<Uint8Array> {
    if (!this.present) return Promise.reject(new NoCardError(this.name));
    this.powered = true;
    return Promise.resolve(this.cardAtr);
  }

  powerOff(): Promise<void> {
    this.powered = false;
    return Promise.resolve();
  }

  transmit(command: Uint8Array): Promise<Uint8Array> {
    if (!this.present) return Promise.reject(new NoCardError(this.name));
    this.transmitted += 1;

    const response = new Uint8Array(command.length + 2);
    response.set(command, 0);
    response[command.length] = 0x90;
    response[command.length + 1] = 0x00;
    return Promise.resolve(response);
  }

  /** Inserts the card and emits 'insert'; does nothing when a card is present. */
  insert(): void {
    if (this.present) return;
    this.present = true;
    this.emit('insert', this.cardAtr);
  }

  /** Removes the card and emits 'remove'; does nothing when the slot is empty. */
  remove(): void {
    if (!this.present) return;
    this.present = false;
    this.powered = false;
    this.emit('remove');
  }
}
