/**
 * The TCP side of the VSCard client: connects to QEMU's ccid-card-passthru
 * chardev, runs one `VscClientSession` per connection and reconnects with
 * exponential backoff whenever the connection fails or ends, so the client
 * can start before QEMU and survives QEMU restarts.
 *
 * Invalid data from the peer (unknown type, oversized length, wrong magic,
 * a connection closed mid-message) is logged and the connection is dropped
 * and retried. Nothing the peer sends makes the client exit.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { logger, type Logger } from '../log/logger.js';
import type { Reader } from '../reader/reader.js';
import { VscClientSession, type SessionTrace } from './client-session.js';
import { VscDecoder } from './decoder.js';
import { VscProtocolError } from './errors.js';

/** Connection state, logged on every change. */
export type ConnectionState = 'connecting' | 'connected' | 'waiting-to-retry' | 'stopped';

export interface RetryPolicy {
  /** Delay before the first retry, in milliseconds. */
  initialDelayMs: number;
  /** Upper bound of the doubling delay, in milliseconds. */
  maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { initialDelayMs: 100, maxDelayMs: 2000 };

/** Time after connecting without an Init from QEMU before a warning is logged, in milliseconds. */
const HANDSHAKE_WARNING_MS = 5000;

/** Time `stop()` waits for the peer to close after the goodbye messages, in milliseconds. */
const CLOSE_TIMEOUT_MS = 2000;

/** Failed attempts between two info-level reminders while QEMU stays unreachable. */
const RETRY_LOG_INTERVAL = 30;

export interface VscClientOptions {
  host: string;
  port: number;
  reader: Reader;
  retry?: RetryPolicy;
  trace?: SessionTrace;
  log?: Logger;
  /**
   * Called with the socket after connecting, every read and every write, e.g. to
   * re-arm TCP_QUICKACK. QEMU 7.2 writes a message's header and payload in
   * two writes with Nagle's algorithm on, so the payload waits for the ACK of
   * the header, which a delayed-ACK receiver sends only after about 40 ms.
   */
  onSocketActivity?: (socket: net.Socket) => void;
}

export interface VscClientEvents {
  state: [state: ConnectionState];
  /** A session finished its handshake and QEMU accepted the reader. */
  ready: [];
}

export class VscClient extends EventEmitter<VscClientEvents> {
  private readonly log: Logger;
  private readonly retry: RetryPolicy;
  private state: ConnectionState = 'stopped';
  private socket: net.Socket | undefined;
  private session: VscClientSession | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private failedAttempts = 0;
  private connectionCount = 0;
  private closed: Promise<void> = Promise.resolve();

  constructor(private readonly options: VscClientOptions) {
    super();
    this.log = options.log ?? logger.child({ component: 'vscard-client' });
    this.retry = options.retry ?? DEFAULT_RETRY_POLICY;
  }

  /** Current connection state. */
  get connectionState(): ConnectionState {
    return this.state;
  }

  /** The session of the current connection, if any. */
  get currentSession(): VscClientSession | undefined {
    return this.session;
  }

  /** Starts connecting; retries until `stop()`. */
  start(): void {
    this.stopping = false;
    this.connect();
  }

  /**
   * Removes the card and the reader from QEMU (CardRemove, ReaderRemove),
   * closes the connection and stops retrying.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.retryTimer !== undefined) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    const socket = this.socket;
    if (socket !== undefined && !socket.destroyed) {
      if (this.state === 'connected') {
        this.session?.shutdown();
        socket.end();
        const timer = setTimeout(() => socket.destroy(), CLOSE_TIMEOUT_MS);
        await this.closed;
        clearTimeout(timer);
      } else {
        socket.destroy();
        await this.closed;
      }
    }
    this.setState('stopped');
  }

  private setState(state: ConnectionState): void {
    if (this.state === state) return;
    this.log.debug({ from: this.state, to: state }, 'connection state changed');
    this.state = state;
    this.emit('state', state);
  }

  private connect(): void {
    const { host, port } = this.options;
    const connection = ++this.connectionCount;
    const log = this.log.child({ connection });
    this.setState('connecting');
    log.debug({ host, port }, 'connecting to QEMU');

    const socket = net.createConnection({ host, port });
    this.socket = socket;
    const decoder = new VscDecoder();
    let session: VscClientSession | undefined;
    let lastError: NodeJS.ErrnoException | undefined;
    let protocolError = false;
    let handshakeTimer: NodeJS.Timeout | undefined;
    let resolveClosed: () => void = () => undefined;
    this.closed = new Promise((resolve) => (resolveClosed = resolve));

    socket.on('connect', () => {
      socket.setNoDelay(true);
      this.options.onSocketActivity?.(socket);
      this.setState('connected');
      log.info({ host, port, attempts: this.failedAttempts + 1 }, 'connected to QEMU');
      session = new VscClientSession({
        reader: this.options.reader,
        send: (bytes) => {
          if (socket.destroyed) return;
          socket.write(bytes);
          // Sending right after receiving puts Linux back into delayed-ACK mode, so re-arm here too.
          this.options.onSocketActivity?.(socket);
        },
        log,
        ...(this.options.trace === undefined ? {} : { trace: this.options.trace }),
      });
      this.session = session;
      handshakeTimer = setTimeout(() => {
        if (session?.currentState === 'handshake') {
          log.warn(
            { host, port, waitedMs: HANDSHAKE_WARNING_MS },
            'connected but QEMU sent no VSCard Init yet; is another client attached to this chardev, or is the port not a ccid-card-passthru socket?',
          );
        }
      }, HANDSHAKE_WARNING_MS);
      session.start();
    });

    socket.on('data', (chunk: Buffer) => {
      if (session === undefined || protocolError) return;
      this.options.onSocketActivity?.(socket);
      decoder.push(chunk);
      try {
        for (let message = decoder.next(); message !== undefined; message = decoder.next()) {
          const before = session.currentState;
          session.receive(message);
          if (before !== 'ready' && session.currentState === 'ready') this.onReady();
        }
      } catch (error) {
        protocolError = true;
        if (error instanceof VscProtocolError) {
          log.warn({ kind: error.kind, error: error.message, host, port }, 'invalid VSCard data from QEMU; dropping the connection');
        } else {
          log.error({ err: error, host, port }, 'handling a VSCard message failed; dropping the connection');
        }
        socket.destroy();
      }
    });

    socket.on('error', (error: NodeJS.ErrnoException) => {
      lastError = error;
    });

    socket.on('close', () => {
      clearTimeout(handshakeTimer);
      session?.dispose();
      if (this.session === session) this.session = undefined;
      if (this.socket === socket) this.socket = undefined;

      if (session !== undefined) {
        if (!protocolError && decoder.bufferedLength > 0) {
          try {
            decoder.end();
          } catch (error) {
            log.warn({ error: (error as Error).message }, 'QEMU closed the connection in the middle of a message');
          }
        }
        const reason = lastError === undefined ? 'closed by peer' : `${lastError.code ?? lastError.message}`;
        if (this.stopping) log.info('disconnected from QEMU');
        else log.warn({ reason }, 'connection to QEMU lost');
      } else {
        this.logConnectFailure(lastError);
      }

      resolveClosed();
      if (!this.stopping) this.scheduleRetry();
    });
  }

  private onReady(): void {
    this.failedAttempts = 0;
    this.emit('ready');
  }

  private logConnectFailure(error: NodeJS.ErrnoException | undefined): void {
    const { host, port } = this.options;
    const reason = error?.code ?? error?.message ?? 'unknown error';
    const attempts = this.failedAttempts + 1;
    if (attempts === 1) {
      this.log.info({ host, port, reason }, 'cannot connect to QEMU yet; retrying until it listens');
    } else if (attempts % RETRY_LOG_INTERVAL === 0) {
      this.log.info({ host, port, reason, attempts }, 'still cannot connect to QEMU; retrying');
    } else {
      this.log.debug({ host, port, reason, attempts }, 'connect attempt failed');
    }
  }

  private scheduleRetry(): void {
    const delay = Math.min(this.retry.initialDelayMs * 2 ** Math.min(this.failedAttempts, 20), this.retry.maxDelayMs);
    this.failedAttempts++;
    this.setState('waiting-to-retry');
    this.log.debug({ delayMs: delay }, 'retrying after a delay');
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.stopping) this.connect();
    }, delay);
  }
}
