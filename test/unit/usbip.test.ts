/**
 * The USB/IP export against a scripted client (the role Linux's vhci-hcd
 * and `usbip` play): device list, import, control, bulk and interrupt URBs,
 * and unlinking.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { CcidDevice } from '../../src/ccid/device.js';
import { EchoReader, ECHO_ATR } from '../../src/reader/echo-reader.js';
import { UsbipExport } from '../../src/transports/usbip.js';

class FakeClient {
  private buffer = Buffer.alloc(0);
  /** Resolves when the connection closed; created at once so an early close is not missed. */
  readonly closed: Promise<unknown[]>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => (this.buffer = Buffer.concat([this.buffer, chunk])));
    this.closed = once(socket, 'close');
  }

  static async open(port: number): Promise<FakeClient> {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    return new FakeClient(socket);
  }

  async read(length: number): Promise<Buffer> {
    const deadline = Date.now() + 2000;
    while (this.buffer.length < length) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${length} bytes, have ${this.buffer.length}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const bytes = this.buffer.subarray(0, length);
    this.buffer = this.buffer.subarray(length);
    return bytes;
  }

  get buffered(): number {
    return this.buffer.length;
  }

  submit(seqnum: number, direction: number, endpoint: number, length: number, setup: number[] = [0, 0, 0, 0, 0, 0, 0, 0], data: Buffer = Buffer.alloc(0)): void {
    const header = Buffer.alloc(48);
    header.writeUInt32BE(1, 0);
    header.writeUInt32BE(seqnum, 4);
    header.writeUInt32BE(0x00010002, 8);
    header.writeUInt32BE(direction, 12);
    header.writeUInt32BE(endpoint, 16);
    header.writeUInt32BE(length, 24);
    Buffer.from(setup).copy(header, 40);
    this.socket.write(Buffer.concat([header, data]));
  }

  unlink(seqnum: number, target: number): void {
    const header = Buffer.alloc(48);
    header.writeUInt32BE(2, 0);
    header.writeUInt32BE(seqnum, 4);
    header.writeUInt32BE(target, 20);
    this.socket.write(header);
  }

  /** Reads one RET_SUBMIT and returns its seqnum, status and data. */
  async retSubmit(withData: boolean): Promise<{ seqnum: number; status: number; data: Buffer }> {
    const header = await this.read(48);
    assert.equal(header.readUInt32BE(0), 3, 'RET_SUBMIT');
    const length = header.readUInt32BE(24);
    return { seqnum: header.readUInt32BE(4), status: header.readInt32BE(20), data: withData ? await this.read(length) : Buffer.alloc(0) };
  }
}

function importRequest(busid: string): Buffer {
  const request = Buffer.alloc(40);
  request.writeUInt16BE(0x0111, 0);
  request.writeUInt16BE(0x8003, 2);
  request.write(busid, 8);
  return request;
}

async function withExport(run: (port: number) => Promise<void>): Promise<void> {
  const device = new CcidDevice();
  device.attach(new EchoReader());
  const exporter = new UsbipExport(device, { port: 0 });
  const address = await exporter.listen();
  try {
    await run(address.port);
  } finally {
    await exporter.close();
  }
}

test('usbip lists the CCID device', async () => {
  await withExport(async (port) => {
    const client = await FakeClient.open(port);
    const request = Buffer.alloc(8);
    request.writeUInt16BE(0x0111, 0);
    request.writeUInt16BE(0x8005, 2);
    client.socket.write(request);
    const reply = await client.read(12 + 312 + 4);
    assert.equal(reply.readUInt16BE(2), 0x0005);
    assert.equal(reply.readUInt32BE(8), 1, 'one device');
    assert.equal(reply.subarray(12 + 256, 12 + 259).toString(), '1-1');
    assert.equal(reply.readUInt32BE(12 + 296), 2, 'full speed');
    assert.equal(reply.readUInt16BE(12 + 300), 0x08e6);
    assert.equal(reply.readUInt16BE(12 + 302), 0x4433);
    assert.equal(reply[12 + 311], 1, 'one interface');
    assert.equal(reply[12 + 312], 0x0b, 'smart card class');
    await client.closed;
  });
});

test('usbip rejects unknown bus id', async () => {
  await withExport(async (port) => {
    const client = await FakeClient.open(port);
    client.socket.write(importRequest('9-9'));
    const reply = await client.read(8);
    assert.equal(reply.readUInt16BE(2), 0x0003);
    assert.equal(reply.readUInt32BE(4), 1);
    await client.closed;
  });
});

test('usbip serves URBs after import', async () => {
  await withExport(async (port) => {
    const client = await FakeClient.open(port);
    client.socket.write(importRequest('1-1'));
    const reply = await client.read(8 + 312);
    assert.equal(reply.readUInt32BE(4), 0, 'import accepted');

    // A second client cannot import the device while the first holds it.
    const second = await FakeClient.open(port);
    second.socket.write(importRequest('1-1'));
    assert.equal((await second.read(8)).readUInt32BE(4), 1);

    // GET_DESCRIPTOR(DEVICE) on endpoint 0.
    client.submit(1, 1, 0, 18, [0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 0x12, 0x00]);
    const descriptor = await client.retSubmit(true);
    assert.equal(descriptor.seqnum, 1);
    assert.equal(descriptor.status, 0);
    assert.deepEqual([...descriptor.data.subarray(0, 4)], [0x12, 0x01, 0x10, 0x01]);

    // DEVICE_QUALIFIER stalls: -EPIPE.
    client.submit(2, 1, 0, 10, [0x80, 0x06, 0x00, 0x06, 0x00, 0x00, 0x0a, 0x00]);
    assert.equal((await client.retSubmit(true)).status, -32);

    // The interrupt URB gets the inserted card's NotifySlotChange.
    client.submit(3, 1, 1, 8);
    const notify = await client.retSubmit(true);
    assert.equal(notify.seqnum, 3);
    assert.deepEqual([...notify.data], [0x50, 0x03]);

    // IccPowerOn over bulk OUT 3, answer on bulk IN 2.
    client.submit(4, 0, 3, 10, undefined, Buffer.from([0x62, 0, 0, 0, 0, 0, 5, 0, 0, 0]));
    const out = await client.retSubmit(false);
    assert.equal(out.seqnum, 4);
    assert.equal(out.status, 0);
    client.submit(5, 1, 2, 4096);
    const answer = await client.retSubmit(true);
    assert.equal(answer.seqnum, 5);
    assert.deepEqual(answer.data.subarray(10), Buffer.from(ECHO_ATR));

    // A waiting interrupt URB is unlinked with -ECONNRESET and never completed.
    client.submit(6, 1, 1, 8);
    client.unlink(7, 6);
    const unlinked = await client.read(48);
    assert.equal(unlinked.readUInt32BE(0), 4, 'RET_UNLINK');
    assert.equal(unlinked.readUInt32BE(4), 7);
    assert.equal(unlinked.readInt32BE(20), -104);
    // Unlinking a URB that already completed answers 0.
    client.unlink(8, 5);
    assert.equal((await client.read(48)).readInt32BE(20), 0);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(client.buffered, 0);
    client.socket.destroy();
    second.socket.destroy();
  });
});
