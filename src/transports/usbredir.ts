/**
 * usbredir export: serves a CCID device model to QEMU's usb-redir device.
 *
 * virtcard listens on TCP and QEMU connects as the usb-guest:
 *
 *     -chardev socket,id=r,host=127.0.0.1,port=PORT -device usb-redir,chardev=r
 *
 * One QEMU connection at a time drives the device; a second connection
 * is closed at once. When QEMU disconnects, the device keeps its reader and
 * card, and the next connection enumerates it afresh.
 */
import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { CcidDevice } from '../ccid/device.js';
import { logger, type Logger } from '../log/logger.js';
import { UsbredirSession } from './usbredir-session.js';

export interface UsbredirExportOptions {
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  logger?: Logger;
}

export interface UsbredirExportEvents {
  /** QEMU connected and the hello exchange finished. */
  connect: [];
  /** The QEMU connection ended; the argument is the reason. */
  disconnect: [reason: string];
}

export class UsbredirExport extends EventEmitter<UsbredirExportEvents> {
  private readonly log: Logger;
  private readonly server: Server;
  private session: UsbredirSession | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly device: CcidDevice,
    private readonly options: UsbredirExportOptions,
  ) {
    super();
    this.log = (options.logger ?? logger).child({ component: 'usbredir' });
    this.server = createServer((socket) => this.accept(socket));
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
    this.log.info({ address: address.address, port: address.port }, 'usbredir export listening');
    return address;
  }

  /**
   * Stops listening, unplugs the device from QEMU with device_disconnect and
   * closes the connection; a connection still open after 1 s is destroyed.
   */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.session?.disconnect();
    const timer = setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, 1000);
    await closed;
    clearTimeout(timer);
    this.log.info('usbredir export stopped');
  }

  private accept(socket: Socket): void {
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    if (this.session !== undefined) {
      this.log.warn({ peer }, 'usbredir connection rejected: the device is already in use by another connection');
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    this.log.info({ peer }, 'usbredir connection accepted');
    const session = new UsbredirSession(socket, this.device, this.log.child({ peer }));
    this.session = session;
    session.once('ready', () => this.emit('connect'));
    session.once('end', (reason: string) => {
      this.sockets.delete(socket);
      if (this.session === session) this.session = undefined;
      this.log.info({ peer, reason }, 'usbredir connection closed');
      this.emit('disconnect', reason);
    });
  }
}
