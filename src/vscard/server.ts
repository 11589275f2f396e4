/**
 * The VSCard server of `virtcard host`: it accepts VSCard clients (virtcard
 * client, vscclient) the way QEMU's ccid-card-passthru does, one reader per
 * connection and many connections at once, and hands each client's reader
 * to the caller as a `Reader`.
 *
 * VSCard has no authentication: anyone who reaches the port can offer a
 * card. The server listens on 127.0.0.1 unless the caller sets another host.
 *
 * A client that sends requests faster than it reads the replies is
 * back-pressured. Once more than MAX_QUEUED_REPLY_BYTES of replies wait in
 * its socket, the server stops reading from that client until the replies
 * drain. TCP then slows the sender, and the server's memory stays bounded.
 * Other connections are read as before.
 */
import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { logger, type Logger } from '../log/logger.js';
import type { RemoteCardReader } from './server-reader.js';
import { VscServerSession } from './server-session.js';

/**
 * Reply bytes queued for one client above which the server stops reading
 * from it. Node reads at most 64 KiB at a time, and a 12-byte request gets
 * a 16-byte VSC_Error at most, so one read adds at most about 86 KiB of
 * replies and a connection keeps about 150 KiB of replies at most.
 */
export const MAX_QUEUED_REPLY_BYTES = 64 * 1024;

export interface VscServerOptions {
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  /**
   * Returns whether to take a client's new reader (on VSC_ReaderAdd). When it
   * returns false the client gets VSC_CANNOT_ADD_MORE_READERS. Default: take every reader.
   */
  acceptReader?: (reader: RemoteCardReader) => boolean;
  logger?: Logger;
}

export interface VscServerEvents {
  /** A client's reader was accepted. */
  reader: [reader: RemoteCardReader];
  /** A client connected. */
  connect: [peer: string];
  /** A client's connection ended. */
  disconnect: [peer: string];
}

export class VscServer extends EventEmitter<VscServerEvents> {
  private readonly log: Logger;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly options: VscServerOptions) {
    super();
    this.log = (options.logger ?? logger).child({ component: 'vscard-server' });
    this.server = createServer((socket) => this.accept(socket));
  }

  /** Number of connected clients. */
  get connectionCount(): number {
    return this.sockets.size;
  }

  /** Bytes written to clients and still queued in the server's sockets, over all connections. */
  get queuedReplyBytes(): number {
    let total = 0;
    for (const socket of this.sockets) total += socket.writableLength;
    return total;
  }

  /** Starts listening and returns the bound address. */
  async listen(): Promise<AddressInfo> {
    const host = this.options.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const address = this.server.address() as AddressInfo;
    this.log.info({ address: address.address, port: address.port }, 'VSCard server listening');
    return address;
  }

  /** Stops listening and disconnects every client. */
  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.log.info('VSCard server stopped');
  }

  private accept(socket: Socket): void {
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    const log = this.log.child({ peer });
    this.sockets.add(socket);
    socket.setNoDelay(true);
    log.info('VSCard client connected');
    this.emit('connect', peer);

    const session = new VscServerSession({
      peer,
      log,
      send: (bytes) => {
        if (!socket.destroyed) socket.write(bytes);
      },
      close: () => socket.destroy(),
      acceptReader: (reader) => {
        const accepted = this.options.acceptReader?.(reader) ?? true;
        if (accepted) this.emit('reader', reader);
        return accepted;
      },
    });
    let pauses = 0;
    socket.on('data', (chunk: Buffer) => {
      session.receive(chunk);
      if (socket.writableLength <= MAX_QUEUED_REPLY_BYTES || socket.isPaused() || socket.destroyed) return;
      // The client does not read its replies: stop reading its requests until the replies drain.
      socket.pause();
      pauses++;
      if (pauses === 1 || pauses % 1000 === 0) {
        log.warn({ queuedBytes: socket.writableLength, pauses }, 'VSCard client does not read its replies; reading paused until they drain');
      }
      socket.once('drain', () => socket.resume());
    });
    socket.on('error', (error) => log.warn({ err: error.message }, 'VSCard client connection failed'));
    socket.on('close', () => {
      session.end();
      this.sockets.delete(socket);
      log.info('VSCard client disconnected');
      this.emit('disconnect', peer);
    });
  }
}
