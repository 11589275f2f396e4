import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeCommandApdu, parseCommandApdu, type CommandApdu } from '../../src/iso7816/apdu.js';

function hex(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
}

function parsed(text: string): CommandApdu {
  const result = parseCommandApdu(hex(text));
  assert.ok(result.ok, `expected ${text} to parse`);
  return result.apdu;
}

function rejected(bytes: Uint8Array): string {
  const result = parseCommandApdu(bytes);
  assert.equal(result.ok, false, `expected ${Buffer.from(bytes).toString('hex')} to be rejected`);
  return result.ok ? '' : result.error.reason;
}

test('parse rejects fewer than 4 bytes', () => {
  assert.equal(rejected(new Uint8Array(0)), 'header-too-short');
  assert.equal(rejected(hex('00')), 'header-too-short');
  assert.equal(rejected(hex('00a404')), 'header-too-short');
});

test('parse case 1', () => {
  const apdu = parsed('80 56 01 00');
  assert.equal(apdu.apduCase, 1);
  assert.equal(apdu.cla, 0x80);
  assert.equal(apdu.ins, 0x56);
  assert.equal(apdu.p1, 0x01);
  assert.equal(apdu.p2, 0x00);
  assert.equal(apdu.le, 0);
  assert.equal(apdu.data.length, 0);
});

test('parse case 2 short, Le 00 is 256', () => {
  assert.equal(parsed('00 C0 00 00 0D').le, 13);
  const apdu = parsed('00 C0 00 00 00');
  assert.equal(apdu.apduCase, 2);
  assert.equal(apdu.le, 256);
  assert.equal(apdu.extended, false);
});

test('parse case 3 short with data view', () => {
  const raw = hex('00 A4 04 00 07 A0 00 00 01 16 DB 00');
  const result = parseCommandApdu(raw);
  assert.ok(result.ok);
  assert.equal(result.apdu.apduCase, 3);
  assert.equal(result.apdu.le, 0);
  assert.deepEqual([...result.apdu.data], [...hex('A0 00 00 01 16 DB 00')]);
  assert.equal(result.apdu.data.buffer, raw.buffer, 'data must be a view of the input');
});

test('parse case 4 short, Le 00 is 256', () => {
  const apdu = parsed('00 A4 04 00 07 A0 00 00 01 16 DB 00 00');
  assert.equal(apdu.apduCase, 4);
  assert.equal(apdu.le, 256);
  assert.equal(parsed('00 42 00 00 01 AA FF').le, 255);
});

test('parse short length mismatches', () => {
  assert.equal(rejected(hex('00 A4 04 00 07 A0 00 00')), 'length-mismatch');
  assert.equal(rejected(hex('00 A4 04 00 07 A0 00 00 01 16 DB 00 00 00')), 'length-mismatch');
  assert.equal(rejected(hex('00 A4 04 00 02 A0 00 00 01 16 DB 00')), 'length-mismatch');
  assert.equal(rejected(hex('80 52 00 00 02 01')), 'length-mismatch');
});

test('parse case 2 extended, Le 0000 is 65536', () => {
  const apdu = parsed('00 C0 00 00 00 00 05');
  assert.equal(apdu.apduCase, 2);
  assert.equal(apdu.extended, true);
  assert.equal(apdu.le, 5);
  assert.equal(parsed('00 A4 04 00 00 00 00').le, 65536);
});

test('parse case 3 and 4 extended', () => {
  const three = parsed('00 A4 04 00 00 00 07 A0 00 00 01 16 DB 00');
  assert.equal(three.apduCase, 3);
  assert.equal(three.data.length, 7);
  assert.equal(three.le, 0);

  const four = parsed('00 A4 04 00 00 00 07 A0 00 00 00 79 01 01 00 0D');
  assert.equal(four.apduCase, 4);
  assert.equal(four.le, 13);
  assert.equal(parsed('00 A4 04 00 00 00 07 A0 00 00 00 79 01 01 00 00').le, 65536);
});

test('parse extended length errors', () => {
  assert.equal(rejected(hex('80 56 01 00 00 00')), 'extended-length-truncated');
  assert.equal(rejected(hex('80 56 01 00 00 00 00 00')), 'extended-lc-zero');
  assert.equal(rejected(hex('00 A4 04 00 00 00 00 A0')), 'extended-lc-zero');
  assert.equal(rejected(hex('00 A4 04 00 00 00 07 A0 00 00')), 'length-mismatch');
  assert.equal(rejected(hex('00 A4 04 00 00 00 07 A0 00 00 01 16 DB 00 00')), 'length-mismatch');
});

test('parse 4 KiB extended body', () => {
  const raw = new Uint8Array(7 + 4096);
  raw.set([0x80, 0x56, 0x01, 0x00, 0x00, 0x10, 0x00]);
  const result = parseCommandApdu(raw);
  assert.ok(result.ok);
  assert.equal(result.apdu.data.length, 4096);
  assert.equal(result.apdu.apduCase, 3);
});

test('parse error message names the lengths', () => {
  const result = parseCommandApdu(hex('00 A4 04 00 FF A0 00'));
  assert.equal(result.ok, false);
  if (!result.ok) {
    assert.match(result.error.message, /255/);
    assert.equal(result.error.length, 7);
  }
});

test('encode picks short and extended forms', () => {
  assert.equal(Buffer.from(encodeCommandApdu({ cla: 0, ins: 0xa4, p1: 4, p2: 0 })).toString('hex'), '00a40400');
  assert.equal(Buffer.from(encodeCommandApdu({ cla: 0, ins: 0xc0, p1: 0, p2: 0, le: 256 })).toString('hex'), '00c0000000');
  assert.equal(
    Buffer.from(encodeCommandApdu({ cla: 0, ins: 0xa4, p1: 4, p2: 0, data: hex('A0 00'), le: 256 })).toString('hex'),
    '00a4040002a00000',
  );
  assert.equal(Buffer.from(encodeCommandApdu({ cla: 0, ins: 0xc0, p1: 0, p2: 0, le: 65536 })).toString('hex'), '00c00000000000');
  assert.equal(
    Buffer.from(encodeCommandApdu({ cla: 0x80, ins: 0x42, p1: 0, p2: 0, data: hex('01 02'), le: 300 })).toString('hex'),
    '80420000000002010201' + '2c',
  );
});

test('encode then parse round trip', () => {
  const data = new Uint8Array(256).fill(0xab);
  for (const fields of [
    { cla: 0x80, ins: 0x42, p1: 0, p2: 0, data, le: 65536 },
    { cla: 0x80, ins: 0x42, p1: 0x80, p2: 0, data: data.subarray(0, 240), le: 255 },
    { cla: 0, ins: 0x20, p1: 0, p2: 0, data: data.subarray(0, 8) },
    { cla: 0, ins: 0xc0, p1: 0, p2: 0, le: 13, extended: true },
  ]) {
    const result = parseCommandApdu(encodeCommandApdu(fields));
    assert.ok(result.ok);
    assert.equal(result.apdu.data.length, fields.data?.length ?? 0);
    assert.equal(result.apdu.le, fields.le ?? 0);
  }
});

test('encode rejects impossible fields', () => {
  assert.throws(() => encodeCommandApdu({ cla: 256, ins: 0, p1: 0, p2: 0 }), RangeError);
  assert.throws(() => encodeCommandApdu({ cla: 0, ins: 0, p1: 0, p2: 0, le: 65537 }), RangeError);
  assert.throws(() => encodeCommandApdu({ cla: 0, ins: 0, p1: 0, p2: 0, data: new Uint8Array(65536) }), RangeError);
});
