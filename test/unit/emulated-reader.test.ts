import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EmulatedReader } from '../../src/card/emulated-reader.js';
import { NoCardError } from '../../src/reader/reader.js';
import { createCacCard } from '../../src/cac/index.js';
import { MemoryKeyStore } from '../support/memory-key-store.js';

const SELECT_CCC = Uint8Array.from(Buffer.from('00A4040007A000000116DB00', 'hex'));

test('EmulatedReader insert and remove events', async () => {
  const card = createCacCard(new MemoryKeyStore());
  const reader = new EmulatedReader('virtcard test');
  const events: string[] = [];
  reader.on('insert', () => events.push('insert'));
  reader.on('remove', () => events.push('remove'));
  reader.on('close', () => events.push('close'));

  assert.equal(reader.atr(), undefined);
  await assert.rejects(reader.transmit(SELECT_CCC), NoCardError);
  await assert.rejects(reader.reset('cold'), NoCardError);

  reader.insert(card);
  assert.deepEqual(reader.atr(), card.atr);
  assert.deepEqual(await reader.reset('warm'), card.atr);
  assert.deepEqual([...(await reader.transmit(SELECT_CCC))], [0x61, 0x0d]);

  reader.remove();
  await assert.rejects(reader.transmit(SELECT_CCC), NoCardError);
  reader.close();
  reader.close();
  assert.deepEqual(events, ['insert', 'remove', 'close']);
});

test('EmulatedReader keeps command order', async () => {
  const card = createCacCard(new MemoryKeyStore());
  const reader = new EmulatedReader('virtcard test', card);
  const verify = Uint8Array.from(Buffer.from('00200000083132333435363738', 'hex'));
  const status = Uint8Array.from([0x00, 0x20, 0x00, 0x00]);
  const [first, second] = await Promise.all([reader.transmit(verify), reader.transmit(status)]);
  assert.deepEqual([...first], [0x90, 0x00]);
  assert.deepEqual([...second], [0x90, 0x00], 'the status query runs after the VERIFY');
});

test('EmulatedReader rejects after removal mid-command', async () => {
  const card = createCacCard(new MemoryKeyStore());
  const reader = new EmulatedReader('virtcard test', card);
  const pending = reader.transmit(Uint8Array.from(Buffer.from('00200000083132333435363738', 'hex')));
  reader.remove();
  await assert.rejects(pending, NoCardError);
});
