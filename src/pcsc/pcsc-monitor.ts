/**
 * Watches the host's PC/SC readers: readers appearing and disappearing, and
 * cards going in and out.
 *
 * One loop calls SCardGetStatusChange on all known readers plus the
 * `\\?PnP?\Notification` pseudo reader, so it wakes up on a card change and
 * on a reader change alike, and lists the readers again after the latter.
 * When pcscd is not running or stops, the monitor reports every reader as
 * removed and keeps trying to reconnect.
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { logger, type Logger } from '../log/logger.js';
import {
  INFINITE,
  PNP_NOTIFICATION,
  PcscContext,
  PcscError,
  SCARD_E_CANCELLED,
  SCARD_E_TIMEOUT,
  SCARD_E_UNKNOWN_READER,
  SCARD_STATE_CHANGED,
  SCARD_STATE_UNAWARE,
} from './pcsc-lite.js';
import { isCardPresent, isReaderGone, type ReaderSnapshot } from './reader-state.js';

export interface PcscMonitorEvents {
  /** A reader appeared (or was there when the monitor started). */
  'reader-add': [name: string];
  /** A reader disappeared; a 'card-remove' for its card comes first. */
  'reader-remove': [name: string];
  /** A card was inserted into the reader, or was in it when the reader appeared. */
  'card-insert': [name: string, atr: Uint8Array];
  /** The card was taken out of the reader. */
  'card-remove': [name: string];
}

export interface PcscMonitorOptions {
  /** Delay between attempts to reach pcscd while it is not running, in milliseconds; default 2000. */
  retryDelayMs?: number;
  /** Parent logger; default the process-wide logger. */
  logger?: Logger;
}

interface TrackedReader {
  /** dwEventState of the last SCardGetStatusChange, passed back as dwCurrentState. */
  state: number;
  atr: Uint8Array;
}

/** Attempts to reach pcscd between two warnings while it stays unreachable. */
const FAILURES_PER_WARNING = 30;

export class PcscMonitor extends EventEmitter<PcscMonitorEvents> {
  private readonly log: Logger;
  private readonly retryDelayMs: number;
  private readonly readers = new Map<string, TrackedReader>();
  private context: PcscContext | undefined;
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly firstScan: Promise<void>;
  private resolveFirstScan: () => void = () => undefined;
  /** Reader count pcsc-lite reported through the PnP pseudo reader; pcsc-lite keeps it in the high 16 bits. */
  private pnpState = SCARD_STATE_UNAWARE;

  constructor(options: PcscMonitorOptions = {}) {
    super();
    this.retryDelayMs = options.retryDelayMs ?? 2000;
    this.log = (options.logger ?? logger).child({ component: 'pcsc-monitor' });
    this.firstScan = new Promise((resolve) => (this.resolveFirstScan = resolve));
  }

  /** Starts watching; returns at once. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Resolves once the readers present at start have been reported, or the first attempt to reach pcscd failed. */
  ready(): Promise<void> {
    return this.firstScan;
  }

  /** Stops watching and waits for the loop to end; reports nothing more. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.context?.cancel();
    await this.loop;
  }

  /** Returns the readers known at the moment with their card state. */
  snapshot(): ReaderSnapshot[] {
    return [...this.readers].map(([name, reader]) => ({ name, flags: reader.state & 0xffff, atr: reader.atr }));
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (this.running) {
      try {
        this.context = await PcscContext.establish();
        if (failures > 0) this.log.info({ attempts: failures + 1 }, 'connected to pcscd');
        failures = 0;
        await this.watch(this.context);
      } catch (error) {
        if (!this.running) break;
        failures += 1;
        this.forgetAllReaders();
        this.resolveFirstScan();
        const fields = { err: describeError(error), attempt: failures, retryInMs: this.retryDelayMs };
        if (failures === 1) this.log.warn(fields, 'PC/SC is unavailable (is pcscd running?); retrying');
        else if (failures % FAILURES_PER_WARNING === 0) this.log.warn(fields, 'PC/SC is still unavailable; retrying');
        else this.log.debug(fields, 'PC/SC is unavailable; retrying');
      } finally {
        const context = this.context;
        this.context = undefined;
        await context?.release().catch(() => undefined);
      }
      if (this.running) await sleep(this.retryDelayMs);
    }
    this.forgetAllReaders();
  }

  /** Runs the SCardGetStatusChange loop on one context until it fails or the monitor stops. */
  private async watch(context: PcscContext): Promise<void> {
    await this.rescanReaders(context);
    this.resolveFirstScan();

    while (this.running) {
      const names = [...this.readers.keys()];
      const currentStates = names.map((name) => this.readers.get(name)?.state ?? SCARD_STATE_UNAWARE);
      let statuses;
      try {
        statuses = await context.getStatusChange([...names, PNP_NOTIFICATION], [...currentStates, this.pnpState], INFINITE);
      } catch (error) {
        if (error instanceof PcscError && error.code === SCARD_E_CANCELLED && !this.running) return;
        if (error instanceof PcscError && error.code === SCARD_E_TIMEOUT) continue;
        if (error instanceof PcscError && error.code === SCARD_E_UNKNOWN_READER) {
          await this.rescanReaders(context);
          continue;
        }
        throw error;
      }

      let readersChanged = false;
      for (const status of statuses) {
        if (status.reader === PNP_NOTIFICATION) {
          if ((status.eventState & SCARD_STATE_CHANGED) !== 0) readersChanged = true;
          this.pnpState = status.eventState & ~SCARD_STATE_CHANGED;
          continue;
        }
        if ((status.eventState & SCARD_STATE_CHANGED) === 0) continue;
        if (isReaderGone(status.eventState)) {
          readersChanged = true;
          continue;
        }
        this.updateReader(status.reader, status.eventState & ~SCARD_STATE_CHANGED, status.atr);
      }
      if (readersChanged) await this.rescanReaders(context);
    }
  }

  private async rescanReaders(context: PcscContext): Promise<void> {
    const names = await context.listReaders();
    for (const name of [...this.readers.keys()]) {
      if (!names.includes(name)) this.forgetReader(name);
    }

    const added = names.filter((name) => !this.readers.has(name));
    if (added.length === 0) return;
    const statuses = await context.getStatusChange(
      added,
      added.map(() => SCARD_STATE_UNAWARE),
      0,
    );
    for (const status of statuses) {
      this.log.info({ reader: status.reader }, 'reader added');
      this.readers.set(status.reader, { state: SCARD_STATE_UNAWARE, atr: new Uint8Array(0) });
      this.emit('reader-add', status.reader);
      this.updateReader(status.reader, status.eventState & ~SCARD_STATE_CHANGED, status.atr);
    }
  }

  private updateReader(name: string, state: number, atr: Uint8Array): void {
    const reader = this.readers.get(name);
    if (reader === undefined) return;

    const wasPresent = isCardPresent(reader.state);
    const isPresent = isCardPresent(state);
    // pcsc-lite counts card insertions and removals in the high 16 bits, so a
    // card pulled and put back between two calls still shows up as a change.
    const cardSwapped =
      isPresent && wasPresent && (Buffer.compare(reader.atr, atr) !== 0 || state >>> 16 !== reader.state >>> 16);
    reader.state = state;

    if (wasPresent && (!isPresent || cardSwapped)) {
      reader.atr = new Uint8Array(0);
      this.log.info({ reader: name }, 'card removed');
      this.emit('card-remove', name);
    }
    if (isPresent && (!wasPresent || cardSwapped)) {
      reader.atr = atr;
      this.log.info({ reader: name, atr: Buffer.from(atr).toString('hex') }, 'card inserted');
      this.emit('card-insert', name, atr);
    }
  }

  private forgetReader(name: string): void {
    const reader = this.readers.get(name);
    if (reader === undefined) return;
    if (isCardPresent(reader.state)) {
      this.log.info({ reader: name }, 'card removed');
      this.emit('card-remove', name);
    }
    this.readers.delete(name);
    this.log.info({ reader: name }, 'reader removed');
    this.emit('reader-remove', name);
  }

  private forgetAllReaders(): void {
    this.pnpState = SCARD_STATE_UNAWARE;
    for (const name of [...this.readers.keys()]) this.forgetReader(name);
  }
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
