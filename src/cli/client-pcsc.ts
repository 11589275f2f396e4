/**
 * `virtcard client --pcsc`: relays the host's physical PC/SC cards to QEMU's
 * ccid-card-passthru, as vscclient does with `-e use_hw=yes` (or
 * `passthru`) when libcacard is built with PC/SC support.
 *
 * QEMU's passthru device carries one reader, so each relayed reader gets its
 * own VSCard connection: the n-th reader slot connects to PORT + n, or to
 * PORT itself with `singlePort` (for `virtcard host`). With
 * reader names given, slot n relays the first reader whose name starts with
 * the n-th name. Without names, every reader the host has is relayed, and a
 * reader that appears takes the lowest free slot. A reader that disappears
 * is announced with VSC_ReaderRemove and its connection closed; when it comes
 * back, a new connection announces it with VSC_ReaderAdd.
 */
import { Command, InvalidArgumentError } from 'commander';
import { logger, setLogLevel, type Logger } from '../log/logger.js';
import { PcscMonitor } from '../pcsc/pcsc-monitor.js';
import { PcscReader, type PcscReaderOptions } from '../pcsc/pcsc-reader.js';
import { VscClient, type RetryPolicy } from '../vscard/client-connection.js';
import { MESSAGE_TRACE_LEVEL, type SessionTrace } from '../vscard/client-session.js';
import { parseEmulatorOptions, type EmulatorOptions } from './libcacard-options.js';

export interface PcscClientOptions {
  host: string;
  /** TCP port of the first reader slot; slot n uses port + n unless `singlePort` is set. */
  port: number;
  /** Connect every slot to `port`, for a server that accepts several VSCard clients on one port (`virtcard host`). */
  singlePort?: boolean;
  /** Reader names or name prefixes, one per slot; empty to relay every reader. */
  readers: readonly string[];
  /** Options of every relayed reader (transaction idle times, exclusive mode). */
  reader?: Omit<PcscReaderOptions, 'logger'>;
  /** Reconnect policy of the VSCard connections; default the VSCard client's. */
  retry?: RetryPolicy;
  /** APDU and message trace (`-d`) of each reader's connection. */
  trace?: (readerName: string) => SessionTrace;
  logger?: Logger;
}

interface Slot {
  readonly index: number;
  readonly pattern: string | undefined;
  relay: { reader: PcscReader; client: VscClient } | undefined;
}

/**
 * Returns whether `-e` options ask for the host's hardware cards: use_hw=yes or
 * use_hw=removable (also set by `nssemul` and `passthru`) and no soft= card.
 * libcacard reaches hardware through NSS for hw_type=CAC and through PC/SC
 * for hw_type=PASSTHRU; virtcard relays it through PC/SC in both cases.
 */
export function emulatorOptionsRequestPcsc(options: EmulatorOptions): boolean {
  return options.useHardware !== undefined && options.useHardware !== 'no' && options.softCards.length === 0;
}

/** Relays PC/SC readers to VSCard connections until `stop()`. */
export class PcscClient {
  private readonly log: Logger;
  private readonly monitor: PcscMonitor;
  private readonly slots: Slot[];
  private readonly matchEveryReader: boolean;
  private stopped = false;

  private readonly onReaderAdd = (name: string): void => this.attach(name);

  constructor(private readonly options: PcscClientOptions) {
    this.log = (options.logger ?? logger).child({ component: 'pcsc-client' });
    this.monitor = new PcscMonitor({ logger: options.logger });
    this.matchEveryReader = options.readers.length === 0;
    this.slots = options.readers.map((pattern, index) => ({ index, pattern, relay: undefined }));
  }

  /** Starts watching the readers; resolves once the readers present at start are relayed. */
  async start(): Promise<void> {
    this.monitor.on('reader-add', this.onReaderAdd);
    this.monitor.start();
    await this.monitor.ready();
    if (this.monitor.snapshot().length === 0) {
      this.log.warn('no PC/SC reader found yet; relaying readers as they appear');
    }
  }

  /** Announces the removal of every reader to QEMU, closes the connections and stops watching. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.monitor.off('reader-add', this.onReaderAdd);
    await Promise.all(this.slots.map((slot) => this.release(slot)));
    await this.monitor.stop();
  }

  /** Returns the reader name relayed in each slot (slot n connects to port + n), for status output and tests. */
  relayedReaders(): Map<number, string> {
    const relayed = new Map<number, string>();
    for (const slot of this.slots) {
      if (slot.relay !== undefined) relayed.set(slot.index, slot.relay.reader.name);
    }
    return relayed;
  }

  private portOf(slot: Slot): number {
    return this.options.singlePort ? this.options.port : this.options.port + slot.index;
  }

  private attach(name: string): void {
    if (this.stopped) return;
    if (this.slots.some((slot) => slot.relay?.reader.name === name)) return;

    const slot = this.findSlot(name);
    if (slot === undefined) {
      this.log.info({ reader: name }, 'reader does not match any requested reader name; not relaying it');
      return;
    }
    const port = this.portOf(slot);
    if (port > 65535) {
      this.log.error({ reader: name, port }, 'no TCP port left for this reader; relay fewer readers or use a lower port');
      return;
    }

    const reader = new PcscReader(name, this.monitor, { ...this.options.reader, logger: this.options.logger });
    const client = new VscClient({
      host: this.options.host,
      port,
      reader,
      retry: this.options.retry,
      trace: this.options.trace?.(name),
      log: (this.options.logger ?? logger).child({ component: 'vscard-client', port, reader: name }),
    });
    slot.relay = { reader, client };
    reader.once('close', () => {
      // The session has sent VSC_ReaderRemove by now; free the slot for a reader that appears later.
      if (slot.relay?.reader === reader) void this.release(slot);
    });
    this.log.info({ reader: name, host: this.options.host, port }, 'relaying reader to QEMU');
    client.start();
  }

  private findSlot(name: string): Slot | undefined {
    const matching = this.slots.find(
      (slot) => slot.relay === undefined && slot.pattern !== undefined && name.startsWith(slot.pattern),
    );
    if (matching !== undefined || !this.matchEveryReader) return matching;

    const free = this.slots.find((slot) => slot.relay === undefined);
    if (free !== undefined) return free;
    const added: Slot = { index: this.slots.length, pattern: undefined, relay: undefined };
    this.slots.push(added);
    return added;
  }

  private async release(slot: Slot): Promise<void> {
    const relay = slot.relay;
    if (relay === undefined) return;
    slot.relay = undefined;
    await relay.client.stop();
    await relay.reader.close();
  }
}

/** The `virtcard client` options this module adds and reads. */
export interface PcscCommandOptions {
  /** `--pcsc [READER...]`: true without names, the names or prefixes otherwise. */
  pcsc?: boolean | string[];
  pcscExclusive?: boolean;
  pcscSinglePort?: boolean;
  pcscIdle?: number;
  /** vscclient's `-p`: relay the first reader only. */
  p?: boolean;
  /** Trace level (`-d`): 1 prints every APDU and status word, 11 also every VSCard message. */
  d?: number;
  /** Same as `-d 1`. */
  trace?: boolean;
  e?: string;
  c?: string[];
}

function parseMilliseconds(value: string): number {
  const milliseconds = Number(value);
  if (!/^\d+$/.test(value) || milliseconds < 1 || milliseconds > 600_000) {
    throw new InvalidArgumentError(`invalid time "${value}": use a whole number of milliseconds from 1 to 600000.`);
  }
  return milliseconds;
}

/** Adds `--pcsc [READER...]`, `--pcsc-single-port`, `--pcsc-exclusive` and `--pcsc-idle` to the client command. */
export function addPcscOptions(command: Command): Command {
  return command
    .option(
      '--pcsc [reader...]',
      "relay the host's physical PC/SC cards instead of an emulated card: every reader, or those whose names start with READER; reader n connects to PORT + n (put -- before HOST PORT)",
    )
    .option('--pcsc-single-port', 'connect every relayed reader to PORT, for virtcard host, which accepts several VSCard clients on one port')
    .option('--pcsc-exclusive', 'open relayed cards with SCARD_SHARE_EXCLUSIVE, so host software cannot use them while virtcard runs')
    .option(
      '--pcsc-idle <ms>',
      "idle time after the guest's last APDU before host software may use the card again, in milliseconds (default 500)",
      parseMilliseconds,
    );
}

/** Returns whether the options select the PC/SC relay: `--pcsc`, `-p`, or `-e` asking for hardware cards without `-c`. */
export function wantsPcscRelay(options: PcscCommandOptions): boolean {
  if (options.pcsc !== undefined && options.pcsc !== false) return true;
  if (options.p) return true;
  if (options.e === undefined || (options.c?.length ?? 0) > 0) return false;
  try {
    return emulatorOptionsRequestPcsc(parseEmulatorOptions(options.e));
  } catch {
    // An invalid -e string is reported by the emulated-card path with its full message.
    return false;
  }
}

/** Relays the host's PC/SC readers to QEMU until `stopRequested` resolves. */
export async function runPcscRelay(
  host: string,
  port: number,
  options: PcscCommandOptions,
  stopRequested: Promise<string>,
): Promise<void> {
  const log = logger.child({ component: 'client' });
  // PC/SC calls that wait (the monitor's SCardGetStatusChange, SCardBeginTransaction while host
  // software holds the card) each occupy a libuv pool thread, 4 by default. libuv reads this
  // variable when the pool starts, so it only takes effect if nothing used the pool before.
  process.env['UV_THREADPOOL_SIZE'] ??= '16';
  let readers: string[] = [];
  if (Array.isArray(options.pcsc)) {
    readers = options.pcsc;
  } else if (options.p && options.pcsc === undefined) {
    // The empty prefix matches any name, so -p alone relays the first reader that appears.
    readers = [''];
  }
  const traceLevel = options.d ?? (options.trace ? 1 : 0);
  if (traceLevel >= MESSAGE_TRACE_LEVEL) setLogLevel('debug');
  // Each line starts with the reader name, because several readers may be relayed at once.
  const trace = (readerName: string): SessionTrace => ({
    level: () => traceLevel,
    write: (line) => process.stdout.write(`${readerName}: ${line}\n`),
  });

  const client = new PcscClient({
    host,
    port,
    readers,
    singlePort: options.pcscSinglePort,
    trace,
    reader: { exclusive: options.pcscExclusive, idleMs: options.pcscIdle },
  });
  log.info({ readers: readers.length > 0 ? readers : 'all', host, firstPort: port }, 'relaying PC/SC readers to QEMU');
  await client.start();
  const reason = await stopRequested;
  log.info({ reason }, 'stopping: removing the cards and readers from QEMU');
  await client.stop();
}
