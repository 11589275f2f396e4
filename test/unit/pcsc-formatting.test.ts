import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatReaderList } from '../../src/cli/list-command.js';
import { wantsPcscRelay } from '../../src/cli/client-pcsc.js';
import { parseMultiString, SCARD_STATE_EMPTY, SCARD_STATE_INUSE, SCARD_STATE_PRESENT } from '../../src/pcsc/pcsc-lite.js';
import { describeReaderFlags } from '../../src/pcsc/reader-state.js';

test('reader list with and without card', () => {
  const text = formatReaderList([
    { name: 'Reader A 00 00', flags: SCARD_STATE_PRESENT | SCARD_STATE_INUSE, atr: Uint8Array.of(0x3b, 0x7a, 0x0f) },
    { name: 'Reader B 01 00', flags: SCARD_STATE_EMPTY, atr: new Uint8Array(0) },
  ]);
  assert.equal(text, '0: Reader A 00 00 (card present, in use)\n   ATR: 3B 7A 0F\n1: Reader B 01 00 (empty)\n');
});

test('reader list when empty', () => {
  assert.equal(formatReaderList([]), 'No PC/SC readers found.\n');
});

test('reader flags without known bits', () => {
  assert.equal(describeReaderFlags(0), 'state not reported');
});

test('multi-string reader names', () => {
  const names = parseMultiString(Buffer.from('Reader A 00 00\0Reader B 01 00\0\0', 'utf8'));
  assert.deepEqual(names, ['Reader A 00 00', 'Reader B 01 00']);
  assert.deepEqual(parseMultiString(Buffer.from('\0', 'utf8')), []);
});

test('client options selecting the relay', () => {
  const cases: [string, Parameters<typeof wantsPcscRelay>[0], boolean][] = [
    ['--pcsc alone', { pcsc: true }, true],
    ['--pcsc with names', { pcsc: ['Reader A'] }, true],
    ['-p', { p: true }, true],
    ['use_hw=yes', { e: 'use_hw=yes', c: [] }, true],
    ['passthru', { e: 'passthru', c: [] }, true],
    ['use_hw=removable', { e: 'use_hw=removable', c: [] }, true],
    ['use_hw=yes with -c', { e: 'use_hw=yes', c: ['id-cert'] }, false],
    ['use_hw=no soft card', { e: 'use_hw=no soft=(,R,CAC,,a)', c: [] }, false],
    ['use_hw=yes with soft card', { e: 'use_hw=yes soft=(,R,CAC,,a)', c: [] }, false],
    ['invalid -e', { e: 'bogus', c: [] }, false],
    ['nothing', { c: [] }, false],
  ];
  for (const [name, options, expected] of cases) {
    assert.equal(wantsPcscRelay(options), expected, name);
  }
});
