import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAtr } from '../../src/iso7816/atr.js';
import { PIV_ATR } from '../../src/piv/constants.js';

test('PIV ATR offers T=0 first', () => {
  // QEMU's usb-ccid reader announces T=0 only, so the default protocol must be T=0.
  const parsed = parseAtr(PIV_ATR);
  assert.ok(parsed.ok, parsed.ok ? '' : parsed.error.message);
  assert.deepEqual(parsed.atr.protocols, [0, 1]);
});

test('PIV ATR names virtcard PIV', () => {
  const parsed = parseAtr(PIV_ATR);
  assert.ok(parsed.ok);
  assert.equal(Buffer.from(parsed.atr.historical).toString('latin1'), '\x80virtcardPIV');
});
