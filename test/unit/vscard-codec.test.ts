import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VscDecoder } from '../../src/vscard/decoder.js';
import { encodeMessage } from '../../src/vscard/encode.js';
import { VscProtocolError } from '../../src/vscard/errors.js';
import {
  MAX_PAYLOAD_LENGTH,
  UNDEFINED_READER_ID,
  VSCARD_VERSION,
  VscErrorCode,
  VscMessageType,
  errorCodeName,
  makeVersion,
  messageTypeName,
  type VscMessage,
} from '../../src/vscard/protocol.js';

function hex(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
}

const CAC_ATR = hex('3B 7A 18 00 00 73 66 74 65 20 63 64 31 34 34');

/** Every message type with its exact wire bytes (header: type, reader_id, length; all big-endian). */
const CASES: { message: VscMessage; wire: string }[] = [
  {
    message: { type: VscMessageType.Init, readerId: 0, version: 2, capabilities: [0] },
    wire: '00000001 00000000 0000000C 56534344 00000002 00000000',
  },
  {
    message: { type: VscMessageType.Init, readerId: UNDEFINED_READER_ID, version: 2, capabilities: [0, 0x01020304] },
    wire: '00000001 FFFFFFFF 00000010 56534344 00000002 00000000 01020304',
  },
  {
    message: { type: VscMessageType.Error, readerId: 0, code: VscErrorCode.Success },
    wire: '00000002 00000000 00000004 00000000',
  },
  {
    message: { type: VscMessageType.Error, readerId: UNDEFINED_READER_ID, code: VscErrorCode.CannotAddMoreReaders },
    wire: '00000002 FFFFFFFF 00000004 00000002',
  },
  {
    message: { type: VscMessageType.ReaderAdd, readerId: 0, name: '' },
    wire: '00000003 00000000 00000000',
  },
  {
    message: { type: VscMessageType.ReaderAdd, readerId: UNDEFINED_READER_ID, name: 'virtcard CAC' },
    wire: '00000003 FFFFFFFF 0000000C ' + Buffer.from('virtcard CAC').toString('hex'),
  },
  {
    message: { type: VscMessageType.ReaderRemove, readerId: 0 },
    wire: '00000004 00000000 00000000',
  },
  {
    message: { type: VscMessageType.Atr, readerId: 0, atr: CAC_ATR },
    wire: '00000005 00000000 0000000F 3B7A18000073667465206364313434',
  },
  {
    message: { type: VscMessageType.CardRemove, readerId: 0 },
    wire: '00000006 00000000 00000000',
  },
  {
    message: { type: VscMessageType.Apdu, readerId: 0, apdu: hex('00 A4 04 00 07 A0 00 00 01 16 DB 00') },
    wire: '00000007 00000000 0000000C 00A4040007A0000001 16DB00',
  },
  {
    message: { type: VscMessageType.Apdu, readerId: 0, apdu: hex('61 0D') },
    wire: '00000007 00000000 00000002 610D',
  },
  {
    message: { type: VscMessageType.Flush, readerId: 0 },
    wire: '00000008 00000000 00000000',
  },
  {
    message: { type: VscMessageType.FlushComplete, readerId: 7 },
    wire: '00000009 00000007 00000000',
  },
];

function header(type: number, readerId: number, length: number): Uint8Array {
  const bytes = new Uint8Array(12);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, type);
  view.setUint32(4, readerId);
  view.setUint32(8, length);
  return bytes;
}

function concat(parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}

function decodeError(bytes: Uint8Array): VscProtocolError {
  const decoder = new VscDecoder();
  try {
    decoder.decode(bytes);
  } catch (error) {
    assert.ok(error instanceof VscProtocolError, `expected VscProtocolError, got ${String(error)}`);
    return error;
  }
  assert.fail('decoding did not raise');
}

test('version constant is 0.0.2', () => {
  assert.equal(VSCARD_VERSION, 2);
  assert.equal(makeVersion(1, 2, 3), (1 << 21) | (2 << 10) | 3);
});

test('encoder writes exact wire bytes', () => {
  for (const { message, wire } of CASES) {
    assert.deepEqual(Buffer.from(encodeMessage(message)).toString('hex'), Buffer.from(hex(wire)).toString('hex'),
      messageTypeName(message.type));
  }
});

test('decoder reads every message type', () => {
  for (const { message, wire } of CASES) {
    const decoder = new VscDecoder();
    const decoded = decoder.decode(hex(wire));
    assert.equal(decoded.length, 1, messageTypeName(message.type));
    assert.deepEqual(decoded[0], message, messageTypeName(message.type));
    assert.equal(decoder.bufferedLength, 0);
    decoder.end();
  }
});

test('decoder handles byte-at-a-time feeding', () => {
  const stream = concat(CASES.map((entry) => hex(entry.wire)));
  const decoder = new VscDecoder();
  const decoded: VscMessage[] = [];
  for (const byte of stream) {
    decoder.push(Uint8Array.of(byte));
    for (let message = decoder.next(); message; message = decoder.next()) decoded.push(message);
  }
  assert.deepEqual(decoded, CASES.map((entry) => entry.message));
  decoder.end();
});

test('decoder handles coalesced messages', () => {
  const stream = concat(CASES.map((entry) => hex(entry.wire)));
  const decoded = new VscDecoder().decode(stream);
  assert.deepEqual(decoded, CASES.map((entry) => entry.message));
});

test('decoder handles arbitrary splits', () => {
  const stream = concat(CASES.map((entry) => hex(entry.wire)));
  // Deterministic pseudo-random split points, so a failure is reproducible.
  let seed = 12345;
  for (let round = 0; round < 50; round++) {
    const decoder = new VscDecoder();
    const decoded: VscMessage[] = [];
    let offset = 0;
    while (offset < stream.length) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      const size = 1 + (seed % 40);
      decoded.push(...decoder.decode(stream.subarray(offset, offset + size)));
      offset += size;
    }
    assert.deepEqual(decoded, CASES.map((entry) => entry.message), `round ${round}`);
  }
});

test('decoder keeps a partial message buffered', () => {
  const wire = hex(CASES[0]!.wire);
  const decoder = new VscDecoder();
  assert.deepEqual(decoder.decode(wire.subarray(0, 15)), []);
  assert.equal(decoder.bufferedLength, 15);
  assert.equal(decoder.decode(wire.subarray(15)).length, 1);
  assert.equal(decoder.bufferedLength, 0);
});

test('decoder accepts the maximum payload', () => {
  const apdu = new Uint8Array(MAX_PAYLOAD_LENGTH).fill(0xab);
  const wire = encodeMessage({ type: VscMessageType.Apdu, readerId: 0, apdu });
  const decoder = new VscDecoder();
  // Feeding in small pieces must stay fast even for the largest message.
  const decoded: VscMessage[] = [];
  for (let offset = 0; offset < wire.length; offset += 7) decoded.push(...decoder.decode(wire.subarray(offset, offset + 7)));
  assert.equal(decoded.length, 1);
  const message = decoded[0]!;
  assert.equal(message.type, VscMessageType.Apdu);
  if (message.type === VscMessageType.Apdu) assert.deepEqual(message.apdu, apdu);
});

test('decoder strips a NUL-terminated reader name', () => {
  const name = Buffer.from('virtcard-probe\0');
  const [message] = new VscDecoder().decode(concat([header(VscMessageType.ReaderAdd, UNDEFINED_READER_ID, name.length), name]));
  assert.deepEqual(message, { type: VscMessageType.ReaderAdd, readerId: UNDEFINED_READER_ID, name: 'virtcard-probe' });
});

test('decoder rejects unknown types', () => {
  for (const type of [0, 10, 0x100, 0xffffffff]) {
    const error = decodeError(header(type, 0, 0));
    assert.equal(error.kind, 'unknown-type', `type ${type}`);
    assert.match(error.message, new RegExp(`type ${type}\\b`));
  }
});

test('decoder rejects an oversized length from the header alone', () => {
  for (const length of [MAX_PAYLOAD_LENGTH + 1, 0x10000, 0xffffffff]) {
    const error = decodeError(header(VscMessageType.Apdu, 0, length));
    assert.equal(error.kind, 'payload-too-long', `length ${length}`);
    assert.match(error.message, /65524/);
  }
});

test('decoder rejects a wrong Init magic', () => {
  const wire = hex('00000001 FFFFFFFF 0000000C 56534345 00000002 00000000');
  const error = decodeError(wire);
  assert.equal(error.kind, 'bad-magic');
  assert.match(error.message, /56 53 43 45/);
});

test('decoder rejects a byte-swapped Init magic', () => {
  // A peer that ran the magic through htonl would send "DCSV".
  const error = decodeError(hex('00000001 00000000 0000000C 44435356 00000002 00000000'));
  assert.equal(error.kind, 'bad-magic');
});

test('decoder rejects payloads that do not fit the type', () => {
  const cases: [string, Uint8Array][] = [
    ['Init shorter than magic and version', concat([header(VscMessageType.Init, 0, 7), new Uint8Array(7)])],
    ['Init with a partial capability word', concat([header(VscMessageType.Init, 0, 10), hex('56534344 00000002 0000')])],
    ['Error with 3 bytes', concat([header(VscMessageType.Error, 0, 3), new Uint8Array(3)])],
    ['Error with 5 bytes', concat([header(VscMessageType.Error, 0, 5), new Uint8Array(5)])],
    ['ReaderRemove with payload', concat([header(VscMessageType.ReaderRemove, 0, 1), new Uint8Array(1)])],
    ['CardRemove with payload', concat([header(VscMessageType.CardRemove, 0, 2), new Uint8Array(2)])],
    ['Flush with payload', concat([header(VscMessageType.Flush, 0, 4), new Uint8Array(4)])],
    ['FlushComplete with payload', concat([header(VscMessageType.FlushComplete, 0, 1), new Uint8Array(1)])],
  ];
  for (const [name, wire] of cases) {
    assert.equal(decodeError(wire).kind, 'invalid-payload', name);
  }
});

test('decoder stays failed after an error', () => {
  const decoder = new VscDecoder();
  assert.throws(() => decoder.decode(header(42, 0, 0)), VscProtocolError);
  assert.throws(() => decoder.decode(hex(CASES[0]!.wire)), { name: 'VscProtocolError', message: /type 42/ });
  assert.throws(() => decoder.end(), { name: 'VscProtocolError' });
});

test('decoder returns messages before a bad one', () => {
  const decoder = new VscDecoder();
  decoder.push(concat([hex(CASES[0]!.wire), header(0x55, 0, 0)]));
  assert.deepEqual(decoder.next(), CASES[0]!.message);
  assert.throws(() => decoder.next(), { name: 'VscProtocolError' });
});

test('end reports a stream closed mid-message', () => {
  const wire = hex(CASES[7]!.wire);
  for (const cut of [1, 11, 12, 20]) {
    const decoder = new VscDecoder();
    decoder.push(wire.subarray(0, cut));
    assert.equal(decoder.next(), undefined);
    assert.throws(() => decoder.end(), { name: 'VscProtocolError', message: new RegExp(`${cut} bytes received`) }, `cut ${cut}`);
  }
});

test('encoder rejects a payload QEMU cannot take', () => {
  const apdu = new Uint8Array(MAX_PAYLOAD_LENGTH + 1);
  assert.throws(() => encodeMessage({ type: VscMessageType.Apdu, readerId: 0, apdu }), {
    name: 'VscProtocolError',
    message: /65525 bytes exceeds the 65524/,
  });
});

test('encoder rejects values outside uint32', () => {
  assert.throws(() => encodeMessage({ type: VscMessageType.CardRemove, readerId: -1 }), RangeError);
  assert.throws(() => encodeMessage({ type: VscMessageType.Error, readerId: 0, code: 2 ** 32 }), RangeError);
});

test('type and error code names', () => {
  assert.equal(messageTypeName(VscMessageType.Apdu), 'VSC_APDU');
  assert.equal(messageTypeName(VscMessageType.Atr), 'VSC_ATR');
  assert.equal(messageTypeName(VscMessageType.FlushComplete), 'VSC_FlushComplete');
  assert.equal(messageTypeName(0x2a), 'type 0x2A');
  assert.equal(errorCodeName(VscErrorCode.GeneralError), 'VSC_GENERAL_ERROR');
  assert.equal(errorCodeName(9), 'code 9');
});
