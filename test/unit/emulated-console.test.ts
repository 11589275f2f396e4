import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { EmulatedReader } from '../../src/card/emulated-reader.js';
import { createCacCard } from '../../src/cac/index.js';
import { startCardConsole } from '../../src/cli/emulated-command.js';
import { MemoryKeyStore } from '../support/memory-key-store.js';

test('emulated stdin removes and inserts', async () => {
  const card = createCacCard(new MemoryKeyStore());
  const reader = new EmulatedReader('virtcard CAC', card);
  const events: string[] = [];
  reader.on('insert', () => events.push('insert'));
  reader.on('remove', () => events.push('remove'));
  const input = new PassThrough();
  let output = '';
  const lines = startCardConsole(input, reader, (text) => (output += text));

  input.end('remove\nremove\ninsert\n  insert  \n\nbogus\n');
  await once(lines, 'close');

  assert.deepEqual(events, ['remove', 'insert']);
  assert.equal(reader.insertedCard, card, 'the same card is back in the reader');
  const outputLines = output.split('\n');
  assert.equal(outputLines[0], 'remove virtcard CAC: card removed');
  assert.equal(outputLines[1], 'remove virtcard CAC: no card to remove');
  assert.equal(outputLines[2], 'insert virtcard CAC: card inserted');
  assert.equal(outputLines[3], 'insert virtcard CAC: a card is already present');
  assert.equal(outputLines[4], 'unknown command "bogus"');
  assert.match(output, /remove +take the card out of the reader/);
});

test('emulated stdin end keeps the card', async () => {
  const card = createCacCard(new MemoryKeyStore());
  const reader = new EmulatedReader('virtcard CAC', card);
  const input = new PassThrough();
  const lines = startCardConsole(input, reader, () => undefined);
  input.end();
  await once(lines, 'close');
  assert.equal(reader.insertedCard, card);
});
