/**
 * USB/IP export: serves a CCID device model to a Linux USB/IP client
 * (vhci-hcd, `usbip attach`). A client lists the device with
 * OP_REQ_DEVLIST, imports it with OP_REQ_IMPORT, and then sends URBs on the
 * same connection; one imported connection drives the device at a time.
 *
 * Control URBs go to the model's control handler (vhci-hcd handles
 * SET_ADDRESS itself); bulk OUT URBs are answered at once; bulk and
 * interrupt IN URBs wait until the model has data; CMD_UNLINK removes a
 * waiting URB and answers -ECONNRESET, or 0 when the URB already completed.
 */
import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { ENDPOINT_BULK_IN, ENDPOINT_BULK_OUT, ENDPOINT_INTERRUPT_IN } from '../ccid/constants.js';
import type { CcidDevice } from '../ccid/device.js';
import { logger, type Logger } from '../log/logger.js';
import {
  BUSID_LENGTH,
  DIRECTION_IN,
  ERRNO_ECONNRESET,
  ERRNO_EPIPE,
  OP_HEADER_LENGTH,
  OP_REP_DEVLIST,
  OP_REP_IMPORT,
  OP_REQ_DEVLIST,
  OP_REQ_IMPORT,
  SPEED_FULL,
  URB_HEADER_LENGTH,
  USBIP_CMD_SUBMIT,
  USBIP_CMD_UNLINK,
  decodeUrbCommand,
  encodeDeviceRecord,
  encodeOpHeader,
  encodeRetSubmit,
  encodeRetUnlink,
  type UrbCommand,
  type UsbipDevice,
} from './usbip-protocol.js';

/** Bus id of the one exported device, as `usbip list -r` shows it. */
export const USBIP_BUSID = '1-1';

const EXPORTED_DEVICE: UsbipDevice = {
  path: '/sys/devices/virtual/virtcard/usb1/1-1',
  busid: USBIP_BUSID,
  busnum: 1,
  devnum: 2,
  speed: SPEED_FULL,
  idVendor: 0x08e6,
  idProduct: 0x4433,
  bcdDevice: 0x0000,
  bDeviceClass: 0,
  bDeviceSubClass: 0,
  bDeviceProtocol: 0,
  bConfigurationValue: 1,
  bNumConfigurations: 1,
  interfaces: [{ class: 0x0b, subClass: 0, protocol: 0 }],
};

export interface UsbipExportOptions {
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /** TCP port; 0 picks a free one (usbipd uses 3240). */
  port: number;
  logger?: Logger;
}

export interface UsbipExportEvents {
  /** A client imported the device. */
  import: [];
  /** The importing connection ended. */
  disconnect: [];
}

export class UsbipExport extends EventEmitter<UsbipExportEvents> {
  private readonly log: Logger;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private importer: UsbipSession | undefined;

  constructor(
    private readonly device: CcidDevice,
    private readonly options: UsbipExportOptions,
  ) {
    super();
    this.log = (options.logger ?? logger).child({ component: 'usbip' });
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
    this.log.info({ address: address.address, port: address.port, busid: USBIP_BUSID }, 'USB/IP export listening');
    return address;
  }

  /** Stops listening and closes every connection. */
  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.log.info('USB/IP export stopped');
  }

  private accept(socket: Socket): void {
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.sockets.add(socket);
    socket.setNoDelay(true);
    const log = this.log.child({ peer });
    const session = new UsbipSession(socket, this.device, log, {
      tryImport: () => {
        if (this.importer !== undefined) return false;
        this.importer = session;
        this.emit('import');
        return true;
      },
    });
    socket.on('close', () => {
      this.sockets.delete(socket);
      session.end();
      if (this.importer === session) {
        this.importer = undefined;
        log.info('USB/IP client detached');
        this.emit('disconnect');
      }
    });
    socket.on('error', (error) => log.warn({ err: error.message }, 'USB/IP connection failed'));
  }
}

interface WaitingUrb {
  seqnum: number;
  length: number;
  numberOfPackets: number;
}

class UsbipSession {
  private buffer = new Uint8Array(0);
  private imported = false;
  private ended = false;
  private readonly bulkIn: WaitingUrb[] = [];
  private readonly interruptIn: WaitingUrb[] = [];
  private readonly onBulkIn = (): void => this.pumpBulkIn();
  private readonly onInterrupt = (): void => this.pumpInterrupt();

  constructor(
    private readonly socket: Socket,
    private readonly device: CcidDevice,
    private readonly log: Logger,
    private readonly hooks: { tryImport: () => boolean },
  ) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.device.off('bulk-in', this.onBulkIn);
    this.device.off('interrupt', this.onInterrupt);
  }

  private fail(message: string): void {
    this.log.warn({ problem: message }, 'invalid USB/IP request; closing the connection');
    this.socket.destroy();
    this.end();
  }

  private receive(chunk: Buffer): void {
    const joined = new Uint8Array(this.buffer.length + chunk.length);
    joined.set(this.buffer, 0);
    joined.set(chunk, this.buffer.length);
    this.buffer = joined;
    while (!this.ended) {
      const consumed = this.imported ? this.receiveUrb() : this.receiveOperation();
      if (consumed === 0) return;
      this.buffer = this.buffer.subarray(consumed);
    }
  }

  /** Handles one operation request; returns the bytes consumed, 0 when more are needed. */
  private receiveOperation(): number {
    if (this.buffer.length < OP_HEADER_LENGTH) return 0;
    const view = new DataView(this.buffer.buffer, this.buffer.byteOffset, OP_HEADER_LENGTH);
    const code = view.getUint16(2);
    if (code === OP_REQ_DEVLIST) {
      const reply = new Uint8Array(OP_HEADER_LENGTH + 4);
      reply.set(encodeOpHeader(OP_REP_DEVLIST, 0), 0);
      new DataView(reply.buffer).setUint32(OP_HEADER_LENGTH, 1);
      this.socket.write(reply);
      this.socket.write(encodeDeviceRecord(EXPORTED_DEVICE, true));
      this.log.info('USB/IP device list sent');
      this.socket.end();
      return OP_HEADER_LENGTH;
    }
    if (code === OP_REQ_IMPORT) {
      if (this.buffer.length < OP_HEADER_LENGTH + BUSID_LENGTH) return 0;
      const field = this.buffer.subarray(OP_HEADER_LENGTH, OP_HEADER_LENGTH + BUSID_LENGTH);
      const end = field.indexOf(0);
      const busid = new TextDecoder().decode(field.subarray(0, end < 0 ? BUSID_LENGTH : end));
      if (busid !== USBIP_BUSID) {
        this.log.warn({ busid }, `USB/IP import of unknown bus id rejected; the exported bus id is ${USBIP_BUSID}`);
        this.socket.end(encodeOpHeader(OP_REP_IMPORT, 1));
        return OP_HEADER_LENGTH + BUSID_LENGTH;
      }
      if (!this.hooks.tryImport()) {
        this.log.warn({ busid }, 'USB/IP import rejected: the device is already imported by another connection');
        this.socket.end(encodeOpHeader(OP_REP_IMPORT, 1));
        return OP_HEADER_LENGTH + BUSID_LENGTH;
      }
      this.imported = true;
      this.device.usbReset();
      this.device.on('bulk-in', this.onBulkIn);
      this.device.on('interrupt', this.onInterrupt);
      const reply = new Uint8Array(OP_HEADER_LENGTH + 312);
      reply.set(encodeOpHeader(OP_REP_IMPORT, 0), 0);
      reply.set(encodeDeviceRecord(EXPORTED_DEVICE, false), OP_HEADER_LENGTH);
      this.socket.write(reply);
      this.log.info({ busid }, 'USB/IP device imported');
      return OP_HEADER_LENGTH + BUSID_LENGTH;
    }
    this.fail(`unknown USB/IP operation code 0x${code.toString(16)}`);
    return 0;
  }

  /** Handles one URB command; returns the bytes consumed, 0 when more are needed. */
  private receiveUrb(): number {
    if (this.buffer.length < URB_HEADER_LENGTH) return 0;
    const command = decodeUrbCommand(this.buffer.subarray(0, URB_HEADER_LENGTH));
    if (command.command === USBIP_CMD_UNLINK) {
      this.unlink(command);
      return URB_HEADER_LENGTH;
    }
    if (command.command !== USBIP_CMD_SUBMIT) {
      this.fail(`unknown USB/IP command ${command.command}`);
      return 0;
    }
    const outLength = command.direction === DIRECTION_IN ? 0 : command.transferBufferLength;
    if (outLength > 1 << 20) {
      this.fail(`CMD_SUBMIT with ${outLength} OUT bytes, more than the 1 MiB accepted`);
      return 0;
    }
    if (this.buffer.length < URB_HEADER_LENGTH + outLength) return 0;
    const data = this.buffer.slice(URB_HEADER_LENGTH, URB_HEADER_LENGTH + outLength);
    this.submit(command, data);
    return URB_HEADER_LENGTH + outLength;
  }

  private reply(command: UrbCommand, status: number, actualLength: number, data: Uint8Array = new Uint8Array(0)): void {
    if (this.ended) return;
    this.socket.write(encodeRetSubmit(command.seqnum, status, actualLength, command.numberOfPackets, data));
  }

  private submit(command: UrbCommand, data: Uint8Array): void {
    const isIn = command.direction === DIRECTION_IN;
    if (command.endpoint === 0) {
      const view = new DataView(command.setup.buffer, command.setup.byteOffset, 8);
      const setup = {
        bmRequestType: view.getUint8(0),
        bRequest: view.getUint8(1),
        wValue: view.getUint16(2, true),
        wIndex: view.getUint16(4, true),
        wLength: view.getUint16(6, true),
      };
      const result = this.device.handleControl(setup);
      if (result.status === 'stall') {
        this.reply(command, ERRNO_EPIPE, 0);
      } else if (isIn) {
        const answer = result.data.subarray(0, command.transferBufferLength);
        this.reply(command, 0, answer.length, answer);
      } else {
        this.reply(command, 0, data.length);
      }
      return;
    }

    const address = command.endpoint | (isIn ? 0x80 : 0);
    if (address === ENDPOINT_BULK_OUT) {
      const result = this.device.bulkOut(data);
      this.reply(command, result === 'ok' ? 0 : ERRNO_EPIPE, result === 'ok' ? data.length : 0);
      return;
    }
    const waiting = { seqnum: command.seqnum, length: command.transferBufferLength, numberOfPackets: command.numberOfPackets };
    if (address === ENDPOINT_BULK_IN) {
      this.bulkIn.push(waiting);
      this.pumpBulkIn();
      return;
    }
    if (address === ENDPOINT_INTERRUPT_IN) {
      this.interruptIn.push(waiting);
      this.pumpInterrupt();
      return;
    }
    this.log.warn({ endpoint: address }, 'URB for an endpoint the CCID device does not have; returned -EPIPE');
    this.reply(command, ERRNO_EPIPE, 0);
  }

  private pumpBulkIn(): void {
    while (this.bulkIn.length > 0) {
      const urb = this.bulkIn[0]!;
      const data = this.device.readBulkIn(urb.length);
      if (data === undefined) return;
      this.bulkIn.shift();
      this.socket.write(encodeRetSubmit(urb.seqnum, 0, data.length, urb.numberOfPackets, data));
    }
  }

  private pumpInterrupt(): void {
    while (this.interruptIn.length > 0) {
      const urb = this.interruptIn[0]!;
      const data = this.device.readInterrupt();
      if (data === undefined) return;
      this.interruptIn.shift();
      this.socket.write(encodeRetSubmit(urb.seqnum, 0, data.length, urb.numberOfPackets, data));
    }
  }

  private unlink(command: UrbCommand): void {
    let status = 0;
    for (const queue of [this.bulkIn, this.interruptIn]) {
      const index = queue.findIndex((urb) => urb.seqnum === command.unlinkSeqnum);
      if (index >= 0) {
        queue.splice(index, 1);
        status = ERRNO_ECONNRESET;
      }
    }
    this.socket.write(encodeRetUnlink(command.seqnum, status));
  }
}
