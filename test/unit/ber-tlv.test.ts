import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeBerTlv, encodeBerLength, encodeBerTlv, findBerTlv } from '../../src/iso7816/ber-tlv.js';

const fromHex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex').toUpperCase();

describe('/iso7816/ber-tlv', () => {
  test('decodes an FCI template with a nested AID', () => {
    const result = decodeBerTlv(fromHex('6F0B8407A0000000790100A500'));
    assert.ok(result.ok);
    const [fci] = result.objects;
    assert.equal(fci?.tag, 0x6f);
    assert.equal(fci?.children?.length, 2);
    assert.equal(toHex(findBerTlv(result.objects, 0x84)!.value), 'A0000000790100');
    assert.equal(findBerTlv(result.objects, 0xa5)!.value.length, 0);
  });

  test('decodes multi-byte tags', () => {
    const result = decodeBerTlv(fromHex('5FC10503010203'));
    assert.ok(result.ok);
    assert.equal(result.objects[0]?.tag, 0x5fc105);
    assert.equal(toHex(result.objects[0]?.value ?? new Uint8Array()), '010203');
  });

  test('encodes lengths in the shortest form', () => {
    assert.deepEqual(encodeBerLength(0x7f), [0x7f]);
    assert.deepEqual(encodeBerLength(0x80), [0x81, 0x80]);
    assert.deepEqual(encodeBerLength(0x100), [0x82, 0x01, 0x00]);
    assert.deepEqual(encodeBerLength(0x10000), [0x83, 0x01, 0x00, 0x00]);
  });

  test('round-trips a 300-byte value', () => {
    const value = new Uint8Array(300).fill(0xab);
    const encoded = encodeBerTlv({ tag: 0x53, value });
    assert.equal(toHex(encoded.subarray(0, 4)), '5382012C');
    const result = decodeBerTlv(encoded);
    assert.ok(result.ok);
    assert.deepEqual(result.objects[0]?.value, value);
  });

  test('encodes constructed objects from children', () => {
    const encoded = encodeBerTlv({
      tag: 0x7c,
      value: new Uint8Array(),
      children: [{ tag: 0x82, value: new Uint8Array() }, { tag: 0x81, value: fromHex('0102') }],
    });
    assert.equal(toHex(encoded), '7C06820081020102');
  });

  test('skips 00 and FF padding between objects', () => {
    const result = decodeBerTlv(fromHex('00FF8001AA00'));
    assert.ok(result.ok);
    assert.equal(result.objects.length, 1);
  });

  const invalid: Array<[string, string, RegExp]> = [
    ['value longer than input', '5305AABB', /announces 5 bytes but 2 remain/],
    ['missing length', '53', /ends before the length/],
    ['truncated long length', '5382', /inside a length field/],
    ['indefinite length', '5380', /not 00-7F or 81-84/],
    ['unterminated tag', '5FC1', /ends inside a tag/],
    ['five-byte tag', '5F8181818101', /longer than 4 bytes/],
    ['bad child inside constructed', '7003530599', /announces 5 bytes/],
  ];
  for (const [name, input, message] of invalid) {
    test(`rejects BER-TLV: ${name}`, () => {
      const result = decodeBerTlv(fromHex(input));
      assert.equal(result.ok, false);
      if (!result.ok) assert.match(result.error.message, message);
    });
  }

  test('rejects nesting deeper than 32 levels', () => {
    let encoded = encodeBerTlv({ tag: 0x80, value: new Uint8Array() });
    for (let level = 0; level < 40; level++) encoded = encodeBerTlv({ tag: 0x70, value: encoded });
    const result = decodeBerTlv(encoded);
    assert.equal(result.ok, false);
    if (!result.ok) assert.match(result.error.message, /deeper than 32/);
  });
});
