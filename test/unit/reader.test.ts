import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NoCardError } from '../../src/reader/reader.js';

test('NoCardError names the reader', () => {
  const error = new NoCardError('virtcard CAC');
  assert.match(error.message, /"virtcard CAC"/);
  assert.equal(error.name, 'NoCardError');
});
