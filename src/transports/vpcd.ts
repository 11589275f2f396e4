/**
 * A card for vsmartcard's vpcd, the virtual reader driver loaded into pcscd.
 *
 * vpcd listens on TCP (127.0.0.1:35963 for its first slot) and the card
 * connects to it. To pcscd an open connection means "card present". So this
 * module connects only while the reader has a card and closes the socket when
 * the card is removed. When vpcd is not listening yet or pcscd restarts, it
 * reconnects with capped exponential backoff.
 */
import { EventEmitter } from 'node:events';
import { connect as connectTcp, type Socket } from 'node:net';
import { logger, type Logger } from '../log/logger.js';
import { NoCardError, type Reader } from '../reader/reader.js';
import { writeDirect } from './direct-write.js';
import { armTcpQuickAck } from './tcp-quickack.js';
import {
  VPCD_MAX_PAYLOAD,
  VpcdFrameDecoder,
  VpcdTruncatedFrameError,
  classifyVpcdMessage,
  encodeVpcdFrame,
  type VpcdMessage,
} from './vpcd-codec.js';

/** Address vpcd listens on for its first slot (pcscd's reader.conf CHANNELID 0x8C7B). */
export const VPCD_DEFAULT_HOST = '127.0.0.1';
export const VPCD_DEFAULT_PORT = 35963;

export interface VpcdCardOptions {
  /** Host vpcd listens on; default 127.0.0.1. */
  host?: string;
  /** TCP port of the vpcd slot; default 35963 (slot k listens on 35963 + k). */
  port?: number;
  /** Delay before the first reconnect attempt, in milliseconds; default 250. */
  initialRetryDelayMs?: number;
  /** Upper bound of the reconnect delay, in milliseconds; default 5000. */
  maxRetryDelayMs?: number;
  /** Whether to set TCP_QUICKACK after connecting and after every read; default true. */
  tcpQuickAck?: boolean;
  /** Parent logger; default the process-wide logger. */
  logger?: Logger;
}

/** Events of a vpcd card connection, mainly for tests and status output. */
export interface VpcdCardEvents {
  /** A TCP connection to vpcd was established. */
  connect: [];
  /** The TCP connection to vpcd ended; the argument is the reason. */
  disconnect: [reason: string];
}

/** Status word 6F 00 ("no precise diagnosis"), sent when the reader fails in a way a card cannot express. */
const SW_NO_PRECISE_DIAGNOSIS = Uint8Array.from([0x6f, 0x00]);

/** Size of the reused receive buffer: one maximal frame (2-byte length and 65,535 payload bytes). */
const RECEIVE_BUFFER_BYTES = 2 + VPCD_MAX_PAYLOAD;

/** Connection attempts between two warnings while vpcd stays unreachable. */
const FAILURES_PER_WARNING = 12;

/** Reason this side closed the socket, or undefined when vpcd closed it or the connection failed. */
type LocalCloseReason = 'card removed' | 'stopped' | 'reader closed';

/**
 * Serves one `Reader` to one vpcd slot. Call `start()` once and `stop()` to
 * disconnect for good.
 */
export class VpcdCard extends EventEmitter<VpcdCardEvents> {
  readonly host: string;
  readonly port: number;

  private readonly log: Logger;
  private readonly initialRetryDelayMs: number;
  private readonly maxRetryDelayMs: number;
  private readonly tcpQuickAck: boolean;

  private started = false;
  private stopped = false;
  private socket: Socket | undefined;
  /** Reasons for sockets this side closed, read when their 'close' event arrives. */
  private readonly localCloseReasons = new WeakMap<Socket, LocalCloseReason>();
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelayMs: number;
  private failedAttempts = 0;
  /** Messages are handled strictly in arrival order; this is the tail of that chain. */
  private pending: Promise<void> = Promise.resolve();
  /** Messages received whose handling has not finished yet. */
  private queuedMessages = 0;

  private readonly onInsert = (): void => this.handleInsert();
  private readonly onRemove = (): void => this.handleRemove();
  private readonly onClose = (): void => this.handleReaderClose();

  constructor(
    readonly reader: Reader,
    options: VpcdCardOptions = {},
  ) {
    super();
    this.host = options.host ?? VPCD_DEFAULT_HOST;
    this.port = options.port ?? VPCD_DEFAULT_PORT;
    this.initialRetryDelayMs = options.initialRetryDelayMs ?? 250;
    this.maxRetryDelayMs = Math.max(options.maxRetryDelayMs ?? 5000, this.initialRetryDelayMs);
    this.retryDelayMs = this.initialRetryDelayMs;
    this.tcpQuickAck = options.tcpQuickAck ?? true;
    this.log = (options.logger ?? logger).child({ component: 'vpcd', vpcd: `${this.host}:${this.port}` });
  }

  /** Whether a TCP connection to vpcd is open at the moment. */
  get connected(): boolean {
    return this.socket !== undefined && !this.socket.connecting && !this.socket.destroyed;
  }

  /** Starts serving: connects now if the reader has a card, otherwise on its next 'insert'. */
  start(): void {
    if (this.started) throw new Error('VpcdCard.start() was called twice; create a new VpcdCard instead');
    this.started = true;

    this.reader.on('insert', this.onInsert);
    this.reader.on('remove', this.onRemove);
    this.reader.on('close', this.onClose);
    this.log.info({ reader: this.reader.name }, 'serving card to vpcd');
    this.connect();
  }

  /** Disconnects from vpcd, stops reconnecting and waits for the socket to close. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;

    this.reader.off('insert', this.onInsert);
    this.reader.off('remove', this.onRemove);
    this.reader.off('close', this.onClose);
    this.cancelRetry();

    const socket = this.socket;
    if (socket !== undefined) {
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      this.closeSocket('stopped');
      await closed;
    }
    await this.pending;
    this.log.info('stopped serving card to vpcd');
  }

  private connect(): void {
    if (this.stopped || this.socket !== undefined) return;
    if (this.reader.atr() === undefined) {
      this.log.info({ reader: this.reader.name }, 'no card in the reader; connecting to vpcd when one is inserted');
      return;
    }

    const decoder = new VpcdFrameDecoder();
    // Reads land in one reused buffer (`onread`), which skips the stream
    // machinery and an allocation per read; the decoder copies what it keeps.
    const socket: Socket = connectTcp({
      host: this.host,
      port: this.port,
      onread: {
        buffer: Buffer.allocUnsafe(RECEIVE_BUFFER_BYTES),
        callback: (bytesRead: number, buffer: Uint8Array): boolean => {
          this.handleReceived(socket, decoder, buffer.subarray(0, bytesRead));
          return true;
        },
      },
    });
    this.socket = socket;
    socket.setNoDelay(true);
    let wasConnected = false;
    let socketError: Error | undefined;

    socket.once('connect', () => {
      wasConnected = true;
      this.failedAttempts = 0;
      if (this.tcpQuickAck) armTcpQuickAck(socket);
      this.log.info({ reader: this.reader.name }, 'connected to vpcd');
      this.emit('connect');
    });

    socket.on('error', (error) => {
      socketError = error;
    });

    socket.once('close', () => {
      if (this.socket === socket) this.socket = undefined;
      const localReason = this.localCloseReasons.get(socket);

      if (!wasConnected) {
        this.logConnectFailure(socketError);
        this.scheduleReconnect();
        return;
      }

      try {
        decoder.end();
      } catch (error) {
        if (!(error instanceof VpcdTruncatedFrameError)) throw error;
        this.log.warn(
          { bufferedBytes: error.bufferedBytes },
          'vpcd connection closed in the middle of a frame; the partial message is dropped',
        );
      }
      const reason = localReason ?? (socketError ? `connection failed: ${socketError.message}` : 'closed by vpcd');
      this.log.info({ reason }, 'disconnected from vpcd');
      this.emit('disconnect', reason);

      if (localReason === undefined) this.scheduleReconnect();
    });
  }

  private handleReceived(socket: Socket, decoder: VpcdFrameDecoder, chunk: Uint8Array): void {
    // A connection that carries traffic is healthy: the next failure starts the backoff anew.
    this.retryDelayMs = this.initialRetryDelayMs;
    const payloads = decoder.push(chunk);
    // vpcd sends the rest of a frame only after this side acknowledges the
    // first part (see send()). The read has normally sent that ACK already,
    // because send() re-armed TCP_QUICKACK. Arming again forces the ACK out
    // in case a response left through Node's queue after that re-arm.
    if (this.tcpQuickAck && decoder.bufferedBytes > 0) armTcpQuickAck(socket);
    for (const payload of payloads) {
      const message = classifyVpcdMessage(payload);
      if (this.queuedMessages === 0) {
        // Nothing in flight: handle the message now instead of after a promise hop.
        this.track(this.handleMessage(message, socket));
      } else {
        this.track(this.pending.then(() => this.handleMessage(message, socket)));
      }
    }
  }

  /** Makes `handling` the tail of the message chain and counts it until it settles. */
  private track(handling: Promise<void>): void {
    this.queuedMessages += 1;
    this.pending = handling;
    void handling.then(() => {
      this.queuedMessages -= 1;
    });
  }

  private logConnectFailure(error: Error | undefined): void {
    this.failedAttempts += 1;
    const errno = error !== undefined && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
    const code = errno ?? error?.message ?? 'closed';
    const fields = { error: code, attempt: this.failedAttempts, retryInMs: this.retryDelayMs };

    if (this.failedAttempts === 1) {
      this.log.warn(fields, 'connecting to vpcd failed (is pcscd with vpcd running?); retrying');
    } else if (this.failedAttempts % FAILURES_PER_WARNING === 0) {
      this.log.warn(fields, 'still unable to connect to vpcd; retrying');
    } else {
      this.log.debug(fields, 'connecting to vpcd failed; retrying');
    }
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.retryTimer !== undefined) return;
    if (this.reader.atr() === undefined) return;

    const delay = this.retryDelayMs;
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, this.maxRetryDelayMs);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, delay);
  }

  private cancelRetry(): void {
    if (this.retryTimer === undefined) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private closeSocket(reason: LocalCloseReason): void {
    const socket = this.socket;
    if (socket === undefined) return;
    this.localCloseReasons.set(socket, reason);
    // Forget the socket now, so a card inserted before its 'close' event connects anew.
    this.socket = undefined;
    // vpcd reads a closed connection as "card removed"; there is nothing to flush first.
    socket.destroy();
  }

  private handleInsert(): void {
    if (this.stopped || this.socket !== undefined) return;
    this.log.info({ reader: this.reader.name }, 'card inserted; connecting to vpcd');
    this.cancelRetry();
    this.retryDelayMs = this.initialRetryDelayMs;
    this.connect();
  }

  private handleRemove(): void {
    this.cancelRetry();
    if (this.socket === undefined) return;
    this.log.info({ reader: this.reader.name }, 'card removed; disconnecting from vpcd');
    this.closeSocket('card removed');
  }

  private handleReaderClose(): void {
    this.log.warn({ reader: this.reader.name }, 'the reader went away; no longer serving vpcd');
    this.cancelRetry();
    this.closeSocket('reader closed');
    void this.stop();
  }

  /** Handles one message from vpcd; never rejects, so the message chain keeps going. */
  private handleMessage(message: VpcdMessage, socket: Socket): Promise<void> {
    if (socket !== this.socket) return Promise.resolve();
    const onFailure = (error: unknown): void => this.handleFailure(error, message, socket);
    if (message.kind !== 'apdu') return this.dispatch(message, socket).catch(onFailure);

    // APDUs skip the async functions of dispatch(), because each of them
    // costs a promise and a microtask on the path of every round trip.
    let response: Promise<Uint8Array>;
    try {
      response = this.reader.transmit(message.apdu);
    } catch (error) {
      onFailure(error);
      return Promise.resolve();
    }
    const onResponse = (bytes: Uint8Array): void => {
      try {
        this.sendResponse(message.apdu, bytes, socket);
      } catch (error) {
        onFailure(error);
      }
    };
    return response.then(onResponse, onFailure);
  }

  private handleFailure(error: unknown, message: VpcdMessage, socket: Socket): void {
    if (error instanceof NoCardError) {
      this.log.info({ request: message.kind }, 'the reader has no card; disconnecting from vpcd');
      if (socket === this.socket) this.closeSocket('card removed');
      return;
    }
    this.log.error({ err: error, request: message.kind }, 'the reader failed to handle a vpcd request');
    if (message.kind === 'apdu') this.send(socket, SW_NO_PRECISE_DIAGNOSIS);
  }

  private async dispatch(message: Exclude<VpcdMessage, { kind: 'apdu' }>, socket: Socket): Promise<void> {
    switch (message.kind) {
      case 'power-off':
        this.log.debug('power off');
        await this.reader.powerOff();
        return;
      case 'power-on':
        this.log.debug('power on');
        await this.reader.reset('cold');
        return;
      case 'reset':
        this.log.debug('reset');
        await this.reader.reset('warm');
        return;
      case 'get-atr': {
        const atr = this.reader.atr();
        if (atr === undefined) throw new NoCardError(this.reader.name);
        this.send(socket, atr);
        return;
      }
      case 'unknown-control':
        this.log.warn({ code: message.code }, 'ignoring a vpcd control message with an unknown code');
        return;
      case 'empty':
        this.log.warn('ignoring an empty vpcd message');
        return;
    }
  }

  private sendResponse(apdu: Uint8Array, response: Uint8Array, socket: Socket): void {
    if (this.log.isLevelEnabled('debug')) {
      // Only the header and the status word: the data field may be a PIN.
      this.log.debug(
        { header: Buffer.from(apdu.subarray(0, 4)).toString('hex'), bodyBytes: apdu.length - 4, sw: swHex(response) },
        'APDU',
      );
    }

    if (response.length > VPCD_MAX_PAYLOAD) {
      this.log.error(
        { responseBytes: response.length },
        `response APDU is longer than vpcd's maximum of ${VPCD_MAX_PAYLOAD} bytes; sending 6F00 instead`,
      );
      this.send(socket, SW_NO_PRECISE_DIAGNOSIS);
      return;
    }
    this.send(socket, response);
  }

  private send(socket: Socket, payload: Uint8Array): void {
    if (socket !== this.socket || socket.destroyed) return;
    writeDirect(socket, encodeVpcdFrame(payload));

    // Linux leaves quick-ACK mode after it sends data, and vpcd writes the
    // next command's length prefix and payload separately with Nagle on, so
    // re-arm here too or that command waits for a delayed ACK (about 40 ms).
    if (this.tcpQuickAck) armTcpQuickAck(socket);
  }
}

function swHex(response: Uint8Array): string {
  return Buffer.from(response.subarray(Math.max(0, response.length - 2))).toString('hex');
}
