import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CcidDevice } from '../../src/ccid/device.js';
import { BulkInQueue } from '../../src/ccid/bulk-in.js';
import { CONFIGURATION_DESCRIPTOR, CCID_CLASS_DESCRIPTOR } from '../../src/ccid/descriptors.js';
import { EchoReader, ECHO_ATR } from '../../src/reader/echo-reader.js';

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function pcToRdr(type: number, seq: number, data: Uint8Array = new Uint8Array(0), slot = 0): Uint8Array {
  const message = new Uint8Array(10 + data.length);
  message[0] = type;
  new DataView(message.buffer).setUint32(1, data.length, true);
  message[5] = slot;
  message[6] = seq;
  message.set(data, 10);
  return message;
}

/** Reads one whole RDR_to_PC message the way libccid does: one large bulk IN transfer. */
function readMessage(device: CcidDevice): Uint8Array {
  const message = device.readBulkIn(1 << 20);
  assert.ok(message, 'bulk IN NAKed');
  return message;
}

test('descriptor lengths match their headers', () => {
  assert.equal(CCID_CLASS_DESCRIPTOR.length, CCID_CLASS_DESCRIPTOR[0]);
  assert.equal(CONFIGURATION_DESCRIPTOR.length, CONFIGURATION_DESCRIPTOR[2]! | (CONFIGURATION_DESCRIPTOR[3]! << 8));
});

test('bulk IN ends 64-byte messages with ZLP', () => {
  const queue = new BulkInQueue();
  queue.push(new Uint8Array(64).fill(1));
  queue.push(new Uint8Array(128).fill(2));
  queue.push(new Uint8Array(12).fill(3));
  // Packet-sized reads, as UHCI does them: 64 bytes, then the zero-length packet.
  assert.equal(queue.read(64)?.length, 64);
  assert.equal(queue.read(64)?.length, 0);
  // Whole-transfer reads, as xHCI does them: the zero-length packet ends the same transfer.
  assert.equal(queue.read(4096)?.length, 128);
  assert.equal(queue.read(4096)?.length, 12);
  assert.equal(queue.read(4096), undefined);
});

test('bulk IN read shorter than message', () => {
  const queue = new BulkInQueue();
  queue.push(new Uint8Array(12).fill(7));
  assert.equal(queue.read(10)?.length, 10);
  assert.equal(queue.read(10)?.length, 2);
  assert.equal(queue.length, 0);
});

test('answers above 374 bytes are delivered', async () => {
  const device = new CcidDevice();
  device.attach(new EchoReader());
  for (const length of [373, 374, 375, 4096, 65534]) {
    const command = new Uint8Array(length - 2).fill(0x5a);
    assert.equal(device.bulkOut(pcToRdr(0x6f, 1, command)), 'ok');
    await settle();
    const answer = readMessage(device);
    assert.equal(answer.length, 10 + length, `answer of ${length} bytes`);
    assert.equal(new DataView(answer.buffer, answer.byteOffset).getUint32(1, true), length);
    assert.deepEqual([...answer.subarray(-2)], [0x90, 0x00]);
  }
});

test('extended APDU passes unchanged', async () => {
  const device = new CcidDevice();
  const reader = new EchoReader();
  device.attach(reader);
  const extended = new Uint8Array(7 + 1000 + 2);
  extended.set([0x00, 0xd6, 0x00, 0x00, 0x00, 0x03, 0xe8]);
  extended.fill(0x11, 7, 1007);
  assert.equal(device.bulkOut(pcToRdr(0x6f, 9, extended)), 'ok');
  await settle();
  const answer = readMessage(device);
  assert.deepEqual(answer.subarray(10, 10 + extended.length), extended);
});

test('largest message fits dwMaxCCIDMessageLength', async () => {
  const device = new CcidDevice();
  device.attach(new EchoReader());
  // dwMaxCCIDMessageLength 65554 = 10-byte header + 65544 data bytes.
  assert.equal(device.bulkOut(pcToRdr(0x6f, 2, new Uint8Array(65544))), 'ok');
  await settle();
  assert.equal(readMessage(device).length, 10 + 65546);
  assert.equal(device.bulkOut(pcToRdr(0x6f, 3, new Uint8Array(65545))), 'stall');
});

test('malformed messages stall without answer', () => {
  const device = new CcidDevice();
  assert.equal(device.bulkOut(Uint8Array.of(0x65, 0, 0, 0, 0)), 'stall');
  const wrongLength = pcToRdr(0x6f, 4, Uint8Array.of(1, 2));
  wrongLength[1] = 4;
  assert.equal(device.bulkOut(wrongLength), 'stall');
  assert.equal(device.readBulkIn(64), undefined);
  // The next well-formed message is answered normally.
  assert.equal(device.bulkOut(pcToRdr(0x65, 5)), 'ok');
  assert.deepEqual([...readMessage(device)], [0x81, 0, 0, 0, 0, 0, 5, 0x02, 0, 0]);
});

test('unknown message type gets failed SlotStatus', () => {
  const device = new CcidDevice();
  assert.equal(device.bulkOut(pcToRdr(0x99, 6)), 'ok');
  assert.deepEqual([...readMessage(device)], [0x81, 0, 0, 0, 0, 0, 6, 0x42, 0x00, 0]);
});

test('bad slot gets bError 5', async () => {
  const device = new CcidDevice();
  const reader = new EchoReader();
  device.attach(reader);
  const cases: [number, number[]][] = [
    [0x65, [0x81, 0, 0, 0, 0, 3, 1, 0x42, 0x05, 0]],
    [0x6f, [0x80, 0, 0, 0, 0, 3, 1, 0x42, 0x05, 0]],
    [0x62, [0x80, 0, 0, 0, 0, 3, 1, 0x42, 0x05, 0]],
    [0x6c, [0x82, 0, 0, 0, 0, 3, 1, 0x42, 0x05, 0, 0x77, 0, 0, 0, 0, 0xfe, 0]],
    [0x6b, [0x81, 0, 0, 0, 0, 3, 1, 0x42, 0x05, 0]],
  ];
  for (const [type, expected] of cases) {
    assert.equal(device.bulkOut(pcToRdr(type, 1, type === 0x6f ? Uint8Array.of(0, 0xa4, 0, 0) : new Uint8Array(0), 3)), 'ok');
    await settle();
    assert.deepEqual([...readMessage(device)], expected, `message type ${type.toString(16)}`);
  }
  assert.equal(reader.transmitted, 0, 'nothing reaches the card');
});

test('zero-length packet after a message is ignored', () => {
  const device = new CcidDevice();
  assert.equal(device.bulkOut(new Uint8Array(0)), 'ok');
  assert.equal(device.readBulkIn(64), undefined);
});

test('removal answers pending XfrBlocks', async () => {
  const device = new CcidDevice();
  const reader = new EchoReader();
  // A card that never answers keeps the XfrBlock pending.
  reader.transmit = () => new Promise<Uint8Array>(() => undefined);
  device.attach(reader);
  assert.deepEqual([...device.readInterrupt()!], [0x50, 0x03]);
  assert.equal(device.bulkOut(pcToRdr(0x6f, 8, Uint8Array.of(0, 0xa4, 0, 0))), 'ok');
  await settle();
  assert.equal(device.readBulkIn(64), undefined);
  reader.remove();
  assert.deepEqual([...readMessage(device)], [0x80, 0, 0, 0, 0, 0, 8, 0x42, 0xfe, 0]);
  assert.deepEqual([...device.readInterrupt()!], [0x50, 0x02]);
  assert.equal(device.readInterrupt(), undefined);
});

test('detached reader leaves slot empty', () => {
  const device = new CcidDevice();
  const reader = new EchoReader();
  device.attach(reader);
  device.bulkOut(pcToRdr(0x62, 1));
  const powerOn = readMessage(device);
  assert.equal(powerOn[7], 0x00);
  assert.deepEqual(powerOn.subarray(10), ECHO_ATR);
  device.detach();
  device.bulkOut(pcToRdr(0x65, 2));
  assert.equal(readMessage(device)[7], 0x02);
  // A detached reader's events no longer reach the device.
  reader.remove();
  reader.insert();
  device.bulkOut(pcToRdr(0x65, 3));
  assert.equal(readMessage(device)[7], 0x02);
});

test('card error gives failed DataBlock', async () => {
  const device = new CcidDevice();
  const reader = new EchoReader();
  reader.transmit = () => Promise.reject(new Error('card went away'));
  device.attach(reader);
  device.bulkOut(pcToRdr(0x6f, 4, Uint8Array.of(0, 0xb0, 0, 0, 0)));
  await settle();
  assert.deepEqual([...readMessage(device)], [0x80, 0, 0, 0, 0, 0, 4, 0x40, 0x00, 0]);
});
