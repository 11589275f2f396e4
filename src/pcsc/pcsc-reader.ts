/**
 * A physical card in a host PC/SC reader, relayed through the `Reader` seam.
 *
 * Command APDUs go to the card unchanged and responses come back unchanged
 * (T=0 or T=1, whichever PC/SC negotiated), so GET RESPONSE and 61xx/6Cxx
 * handling stay with the card and the guest, as with libcacard's vscclient.
 *
 * Sharing with host software: the card is opened in shared mode and held in
 * an exclusive PC/SC transaction only while the guest is busy with it. The
 * first APDU begins the transaction. It ends on power-off, on reset, and
 * once no APDU arrived for `idleMs`. After a 61xx response the guest is
 * expected to fetch the rest with GET RESPONSE, so the wait is `chainIdleMs`.
 * Between two such bursts, opensc-tool or a browser on the host can use the
 * card. Another process may reset the card or select another application
 * in such a gap; the guest then sees the card as the host left it.
 *
 * Errors never crash the relay. A failed exchange returns 6F 00 to the
 * guest, where libcacard 2.8's vscclient stops at an assert. A removed card
 * emits 'remove', a vanished reader emits 'close', and a card held
 * exclusively by another process is reported and retried every `retryDelayMs`.
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { logger, type Logger } from '../log/logger.js';
import { NoCardError, type Reader, type ReaderEvents } from '../reader/reader.js';
import {
  PcscContext,
  PcscError,
  SCARD_E_INVALID_HANDLE,
  SCARD_E_NO_SERVICE,
  SCARD_E_NO_SMARTCARD,
  SCARD_E_NOT_TRANSACTED,
  SCARD_E_READER_UNAVAILABLE,
  SCARD_E_SERVICE_STOPPED,
  SCARD_E_SHARING_VIOLATION,
  SCARD_E_UNKNOWN_READER,
  SCARD_F_COMM_ERROR,
  SCARD_LEAVE_CARD,
  SCARD_RESET_CARD,
  SCARD_SHARE_EXCLUSIVE,
  SCARD_SHARE_SHARED,
  SCARD_UNPOWER_CARD,
  SCARD_W_REMOVED_CARD,
  SCARD_W_RESET_CARD,
  SCARD_W_UNPOWERED_CARD,
  SCARD_W_UNRESPONSIVE_CARD,
  type CardConnection,
} from './pcsc-lite.js';
import type { PcscMonitor } from './pcsc-monitor.js';

export interface PcscReaderOptions {
  /** Idle time after which the guest's transaction on the card ends, in milliseconds; default 500. */
  idleMs?: number;
  /** Idle time after a 61xx response (a GET RESPONSE is expected), in milliseconds; default 5000. */
  chainIdleMs?: number;
  /** Delay between attempts to open a card that another process opened exclusively, in milliseconds; default 2000. */
  retryDelayMs?: number;
  /** Open the card with SCARD_SHARE_EXCLUSIVE for as long as it is relayed, so no host software can use it; default false. */
  exclusive?: boolean;
  /** Parent logger; default the process-wide logger. */
  logger?: Logger;
}

/** Status word 6F 00 ("no precise diagnosis"), returned for an APDU that PC/SC failed to exchange. */
export const SW_NO_PRECISE_DIAGNOSIS = Uint8Array.from([0x6f, 0x00]);

/** Time `close()` waits for pending PC/SC calls, in milliseconds. */
const CLOSE_TIMEOUT_MS = 2000;

/** Attempts to open an exclusively held card between two warnings. */
const FAILURES_PER_WARNING = 15;

const CARD_GONE_CODES = new Set([SCARD_W_REMOVED_CARD, SCARD_E_NO_SMARTCARD]);
const READER_GONE_CODES = new Set([SCARD_E_READER_UNAVAILABLE, SCARD_E_UNKNOWN_READER]);
const SERVICE_GONE_CODES = new Set([SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED, SCARD_E_INVALID_HANDLE, SCARD_F_COMM_ERROR]);

export class PcscReader extends EventEmitter<ReaderEvents> implements Reader {
  private readonly log: Logger;
  private readonly idleMs: number;
  private readonly chainIdleMs: number;
  private readonly retryDelayMs: number;
  private readonly shareMode: number;

  /** ATR the monitor reported for the card in the reader; undefined when the reader is empty. */
  private presentAtr: Uint8Array | undefined;
  /** Whether 'insert' was emitted for the present card (only after the card could be opened). */
  private announced = false;
  private context: PcscContext | undefined;
  private connection: CardConnection | undefined;
  private inTransaction = false;
  /** Resets since the connection was opened; the first one is skipped, as libcacard does, because connecting just powered the card. */
  private resetsSinceConnect = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private openFailures = 0;
  private closed = false;
  /** Every PC/SC call runs in this chain, so calls on the card never overlap. */
  private queue: Promise<unknown> = Promise.resolve();

  private readonly onCardInsert = (name: string, atr: Uint8Array): void => {
    if (name === this.name) this.handleCardInsert(atr);
  };
  private readonly onCardRemove = (name: string): void => {
    if (name === this.name) this.handleCardRemove('the card was removed from the reader');
  };
  private readonly onReaderRemove = (name: string): void => {
    if (name === this.name) this.handleReaderGone();
  };

  constructor(
    readonly name: string,
    private readonly monitor: PcscMonitor,
    options: PcscReaderOptions = {},
  ) {
    super();
    this.idleMs = options.idleMs ?? 500;
    this.chainIdleMs = options.chainIdleMs ?? 5000;
    this.retryDelayMs = options.retryDelayMs ?? 2000;
    this.shareMode = options.exclusive ? SCARD_SHARE_EXCLUSIVE : SCARD_SHARE_SHARED;
    this.log = (options.logger ?? logger).child({ component: 'pcsc-reader', reader: name });

    monitor.on('card-insert', this.onCardInsert);
    monitor.on('card-remove', this.onCardRemove);
    monitor.on('reader-remove', this.onReaderRemove);

    const current = monitor.snapshot().find((reader) => reader.name === name);
    if (current !== undefined && current.atr.length > 0) this.handleCardInsert(current.atr);
  }

  /** Transmission protocol PC/SC negotiated with the card ("T=0" or "T=1"); undefined while the card is not open. */
  get protocol(): string | undefined {
    return this.connection === undefined ? undefined : protocolName(this.connection.protocol);
  }

  atr(): Uint8Array | undefined {
    return this.announced ? this.presentAtr : undefined;
  }

  reset(kind: 'cold' | 'warm'): Promise<Uint8Array> {
    return this.enqueue(async () => {
      const atr = this.requireCard();
      if (this.connection === undefined) await this.open();
      this.resetsSinceConnect += 1;
      if (this.resetsSinceConnect === 1 || this.connection === undefined || this.context === undefined) return atr;

      await this.endTransaction();
      try {
        await this.context.reconnect(this.connection, this.shareMode, kind === 'cold' ? SCARD_UNPOWER_CARD : SCARD_RESET_CARD);
        const status = await this.context.status(this.connection);
        this.presentAtr = status.atr;
        this.connection = { handle: this.connection.handle, protocol: status.protocol };
      } catch (error) {
        this.handleCallFailure(error, `${kind} reset`);
      }
      return this.presentAtr ?? atr;
    });
  }

  powerOff(): Promise<void> {
    // The card stays powered because host software may be using it too; the guest's hold on it ends.
    return this.enqueue(() => this.endTransaction());
  }

  transmit(command: Uint8Array): Promise<Uint8Array> {
    return this.enqueue(async () => {
      this.requireCard();
      this.cancelIdleTimer();
      try {
        if (this.connection === undefined) await this.open();
        if (this.connection === undefined) return SW_NO_PRECISE_DIAGNOSIS;
        await this.beginTransaction();
        const response = await this.transmitRetryingAfterReset(command);
        if (response.length < 2) {
          // vpcd 3.3 (Debian 12's vsmartcard-vpcd) reports success with an empty response
          // when its card closes the connection in an orderly way during the APDU. Relayed
          // as is, the guest's OpenSC fails with "Unknown data received from card".
          this.log.warn(
            { operation: 'transmit', responseLength: response.length, response: '6f00' },
            'the card returned no status word; it may have been removed',
          );
          this.scheduleIdleEnd(SW_NO_PRECISE_DIAGNOSIS);
          return SW_NO_PRECISE_DIAGNOSIS;
        }
        this.scheduleIdleEnd(response);
        return response;
      } catch (error) {
        this.handleCallFailure(error, 'transmit');
        return SW_NO_PRECISE_DIAGNOSIS;
      }
    });
  }

  /** Stops relaying: ends the transaction, closes the card and the PC/SC context. Emits nothing. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.detachMonitor();
    this.cancelIdleTimer();
    this.cancelRetry();

    // A call blocked in SCardBeginTransaction (another process holds a transaction) keeps the
    // queue and the context busy, so give up after a while instead of hanging the shutdown.
    const closed = this.enqueue(() => this.closeConnection()).then(() => true);
    const timedOut = sleep(CLOSE_TIMEOUT_MS, undefined, { ref: false }).then(() => false);
    if (!(await Promise.race([closed, timedOut]))) {
      this.log.warn({ timeoutMs: CLOSE_TIMEOUT_MS }, 'a PC/SC call is still waiting for the card; leaving it to pcscd');
      return;
    }
    await this.context?.release().catch(() => undefined);
    this.context = undefined;
  }

  private enqueue<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.queue.then(operation);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private requireCard(): Uint8Array {
    if (this.closed || !this.announced || this.presentAtr === undefined) throw new NoCardError(this.name);
    return this.presentAtr;
  }

  /** Opens the card; on a sharing violation logs it and schedules a retry instead of failing. */
  private async open(): Promise<void> {
    if (this.closed || this.presentAtr === undefined || this.connection !== undefined) return;
    this.context ??= await PcscContext.establish();
    try {
      this.connection = await this.context.connect(this.name, this.shareMode);
    } catch (error) {
      if (error instanceof PcscError && error.code === SCARD_E_SHARING_VIOLATION) {
        this.reportSharingViolation();
        return;
      }
      throw error;
    }

    this.resetsSinceConnect = 0;
    if (this.openFailures > 0) this.log.info({ attempts: this.openFailures + 1 }, 'the other process released the card; relaying it now');
    this.openFailures = 0;
    const status = await this.context.status(this.connection);
    this.presentAtr = status.atr;
    this.log.info(
      { atr: Buffer.from(status.atr).toString('hex'), protocol: protocolName(this.connection.protocol) },
      'opened the card',
    );
  }

  private reportSharingViolation(): void {
    this.openFailures += 1;
    const fields = { attempt: this.openFailures, retryInMs: this.retryDelayMs };
    const message =
      'another process holds this card exclusively (SCARD_E_SHARING_VIOLATION); close it there, e.g. stop the program using the reader. Retrying';
    if (this.openFailures === 1 || this.openFailures % FAILURES_PER_WARNING === 0) this.log.warn(fields, message);
    else this.log.debug(fields, message);
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== undefined || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.enqueue(() => this.openAndAnnounce());
    }, this.retryDelayMs);
  }

  private cancelRetry(): void {
    if (this.retryTimer === undefined) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private async openAndAnnounce(): Promise<void> {
    try {
      await this.open();
    } catch (error) {
      this.handleCallFailure(error, 'open');
      return;
    }
    if (this.connection === undefined || this.announced || this.presentAtr === undefined) return;
    this.announced = true;
    this.emit('insert', this.presentAtr);
  }

  private async beginTransaction(): Promise<void> {
    if (this.inTransaction || this.connection === undefined || this.context === undefined) return;
    try {
      await this.context.beginTransaction(this.connection);
    } catch (error) {
      if (!(error instanceof PcscError) || error.code !== SCARD_W_RESET_CARD) throw error;
      await this.recoverFromReset();
      await this.context.beginTransaction(this.connection);
    }
    this.inTransaction = true;
  }

  private async endTransaction(): Promise<void> {
    this.cancelIdleTimer();
    if (!this.inTransaction || this.connection === undefined || this.context === undefined) return;
    this.inTransaction = false;
    try {
      await this.context.endTransaction(this.connection, SCARD_LEAVE_CARD);
    } catch (error) {
      if (error instanceof PcscError && error.code === SCARD_E_NOT_TRANSACTED) return;
      this.log.debug({ err: describeError(error) }, 'ending the transaction failed');
    }
  }

  private async transmitRetryingAfterReset(command: Uint8Array): Promise<Uint8Array> {
    if (this.connection === undefined || this.context === undefined) return SW_NO_PRECISE_DIAGNOSIS;
    try {
      return await this.context.transmit(this.connection, command);
    } catch (error) {
      if (!(error instanceof PcscError) || error.code !== SCARD_W_RESET_CARD) throw error;
      await this.recoverFromReset();
      return this.context.transmit(this.connection, command);
    }
  }

  /** Reconnects after another process reset the card; the guest's session state on the card is gone. */
  private async recoverFromReset(): Promise<void> {
    if (this.connection === undefined || this.context === undefined) return;
    this.log.warn('another process reset the card; the guest must select its application and log in again');
    const protocol = await this.context.reconnect(this.connection, this.shareMode, SCARD_LEAVE_CARD);
    this.connection = { handle: this.connection.handle, protocol };
    this.inTransaction = false;
  }

  private scheduleIdleEnd(response: Uint8Array): void {
    const sw1 = response.length >= 2 ? response[response.length - 2] : undefined;
    const delay = sw1 === 0x61 ? this.chainIdleMs : this.idleMs;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      void this.enqueue(() => this.endTransaction());
    }, delay);
  }

  private cancelIdleTimer(): void {
    if (this.idleTimer === undefined) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /** Maps a failed PC/SC call to reader events; after a failed transmit the caller returns 6F 00 to the guest. */
  private handleCallFailure(error: unknown, operation: string): void {
    const code = error instanceof PcscError ? error.code : undefined;
    const fields = { operation, err: describeError(error), ...(operation === 'transmit' ? { response: '6f00' } : {}) };
    if (code !== undefined && CARD_GONE_CODES.has(code)) {
      this.log.warn(fields, 'the card was removed during the operation');
      this.handleCardRemove('the card was removed during an operation');
      return;
    }
    if (code !== undefined && READER_GONE_CODES.has(code)) {
      this.log.warn(fields, 'the reader went away during the operation');
      this.handleReaderGone();
      return;
    }
    if (code !== undefined && SERVICE_GONE_CODES.has(code)) {
      this.log.warn(fields, 'lost the connection to pcscd; reopening the card on the next APDU');
      this.dropConnection();
      void this.context?.release().catch(() => undefined);
      this.context = undefined;
      return;
    }
    if (code === SCARD_W_UNRESPONSIVE_CARD || code === SCARD_W_UNPOWERED_CARD) {
      this.log.warn(fields, 'the card does not respond; reopening it on the next APDU');
      this.dropConnection();
      return;
    }
    this.log.error(fields, 'PC/SC call failed');
  }

  private handleCardInsert(atr: Uint8Array): void {
    if (this.closed) return;
    this.presentAtr = atr;
    this.announced = false;
    this.openFailures = 0;
    void this.enqueue(() => this.openAndAnnounce());
  }

  private handleCardRemove(reason: string): void {
    this.cancelIdleTimer();
    this.cancelRetry();
    const wasAnnounced = this.announced;
    this.presentAtr = undefined;
    this.announced = false;
    this.dropConnection();
    if (wasAnnounced) {
      this.log.info({ reason }, 'card gone');
      // Deferred, so a transmit that failed because of the removal resolves (with 6F 00) before 'remove'.
      setImmediate(() => this.emit('remove'));
    }
  }

  private handleReaderGone(): void {
    if (this.closed) return;
    this.handleCardRemove('the reader went away');
    this.closed = true;
    this.detachMonitor();
    void this.context?.release().catch(() => undefined);
    this.context = undefined;
    this.log.info('reader gone');
    setImmediate(() => this.emit('close'));
  }

  /** Forgets the connection without talking to the card, whose handle is no longer valid. */
  private dropConnection(): void {
    const connection = this.connection;
    const context = this.context;
    this.connection = undefined;
    this.inTransaction = false;
    if (connection !== undefined && context !== undefined) {
      void context.disconnect(connection, SCARD_LEAVE_CARD).catch(() => undefined);
    }
  }

  private async closeConnection(): Promise<void> {
    await this.endTransaction();
    const connection = this.connection;
    this.connection = undefined;
    if (connection !== undefined && this.context !== undefined) {
      await this.context.disconnect(connection, SCARD_LEAVE_CARD).catch(() => undefined);
    }
  }

  private detachMonitor(): void {
    this.monitor.off('card-insert', this.onCardInsert);
    this.monitor.off('card-remove', this.onCardRemove);
    this.monitor.off('reader-remove', this.onReaderRemove);
  }
}

function protocolName(protocol: number): string {
  if (protocol === 1) return 'T=0';
  if (protocol === 2) return 'T=1';
  return `0x${protocol.toString(16)}`;
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
