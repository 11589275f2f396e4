import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { buildAtr, parseAtr } from '../../src/iso7816/atr.js';

const fromHex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex').toUpperCase();

// The ATR of libcacard's emulated CAC card: TA1 TB1 TC1, ten historical bytes, T=0 implied.
const CAC_ATR = '3B7A18000073667465206364313434';

describe('/iso7816/atr', () => {
  test('builds the CAC ATR', () => {
    const atr = buildAtr({
      ts: 0x3b,
      groups: [{ ta: 0x18, tb: 0x00, tc: 0x00 }],
      historical: new TextEncoder().encode('sfte cd144'),
    });
    assert.equal(toHex(atr), CAC_ATR);
  });

  test('parses the CAC ATR', () => {
    const result = parseAtr(fromHex(CAC_ATR));
    assert.ok(result.ok, result.ok ? '' : result.error.message);
    assert.deepEqual(result.atr.groups, [{ ta: 0x18, tb: 0x00, tc: 0x00 }]);
    assert.deepEqual(result.atr.protocols, [0]);
    assert.equal(result.atr.tck, undefined);
    assert.equal(new TextDecoder().decode(result.atr.historical), 'sfte cd144');
  });

  test('computes TCK for a T=1 ATR and round-trips it', () => {
    // T=0 and T=1 offered: TD1 = 80 (TD2 follows, T=0), TD2 = 01 (T=1).
    const fields = { ts: 0x3b as const, groups: [{ protocol: 0 }, { protocol: 1 }], historical: fromHex('8031') };
    const atr = buildAtr(fields);
    assert.equal(toHex(atr), '3B8280018031B2');
    let xor = 0;
    for (const byte of atr.subarray(1)) xor ^= byte;
    assert.equal(xor, 0);

    const parsed = parseAtr(atr);
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.atr.protocols, [0, 1]);
    assert.equal(parsed.atr.tck, 0xb2);
  });

  test('parses a real T=1 card ATR with TA2 and TCK', () => {
    // A Yubikey 5 NFC: 3B FD 13 00 00 81 31 FE 15 80 73 C0 21 C0 57 59 75 62 69 4B 65 79 40
    const result = parseAtr(fromHex('3BFD1300008131FE158073C021C057597562694B657940'));
    assert.ok(result.ok, result.ok ? '' : result.error.message);
    assert.deepEqual(result.atr.protocols, [1, 1]);
    assert.equal(result.atr.historical.length, 13);
  });

  const invalid: Array<[string, string, RegExp]> = [
    ['too short', '3B', /at least TS and T0/],
    ['bad TS', '3C00', /TS must be 3B/],
    ['missing historical bytes', '3B7A18000073', /announces 10 historical bytes/],
    ['ends inside interface bytes', '3B70', /ends inside interface group 1/],
    ['ends before TD1', '3B80', /ends before TD1/],
    ['missing TCK', '3B8001', /no TCK/],
    ['wrong TCK', '3B828001803191', /TCK 91 is wrong/],
    ['trailing bytes', '3B0000', /follow the end of the ATR/],
    ['longer than 33 bytes', '3B0F' + '00'.repeat(32), /allows 33/],
  ];
  for (const [name, atr, message] of invalid) {
    test(`rejects ATR: ${name}`, () => {
      const result = parseAtr(fromHex(atr));
      assert.equal(result.ok, false);
      if (!result.ok) assert.match(result.error.message, message);
    });
  }

  test('refuses to build more than 15 historical bytes', () => {
    assert.throws(() => buildAtr({ ts: 0x3b, groups: [], historical: new Uint8Array(16) }), /at most 15/);
  });
});
