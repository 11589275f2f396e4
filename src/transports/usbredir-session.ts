/**
 * One usbredir connection with QEMU (the usb-guest), where this side is the
 * usb-host exporting one CCID device: hello exchange, device description
 * (ep_info, interface_info, device_connect), then control, bulk and
 * interrupt traffic mapped onto the `CcidDevice` model.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import {
  ENDPOINT_BULK_IN,
  ENDPOINT_BULK_OUT,
  ENDPOINT_INTERRUPT_IN,
  MAX_PACKET_SIZE,
} from '../ccid/constants.js';
import type { CcidDevice } from '../ccid/device.js';
import type { Logger } from '../log/logger.js';
import { UsbredirDecoder, UsbredirProtocolError, encodeUsbredirPacket, type UsbredirPacket } from './usbredir-codec.js';
import {
  HELLO_VERSION_LENGTH,
  UsbredirCap,
  UsbredirEndpointType,
  UsbredirSpeed,
  UsbredirStatus,
  UsbredirType,
  capabilityWord,
  typeHeaderLength,
} from './usbredir-protocol.js';

/** Capabilities this side announces. QEMU needs the last three to attach a device to xHCI. */
const OWN_CAPS = [
  UsbredirCap.ConnectDeviceVersion,
  UsbredirCap.EpInfoMaxPacketSize,
  UsbredirCap.SixtyFourBitIds,
  UsbredirCap.ThirtyTwoBitBulkLength,
];

const VERSION_STRING = 'virtcard usbredir host';

/** Identity sent in device_connect: full speed, class per interface, Gemplus 08E6:4433, bcdDevice 0. */
const DEVICE_VENDOR = 0x08e6;
const DEVICE_PRODUCT = 0x4433;
const SMART_CARD_CLASS = 0x0b;

interface PendingBulkIn {
  id: bigint;
  length: number;
}

export interface UsbredirSessionEvents {
  /** The hello exchange finished and the device was announced. */
  ready: [];
  /** The connection ended; the argument is the reason. */
  end: [reason: string];
}

export class UsbredirSession extends EventEmitter<UsbredirSessionEvents> {
  private readonly decoder = new UsbredirDecoder();
  private peerCaps = 0;
  private helloReceived = false;
  private idBits: 32 | 64 = 32;
  private interruptReceiving = false;
  private interruptId = 0n;
  private readonly pendingBulkIn: PendingBulkIn[] = [];
  private ended = false;
  private readonly onBulkIn = (): void => this.pumpBulkIn();
  private readonly onInterrupt = (): void => this.pumpInterrupt();

  constructor(
    private readonly socket: Socket,
    private readonly device: CcidDevice,
    private readonly log: Logger,
  ) {
    super();
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (error) => this.end(`socket error: ${error.message}`));
    socket.on('close', () => this.end('connection closed by QEMU'));
    this.device.usbReset();
    this.device.on('bulk-in', this.onBulkIn);
    this.device.on('interrupt', this.onInterrupt);
    this.sendHello();
  }

  /** Unplugs the device from QEMU (device_disconnect) and closes the connection once the data is sent. */
  disconnect(): void {
    if (this.ended) return;
    if (this.helloReceived) this.send(UsbredirType.DeviceDisconnect, 0n, new Uint8Array(0));
    this.socket.end();
  }

  private end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.device.off('bulk-in', this.onBulkIn);
    this.device.off('interrupt', this.onInterrupt);
    this.pendingBulkIn.length = 0;
    this.socket.destroy();
    this.emit('end', reason);
  }

  private shared(cap: UsbredirCap): boolean {
    return OWN_CAPS.includes(cap) && (this.peerCaps & (1 << cap)) !== 0;
  }

  private send(type: UsbredirType, id: bigint, body: Uint8Array): void {
    if (this.ended) return;
    this.socket.write(encodeUsbredirPacket(type, id, body, this.idBits));
  }

  private receive(chunk: Buffer): void {
    this.decoder.push(chunk);
    try {
      for (let packet = this.decoder.next(); packet !== undefined; packet = this.decoder.next()) {
        this.handle(packet);
        if (this.ended) return;
      }
    } catch (error) {
      if (!(error instanceof UsbredirProtocolError)) throw error;
      this.log.error({ err: error }, 'invalid usbredir data from QEMU; closing the connection');
      this.end(error.message);
    }
  }

  private sendHello(): void {
    const body = new Uint8Array(HELLO_VERSION_LENGTH + 4);
    body.set(new TextEncoder().encode(VERSION_STRING), 0);
    new DataView(body.buffer).setUint32(HELLO_VERSION_LENGTH, capabilityWord(OWN_CAPS), true);
    this.send(UsbredirType.Hello, 0n, body);
  }

  private handle(packet: UsbredirPacket): void {
    if (!this.helloReceived) {
      if (packet.type !== UsbredirType.Hello) {
        throw new UsbredirProtocolError(`the first usbredir packet from QEMU must be hello (0), got type ${packet.type}`);
      }
      this.receiveHello(packet.body);
      return;
    }

    const headerLength = typeHeaderLength(packet.type, (cap) => this.shared(cap));
    if (packet.body.length < headerLength) {
      throw new UsbredirProtocolError(
        `usbredir packet of type ${packet.type} has ${packet.body.length} bytes, shorter than its ${headerLength}-byte header`,
      );
    }
    const header = new DataView(packet.body.buffer, packet.body.byteOffset, headerLength);
    const data = packet.body.subarray(headerLength);

    switch (packet.type) {
      case UsbredirType.ControlPacket:
        this.controlPacket(packet.id, packet.body.subarray(0, headerLength), header);
        return;
      case UsbredirType.BulkPacket:
        this.bulkPacket(packet.id, header, data);
        return;
      case UsbredirType.SetConfiguration:
        this.setConfiguration(packet.id, header.getUint8(0));
        return;
      case UsbredirType.GetConfiguration:
        this.send(UsbredirType.ConfigurationStatus, packet.id, Uint8Array.of(UsbredirStatus.Success, this.device.configuration));
        return;
      case UsbredirType.SetAltSetting: {
        const iface = header.getUint8(0);
        const alt = header.getUint8(1);
        const ok = iface === 0 && alt === 0;
        if (ok) this.sendEpInfo();
        this.send(UsbredirType.AltSettingStatus, packet.id, Uint8Array.of(ok ? UsbredirStatus.Success : UsbredirStatus.Inval, iface, ok ? 0 : 255));
        return;
      }
      case UsbredirType.GetAltSetting: {
        const iface = header.getUint8(0);
        const ok = iface === 0;
        this.send(UsbredirType.AltSettingStatus, packet.id, Uint8Array.of(ok ? UsbredirStatus.Success : UsbredirStatus.Inval, iface, ok ? 0 : 255));
        return;
      }
      case UsbredirType.StartInterruptReceiving:
      case UsbredirType.StopInterruptReceiving: {
        const endpoint = header.getUint8(0);
        const ok = endpoint === ENDPOINT_INTERRUPT_IN;
        if (ok) this.interruptReceiving = packet.type === UsbredirType.StartInterruptReceiving;
        this.send(UsbredirType.InterruptReceivingStatus, packet.id, Uint8Array.of(ok ? UsbredirStatus.Success : UsbredirStatus.Inval, endpoint));
        if (this.interruptReceiving) this.pumpInterrupt();
        return;
      }
      case UsbredirType.CancelDataPacket:
        this.cancel(packet.id);
        return;
      case UsbredirType.Reset:
        this.log.debug('USB reset from QEMU');
        this.device.usbReset();
        return;
      case UsbredirType.FilterReject:
        this.log.error('QEMU rejected the device (usb-redir filter or speed mismatch); check the filter property and the USB controller');
        return;
      case UsbredirType.FilterFilter:
      case UsbredirType.DeviceDisconnectAck:
        return;
      case UsbredirType.Hello:
        throw new UsbredirProtocolError('QEMU sent a second usbredir hello');
      default:
        this.log.warn({ type: packet.type, id: packet.id.toString() }, 'unsupported usbredir packet type from QEMU ignored');
    }
  }

  private receiveHello(body: Uint8Array): void {
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    this.peerCaps = body.length >= HELLO_VERSION_LENGTH + 4 ? view.getUint32(HELLO_VERSION_LENGTH, true) : 0;
    const end = body.subarray(0, HELLO_VERSION_LENGTH).indexOf(0);
    const version = new TextDecoder().decode(body.subarray(0, end < 0 ? Math.min(body.length, HELLO_VERSION_LENGTH) : end));
    this.helloReceived = true;
    if (this.shared(UsbredirCap.SixtyFourBitIds)) {
      this.idBits = 64;
      this.decoder.idBits = 64;
    }
    this.log.info({ version, caps: `0x${this.peerCaps.toString(16)}` }, 'usbredir hello received');

    this.sendEpInfo();
    this.sendInterfaceInfo();
    this.sendDeviceConnect();
    this.emit('ready');
  }

  private sendEpInfo(): void {
    const withMaxPacketSize = this.shared(UsbredirCap.EpInfoMaxPacketSize);
    const body = new Uint8Array(typeHeaderLength(UsbredirType.EpInfo, (cap) => this.shared(cap)));
    const view = new DataView(body.buffer);
    body.fill(UsbredirEndpointType.Invalid, 0, 32);
    // Index: endpoint number for OUT endpoints, 16 + number for IN endpoints.
    const endpoints: [number, UsbredirEndpointType, number][] = [
      [0, UsbredirEndpointType.Control, 0],
      [16, UsbredirEndpointType.Control, 0],
      [ENDPOINT_BULK_OUT & 0x0f, UsbredirEndpointType.Bulk, 0],
      [16 + (ENDPOINT_INTERRUPT_IN & 0x0f), UsbredirEndpointType.Interrupt, 255],
      [16 + (ENDPOINT_BULK_IN & 0x0f), UsbredirEndpointType.Bulk, 0],
    ];
    for (const [index, type, interval] of endpoints) {
      body[index] = type;
      body[32 + index] = interval;
      body[64 + index] = 0;
      if (withMaxPacketSize) view.setUint16(96 + 2 * index, MAX_PACKET_SIZE, true);
    }
    this.send(UsbredirType.EpInfo, 0n, body);
  }

  private sendInterfaceInfo(): void {
    const body = new Uint8Array(4 + 4 * 32);
    new DataView(body.buffer).setUint32(0, 1, true);
    body[4] = 0;
    body[4 + 32] = SMART_CARD_CLASS;
    body[4 + 64] = 0;
    body[4 + 96] = 0;
    this.send(UsbredirType.InterfaceInfo, 0n, body);
  }

  private sendDeviceConnect(): void {
    const withVersion = this.shared(UsbredirCap.ConnectDeviceVersion);
    const body = new Uint8Array(withVersion ? 10 : 8);
    const view = new DataView(body.buffer);
    body[0] = UsbredirSpeed.Full;
    view.setUint16(4, DEVICE_VENDOR, true);
    view.setUint16(6, DEVICE_PRODUCT, true);
    if (withVersion) view.setUint16(8, 0x0000, true);
    this.send(UsbredirType.DeviceConnect, 0n, body);
  }

  private setConfiguration(id: bigint, configuration: number): void {
    const result = this.device.handleControl({ bmRequestType: 0x00, bRequest: 0x09, wValue: configuration, wIndex: 0, wLength: 0 });
    const ok = result.status === 'ok';
    if (ok) {
      this.sendEpInfo();
      this.sendInterfaceInfo();
    }
    this.send(UsbredirType.ConfigurationStatus, id, Uint8Array.of(ok ? UsbredirStatus.Success : UsbredirStatus.Stall, this.device.configuration));
  }

  private controlPacket(id: bigint, rawHeader: Uint8Array, header: DataView): void {
    const setup = {
      bmRequestType: header.getUint8(2),
      bRequest: header.getUint8(1),
      wValue: header.getUint16(4, true),
      wIndex: header.getUint16(6, true),
      wLength: header.getUint16(8, true),
    };
    const result = this.device.handleControl(setup);
    const isIn = (setup.bmRequestType & 0x80) !== 0;
    const reply = Uint8Array.from(rawHeader);
    const replyView = new DataView(reply.buffer);
    let data: Uint8Array = new Uint8Array(0);
    if (result.status === 'ok') {
      reply[3] = UsbredirStatus.Success;
      if (isIn) data = result.data;
      replyView.setUint16(8, isIn ? data.length : setup.wLength, true);
    } else {
      reply[3] = UsbredirStatus.Stall;
      replyView.setUint16(8, 0, true);
    }
    const body = new Uint8Array(reply.length + data.length);
    body.set(reply, 0);
    body.set(data, reply.length);
    this.send(UsbredirType.ControlPacket, id, body);
  }

  private bulkHeader(endpoint: number, status: UsbredirStatus, length: number, streamId: number): Uint8Array {
    const with32 = this.shared(UsbredirCap.ThirtyTwoBitBulkLength);
    const header = new Uint8Array(with32 ? 10 : 8);
    const view = new DataView(header.buffer);
    header[0] = endpoint;
    header[1] = status;
    view.setUint16(2, length & 0xffff, true);
    view.setUint32(4, streamId, true);
    if (with32) view.setUint16(8, length >>> 16, true);
    return header;
  }

  private bulkPacket(id: bigint, header: DataView, data: Uint8Array): void {
    const endpoint = header.getUint8(0);
    let length = header.getUint16(2, true);
    const streamId = header.getUint32(4, true);
    if (header.byteLength >= 10) length |= header.getUint16(8, true) << 16;

    if (endpoint === ENDPOINT_BULK_OUT) {
      const result = this.device.bulkOut(data);
      const status = result === 'ok' ? UsbredirStatus.Success : UsbredirStatus.Stall;
      this.send(UsbredirType.BulkPacket, id, this.bulkHeader(endpoint, status, result === 'ok' ? data.length : 0, streamId));
      return;
    }
    if (endpoint === ENDPOINT_BULK_IN) {
      this.pendingBulkIn.push({ id, length });
      this.pumpBulkIn();
      return;
    }
    this.log.warn({ endpoint }, 'bulk packet for an endpoint the CCID device does not have');
    this.send(UsbredirType.BulkPacket, id, this.bulkHeader(endpoint, UsbredirStatus.Inval, 0, streamId));
  }

  private pumpBulkIn(): void {
    while (this.pendingBulkIn.length > 0) {
      const request = this.pendingBulkIn[0]!;
      const data = this.device.readBulkIn(request.length);
      if (data === undefined) return;
      this.pendingBulkIn.shift();
      const header = this.bulkHeader(ENDPOINT_BULK_IN, UsbredirStatus.Success, data.length, 0);
      const body = new Uint8Array(header.length + data.length);
      body.set(header, 0);
      body.set(data, header.length);
      this.send(UsbredirType.BulkPacket, request.id, body);
    }
  }

  private pumpInterrupt(): void {
    if (!this.interruptReceiving) return;
    for (let data = this.device.readInterrupt(); data !== undefined; data = this.device.readInterrupt()) {
      const body = new Uint8Array(4 + data.length);
      body[0] = ENDPOINT_INTERRUPT_IN;
      body[1] = UsbredirStatus.Success;
      new DataView(body.buffer).setUint16(2, data.length, true);
      body.set(data, 4);
      this.send(UsbredirType.InterruptPacket, this.interruptId++, body);
    }
  }

  private cancel(id: bigint): void {
    const index = this.pendingBulkIn.findIndex((request) => request.id === id);
    if (index < 0) return;
    this.pendingBulkIn.splice(index, 1);
    this.send(UsbredirType.BulkPacket, id, this.bulkHeader(ENDPOINT_BULK_IN, UsbredirStatus.Cancelled, 0, 0));
  }
}
