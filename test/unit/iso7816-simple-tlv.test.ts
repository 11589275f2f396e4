import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeSimpleTlv,
  encodeSimpleTlv,
  encodeSimpleTlvHeader,
  encodeSimpleTlvHeaders,
} from '../../src/iso7816/simple-tlv.js';

const hexOf = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

test('SimpleTLV header length forms', () => {
  assert.equal(hexOf(encodeSimpleTlvHeader(0x71, 1)), '7101');
  assert.equal(hexOf(encodeSimpleTlvHeader(0x70, 254)), '70fe');
  assert.equal(hexOf(encodeSimpleTlvHeader(0x70, 255)), '70ffff00');
  assert.equal(hexOf(encodeSimpleTlvHeader(0x70, 0x3b2)), '70ffb203');
  assert.equal(hexOf(encodeSimpleTlvHeader(0x70, 0xffff)), '70ffffff');
});

test('SimpleTLV rejects invalid tags and lengths', () => {
  assert.throws(() => encodeSimpleTlvHeader(0x00, 1), RangeError);
  assert.throws(() => encodeSimpleTlvHeader(0xff, 1), RangeError);
  assert.throws(() => encodeSimpleTlvHeader(0x70, 0x10000), RangeError);
});

test('SimpleTLV encode list and headers', () => {
  const objects = [
    { tag: 0x71, value: Uint8Array.of(0) },
    { tag: 0x70, value: new Uint8Array(300) },
    { tag: 0x72, value: new Uint8Array(0) },
  ];
  const encoded = encodeSimpleTlv(objects);
  assert.equal(encoded.length, 3 + 4 + 300 + 2);
  assert.equal(hexOf(encodeSimpleTlvHeaders(objects)), '710170ff2c017200');
});

test('SimpleTLV decode round trip', () => {
  const objects = [
    { tag: 0x01, value: Uint8Array.of(0x10, 2, 6, 2, 3) },
    { tag: 0x70, value: new Uint8Array(700).fill(7) },
    { tag: 0xfe, value: new Uint8Array(0) },
  ];
  const result = decodeSimpleTlv(encodeSimpleTlv(objects));
  assert.ok(result.ok);
  assert.equal(result.objects.length, 3);
  assert.equal(result.objects[1]!.value.length, 700);
  assert.equal(result.objects[2]!.tag, 0xfe);
});

test('SimpleTLV decode truncated input', () => {
  const header = decodeSimpleTlv(Uint8Array.of(0x01, 0x01, 0xaa, 0x02));
  assert.equal(header.ok, false);
  if (!header.ok) {
    assert.equal(header.error.reason, 'truncated-header');
    assert.equal(header.error.offset, 3);
    assert.equal(header.error.decoded.length, 1);
  }

  const longHeader = decodeSimpleTlv(Uint8Array.of(0x01, 0xff, 0x01));
  assert.equal(longHeader.ok, false);
  if (!longHeader.ok) assert.equal(longHeader.error.reason, 'truncated-header');

  const value = decodeSimpleTlv(Uint8Array.of(0x01, 0x05, 0xaa));
  assert.equal(value.ok, false);
  if (!value.ok) {
    assert.equal(value.error.reason, 'truncated-value');
    assert.match(value.error.message, /5 value bytes/);
  }
});

test('SimpleTLV decode empty input', () => {
  const result = decodeSimpleTlv(new Uint8Array(0));
  assert.ok(result.ok);
  assert.equal(result.objects.length, 0);
});
