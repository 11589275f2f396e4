import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  VPCD_MAX_PAYLOAD,
  VpcdFrameDecoder,
  VpcdPayloadTooLargeError,
  VpcdTruncatedFrameError,
  classifyVpcdMessage,
  encodeVpcdFrame,
} from '../../src/transports/vpcd-codec.js';

const SELECT = Uint8Array.from([0x00, 0xa4, 0x04, 0x00, 0x07, 0xa0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00]);

test('encode prefixes big-endian length', () => {
  const frame = encodeVpcdFrame(SELECT);
  assert.deepEqual([...frame.subarray(0, 2)], [0x00, 0x0c]);
  assert.deepEqual([...frame.subarray(2)], [...SELECT]);
});

test('encode accepts the maximum payload', () => {
  const frame = encodeVpcdFrame(new Uint8Array(VPCD_MAX_PAYLOAD));
  assert.equal(frame.readUInt16BE(0), 0xffff);
  assert.equal(frame.length, VPCD_MAX_PAYLOAD + 2);
});

test('encode rejects oversized payload', () => {
  assert.throws(() => encodeVpcdFrame(new Uint8Array(VPCD_MAX_PAYLOAD + 1)), VpcdPayloadTooLargeError);
});

test('decode survives every split point', () => {
  const stream = Buffer.concat([
    encodeVpcdFrame(Uint8Array.of(0x04)),
    encodeVpcdFrame(SELECT),
    encodeVpcdFrame(new Uint8Array(0)),
    encodeVpcdFrame(Uint8Array.of(0x01)),
  ]);
  for (let first = 0; first <= stream.length; first += 1) {
    for (let second = first; second <= stream.length; second += 1) {
      const decoder = new VpcdFrameDecoder();
      const payloads = [
        ...decoder.push(stream.subarray(0, first)),
        ...decoder.push(stream.subarray(first, second)),
        ...decoder.push(stream.subarray(second)),
      ];
      const split = `split at ${first} and ${second}`;
      assert.equal(payloads.length, 4, split);
      assert.deepEqual([...payloads[0]!], [0x04], split);
      assert.deepEqual([...payloads[1]!], [...SELECT], split);
      assert.equal(payloads[2]!.length, 0, split);
      assert.deepEqual([...payloads[3]!], [0x01], split);
      assert.equal(decoder.bufferedBytes, 0, split);
      decoder.end();
    }
  }
});

test('decode byte by byte', () => {
  const stream = Buffer.concat([encodeVpcdFrame(SELECT), encodeVpcdFrame(Uint8Array.of(0x02))]);
  const decoder = new VpcdFrameDecoder();
  const payloads: Buffer[] = [];
  for (const byte of stream) payloads.push(...decoder.push(Uint8Array.of(byte)));
  assert.equal(payloads.length, 2);
  assert.deepEqual([...payloads[0]!], [...SELECT]);
  assert.deepEqual([...payloads[1]!], [0x02]);
});

test('decode payload does not alias input', () => {
  const chunk = encodeVpcdFrame(SELECT);
  const [payload] = new VpcdFrameDecoder().push(chunk);
  chunk.fill(0xff);
  assert.deepEqual([...payload!], [...SELECT]);
});

test('end mid-frame raises truncated error', () => {
  const decoder = new VpcdFrameDecoder();
  decoder.push(encodeVpcdFrame(SELECT).subarray(0, 5));
  assert.equal(decoder.bufferedBytes, 5);
  assert.throws(
    () => decoder.end(),
    (error: unknown) => error instanceof VpcdTruncatedFrameError && error.bufferedBytes === 5,
  );
});

test('end after a lone length byte raises', () => {
  const decoder = new VpcdFrameDecoder();
  decoder.push(Uint8Array.of(0x00));
  assert.throws(() => decoder.end(), VpcdTruncatedFrameError);
});

test('classify control messages', () => {
  assert.deepEqual(classifyVpcdMessage(Uint8Array.of(0x00)), { kind: 'power-off' });
  assert.deepEqual(classifyVpcdMessage(Uint8Array.of(0x01)), { kind: 'power-on' });
  assert.deepEqual(classifyVpcdMessage(Uint8Array.of(0x02)), { kind: 'reset' });
  assert.deepEqual(classifyVpcdMessage(Uint8Array.of(0x04)), { kind: 'get-atr' });
  assert.deepEqual(classifyVpcdMessage(Uint8Array.of(0x03)), { kind: 'unknown-control', code: 3 });
});

test('classify empty and APDU messages', () => {
  assert.deepEqual(classifyVpcdMessage(new Uint8Array(0)), { kind: 'empty' });
  const message = classifyVpcdMessage(SELECT);
  assert.equal(message.kind, 'apdu');
  assert.deepEqual(message.kind === 'apdu' ? [...message.apdu] : [], [...SELECT]);
  assert.equal(classifyVpcdMessage(Uint8Array.of(0x00, 0x00)).kind, 'apdu');
});
