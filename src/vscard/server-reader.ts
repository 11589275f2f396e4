/**
 * The card of one VSCard client, as a `Reader`: the "remote card" that
 * `virtcard host` exports. The server session feeds it the client's
 * ATR, CardRemove and APDU answers; `transmit` sends VSC_APDU to the client
 * and resolves with the client's VSC_APDU answer, first in, first out.
 */
import { EventEmitter } from 'node:events';
import { NoCardError, type Reader, type ReaderEvents } from '../reader/reader.js';
import { MAX_PAYLOAD_LENGTH } from './protocol.js';

interface PendingApdu {
  resolve: (response: Uint8Array) => void;
  reject: (error: Error) => void;
}

/** Raised to a transmit when the client returned VSC_Error instead of an APDU. */
export class RemoteCardError extends Error {
  constructor(readerName: string, code: number) {
    super(`the VSCard client of reader "${readerName}" reported an error (code ${code}) instead of a response APDU`);
    this.name = 'RemoteCardError';
  }
}

export class RemoteCardReader extends EventEmitter<ReaderEvents> implements Reader {
  private card: Uint8Array | undefined;
  private closed = false;
  private readonly pending: PendingApdu[] = [];

  /** `sendApdu` writes one VSC_APDU with the command to the client. */
  constructor(
    readonly name: string,
    private readonly sendApdu: (command: Uint8Array) => void,
  ) {
    super();
  }

  /** Number of commands sent to the client that have no response yet. */
  get pendingCount(): number {
    return this.pending.length;
  }

  atr(): Uint8Array | undefined {
    return this.card;
  }

  /** Returns the stored ATR: QEMU's passthru sends nothing to the client on power-on or reset. */
  reset(_kind: 'cold' | 'warm'): Promise<Uint8Array> {
    return this.card ? Promise.resolve(this.card) : Promise.reject(new NoCardError(this.name));
  }

  powerOff(): Promise<void> {
    return Promise.resolve();
  }

  transmit(command: Uint8Array): Promise<Uint8Array> {
    if (this.card === undefined) return Promise.reject(new NoCardError(this.name));
    if (command.length > MAX_PAYLOAD_LENGTH) {
      return Promise.reject(
        new RangeError(`command APDU of ${command.length} bytes exceeds the ${MAX_PAYLOAD_LENGTH}-byte VSCard payload limit`),
      );
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.sendApdu(command);
    });
  }

  /** Inserts a card with `atr` (a new ATR while inserted re-inserts) and emits 'insert'. */
  insertCard(atr: Uint8Array): void {
    if (this.closed) return;
    this.failPending(() => new NoCardError(this.name));
    this.card = Uint8Array.from(atr);
    this.emit('insert', this.card);
  }

  /** Removes the card, fails unanswered commands and emits 'remove'; does nothing when the slot is empty. */
  removeCard(): void {
    if (this.card === undefined) return;
    this.card = undefined;
    this.failPending(() => new NoCardError(this.name));
    this.emit('remove');
  }

  /** Delivers the client's response APDU to the oldest unanswered command. Returns false when none was waiting. */
  answer(response: Uint8Array): boolean {
    const next = this.pending.shift();
    next?.resolve(response);
    return next !== undefined;
  }

  /** Fails the oldest unanswered command with the client's error code. Returns false when none was waiting. */
  answerError(code: number): boolean {
    const next = this.pending.shift();
    next?.reject(new RemoteCardError(this.name, code));
    return next !== undefined;
  }

  /** Removes the card and emits 'close': the client removed its reader or disconnected. */
  close(): void {
    if (this.closed) return;
    this.removeCard();
    this.closed = true;
    this.emit('close');
  }

  private failPending(makeError: () => Error): void {
    for (const entry of this.pending.splice(0)) entry.reject(makeError());
  }
}
