/**
 * The usbredir export against a scripted usb-guest (the role QEMU's
 * usb-redir plays): hello exchange, device description, control, bulk and
 * interrupt transfers, and cancellation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { CcidDevice } from '../../src/ccid/device.js';
import { EchoReader, ECHO_ATR } from '../../src/reader/echo-reader.js';
import { UsbredirExport } from '../../src/transports/usbredir.js';
import { UsbredirDecoder, encodeUsbredirPacket, type UsbredirPacket } from '../../src/transports/usbredir-codec.js';
import { UsbredirCap, UsbredirType, capabilityWord } from '../../src/transports/usbredir-protocol.js';

/** QEMU 7.2 announces every capability bit from 0 to 7. */
const GUEST_CAPS = 0xff;

class FakeGuest {
  private readonly decoder = new UsbredirDecoder();
  private readonly received: UsbredirPacket[] = [];
  private idBits: 32 | 64 = 32;

  private constructor(
    readonly socket: Socket,
    private readonly caps: number,
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk);
      for (let packet = this.decoder.next(); packet !== undefined; packet = this.decoder.next()) {
        this.received.push(packet);
        // Packets after the host's hello carry 64-bit ids when both sides announced the capability.
        if (packet.type === UsbredirType.Hello) {
          const hostCaps = new DataView(packet.body.buffer, packet.body.byteOffset).getUint32(64, true);
          if ((hostCaps & this.caps & (1 << UsbredirCap.SixtyFourBitIds)) !== 0) this.useIdBits(64);
        }
      }
    });
  }

  static async open(port: number, caps = GUEST_CAPS): Promise<FakeGuest> {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    const guest = new FakeGuest(socket, caps);
    const hello = new Uint8Array(68);
    hello.set(new TextEncoder().encode('fake usb-guest'));
    new DataView(hello.buffer).setUint32(64, caps, true);
    socket.write(encodeUsbredirPacket(UsbredirType.Hello, 0n, hello, 32));
    return guest;
  }

  private useIdBits(bits: 32 | 64): void {
    this.idBits = bits;
    this.decoder.idBits = bits;
  }

  send(type: UsbredirType, id: bigint, body: Uint8Array): void {
    this.socket.write(encodeUsbredirPacket(type, id, body, this.idBits));
  }

  async next(): Promise<UsbredirPacket> {
    const deadline = Date.now() + 2000;
    while (this.received.length === 0) {
      if (Date.now() > deadline) throw new Error('timed out waiting for a usbredir packet');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return this.received.shift()!;
  }

  pendingCount(): number {
    return this.received.length;
  }
}

function controlIn(bRequest: number, wValue: number, wIndex: number, wLength: number, bmRequestType = 0x80): Uint8Array {
  const body = new Uint8Array(10);
  const view = new DataView(body.buffer);
  body[0] = 0x80;
  body[1] = bRequest;
  body[2] = bmRequestType;
  view.setUint16(4, wValue, true);
  view.setUint16(6, wIndex, true);
  view.setUint16(8, wLength, true);
  return body;
}

function bulk(endpoint: number, length: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const body = new Uint8Array(10 + data.length);
  const view = new DataView(body.buffer);
  body[0] = endpoint;
  view.setUint16(2, length & 0xffff, true);
  view.setUint16(8, length >>> 16, true);
  body.set(data, 10);
  return body;
}

async function withExport(run: (guest: FakeGuest, reader: EchoReader) => Promise<void>): Promise<void> {
  const reader = new EchoReader();
  const device = new CcidDevice();
  device.attach(reader);
  const exporter = new UsbredirExport(device, { port: 0 });
  const address = await exporter.listen();
  const guest = await FakeGuest.open(address.port);
  try {
    await run(guest, reader);
  } finally {
    guest.socket.destroy();
    await exporter.close();
  }
}

test('usbredir announces the CCID device', async () => {
  await withExport(async (guest) => {
    const hello = await guest.next();
    assert.equal(hello.type, UsbredirType.Hello);
    assert.equal(hello.body.length, 68);
    const caps = new DataView(hello.body.buffer, hello.body.byteOffset).getUint32(64, true);
    assert.equal(
      caps,
      capabilityWord([UsbredirCap.ConnectDeviceVersion, UsbredirCap.EpInfoMaxPacketSize, UsbredirCap.SixtyFourBitIds, UsbredirCap.ThirtyTwoBitBulkLength]),
    );

    const epInfo = await guest.next();
    assert.equal(epInfo.type, UsbredirType.EpInfo);
    assert.equal(epInfo.body.length, 96 + 64);
    assert.deepEqual([epInfo.body[0], epInfo.body[3], epInfo.body[16], epInfo.body[17], epInfo.body[18]], [0, 2, 0, 3, 2]);
    assert.equal(epInfo.body[32 + 17], 255, 'interrupt interval');
    assert.equal(new DataView(epInfo.body.buffer, epInfo.body.byteOffset).getUint16(96 + 2 * 18, true), 64);

    const interfaceInfo = await guest.next();
    assert.equal(interfaceInfo.type, UsbredirType.InterfaceInfo);
    assert.equal(interfaceInfo.body[0], 1, 'interface count');
    assert.equal(interfaceInfo.body[4 + 32], 0x0b, 'smart card class');

    const connect = await guest.next();
    assert.equal(connect.type, UsbredirType.DeviceConnect);
    assert.deepEqual([...connect.body], [0x01, 0, 0, 0, 0xe6, 0x08, 0x33, 0x44, 0x00, 0x00]);
  });
});

test('usbredir serves descriptors and CCID', async () => {
  await withExport(async (guest) => {
    for (let index = 0; index < 4; index++) await guest.next();

    guest.send(UsbredirType.ControlPacket, 7n, controlIn(6, 0x0100, 0, 64));
    const device = await guest.next();
    assert.equal(device.type, UsbredirType.ControlPacket);
    assert.equal(device.id, 7n);
    assert.equal(device.body[3], 0, 'status success');
    assert.equal(new DataView(device.body.buffer, device.body.byteOffset).getUint16(8, true), 18);
    assert.deepEqual([...device.body.subarray(10, 14)], [0x12, 0x01, 0x10, 0x01]);

    // DEVICE_QUALIFIER: STALL.
    guest.send(UsbredirType.ControlPacket, 8n, controlIn(6, 0x0600, 0, 10));
    const qualifier = await guest.next();
    assert.equal(qualifier.body[3], 4, 'status stall');
    assert.equal(qualifier.body.length, 10);

    guest.send(UsbredirType.SetConfiguration, 9n, Uint8Array.of(1));
    assert.equal((await guest.next()).type, UsbredirType.EpInfo);
    assert.equal((await guest.next()).type, UsbredirType.InterfaceInfo);
    const status = await guest.next();
    assert.equal(status.type, UsbredirType.ConfigurationStatus);
    assert.deepEqual([...status.body], [0, 1]);

    // Interrupt IN: the inserted card's NotifySlotChange arrives once receiving starts.
    guest.send(UsbredirType.StartInterruptReceiving, 10n, Uint8Array.of(0x81));
    const receiving = await guest.next();
    assert.equal(receiving.type, UsbredirType.InterruptReceivingStatus);
    assert.deepEqual([...receiving.body], [0, 0x81]);
    const notify = await guest.next();
    assert.equal(notify.type, UsbredirType.InterruptPacket);
    assert.deepEqual([...notify.body], [0x81, 0, 2, 0, 0x50, 0x03]);

    // IccPowerOn over bulk OUT, then the DataBlock over bulk IN.
    guest.send(UsbredirType.BulkPacket, 11n, bulk(0x03, 10, Uint8Array.of(0x62, 0, 0, 0, 0, 0, 1, 0, 0, 0)));
    const out = await guest.next();
    assert.equal(out.id, 11n);
    assert.deepEqual([...out.body.subarray(0, 4)], [0x03, 0, 10, 0]);
    assert.equal(out.body.length, 10, 'bulk OUT reply has no data');
    guest.send(UsbredirType.BulkPacket, 12n, bulk(0x82, 4096));
    const answer = await guest.next();
    assert.equal(answer.id, 12n);
    assert.equal(answer.body[1], 0);
    assert.deepEqual(answer.body.subarray(10 + 10), ECHO_ATR);

    // A bulk IN with nothing to read waits; cancelling it answers it with status cancelled.
    guest.send(UsbredirType.BulkPacket, 13n, bulk(0x82, 64));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(guest.pendingCount(), 0);
    guest.send(UsbredirType.CancelDataPacket, 13n, new Uint8Array(0));
    const cancelled = await guest.next();
    assert.equal(cancelled.id, 13n);
    assert.equal(cancelled.body[1], 1, 'status cancelled');
  });
});

test('usbredir uses 32-bit ids without the cap', async () => {
  const reader = new EchoReader();
  const device = new CcidDevice();
  device.attach(reader);
  const exporter = new UsbredirExport(device, { port: 0 });
  const address = await exporter.listen();
  const guest = await FakeGuest.open(address.port, 0);
  try {
    for (let index = 0; index < 3; index++) await guest.next();
    const connect = await guest.next();
    assert.equal(connect.type, UsbredirType.DeviceConnect);
    assert.equal(connect.body.length, 8, 'no bcdDevice without connect_device_version');
    guest.send(UsbredirType.ControlPacket, 3n, controlIn(6, 0x0200, 0, 9));
    const config = await guest.next();
    assert.equal(config.id, 3n);
    assert.deepEqual([...config.body.subarray(10)], [0x09, 0x02, 0x5d, 0x00, 0x01, 0x01, 0x00, 0xe0, 0x32]);
  } finally {
    guest.socket.destroy();
    await exporter.close();
  }
});

test('usbredir rejects a second connection', async () => {
  await withExport(async (guest) => {
    await guest.next();
    const second = connect((guest.socket.remotePort ?? 0), '127.0.0.1');
    await once(second, 'close');
    assert.ok(!guest.socket.destroyed);
  });
});

test('usbredir close sends device_disconnect', async () => {
  const device = new CcidDevice();
  device.attach(new EchoReader());
  const exporter = new UsbredirExport(device, { port: 0 });
  const address = await exporter.listen();
  const guest = await FakeGuest.open(address.port);
  const closed = once(guest.socket, 'close');
  for (let index = 0; index < 4; index++) await guest.next();
  await exporter.close();
  const disconnect = await guest.next();
  assert.equal(disconnect.type, UsbredirType.DeviceDisconnect);
  assert.equal(disconnect.body.length, 0);
  await closed;
});
