import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bytesAvailable,
  describeStatusWord,
  formatStatusWord,
  verificationFailed,
  wrongLe,
} from '../../src/iso7816/status-words.js';
import { encodeResponseApdu, parseResponseApdu, statusWordOf } from '../../src/iso7816/response.js';

test('describeStatusWord fixed meanings', () => {
  assert.equal(describeStatusWord(0x9000), 'success');
  assert.equal(describeStatusWord(0x6a82), 'file or application not found');
  assert.equal(describeStatusWord(0x6700), 'wrong length');
  assert.equal(describeStatusWord(0x6983), 'authentication method blocked');
});

test('describeStatusWord parameterised words', () => {
  assert.equal(describeStatusWord(0x610d), '13 bytes available with GET RESPONSE');
  assert.equal(describeStatusWord(0x6100), '256 or more bytes available with GET RESPONSE');
  assert.equal(describeStatusWord(0x63c2), 'verification failed, 2 tries left');
  assert.equal(describeStatusWord(0x63c1), 'verification failed, 1 try left');
  assert.match(describeStatusWord(0x6c20), /32 bytes available/);
  assert.match(describeStatusWord(0x6a99), /wrong parameters/);
  assert.match(describeStatusWord(0x1234), /unknown status word 12 34/);
});

test('status word builders', () => {
  assert.equal(bytesAvailable(13), 0x610d);
  assert.equal(bytesAvailable(256), 0x6100);
  assert.equal(verificationFailed(3), 0x63c3);
  assert.equal(verificationFailed(20), 0x63cf);
  assert.equal(wrongLe(0x20), 0x6c20);
  assert.equal(formatStatusWord(0x6a82), '6A 82');
});

test('response encode and parse', () => {
  const encoded = encodeResponseApdu(Uint8Array.of(1, 2, 3), 0x9000);
  assert.deepEqual([...encoded], [1, 2, 3, 0x90, 0x00]);
  assert.deepEqual([...encodeResponseApdu(Uint8Array.of(1, 2, 3), 0x6108, 1)], [1, 0x61, 0x08]);
  const result = parseResponseApdu(encoded);
  assert.ok(result.ok);
  assert.equal(result.response.sw, 0x9000);
  assert.equal(result.response.data.length, 3);
  assert.equal(statusWordOf(encoded), 0x9000);
  assert.equal(parseResponseApdu(Uint8Array.of(0x90)).ok, false);
});
