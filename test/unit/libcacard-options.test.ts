import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  EmulatorOptionsError,
  appendCertificateNames,
  parseEmulatorOptions,
  type EmulatorOptions,
} from '../../src/cli/libcacard-options.js';

function parseError(text: string): EmulatorOptionsError {
  try {
    parseEmulatorOptions(text);
  } catch (error) {
    assert.ok(error instanceof EmulatorOptionsError, `expected EmulatorOptionsError, got ${String(error)}`);
    return error;
  }
  assert.fail(`parsing ${JSON.stringify(text)} did not raise`);
}

const DEFAULTS: EmulatorOptions = {
  nssDatabase: undefined,
  useHardware: undefined,
  hardwareCardType: 'CAC',
  hardwareParams: undefined,
  softCards: [],
};

test('QEMU documentation example', () => {
  const options = parseEmulatorOptions(
    'db="sql:/tmp/nss db" use_hw=no soft=(,Test,CAC,,id-cert,signing-cert,encryption-cert)',
  );
  assert.deepEqual(options, {
    ...DEFAULTS,
    nssDatabase: 'sql:/tmp/nss db',
    useHardware: 'no',
    softCards: [
      {
        tokenName: '',
        readerName: 'Test',
        cardType: 'CAC',
        cardParams: '',
        certificateNicknames: ['id-cert', 'signing-cert', 'encryption-cert'],
      },
    ],
  });
});

test('empty string gives defaults', () => {
  assert.deepEqual(parseEmulatorOptions(''), DEFAULTS);
  assert.deepEqual(parseEmulatorOptions('  , ,\n'), DEFAULTS);
});

test('use_hw values', () => {
  const cases: [string, string][] = [
    ['no', 'no'],
    ['No', 'no'],
    ['n', 'no'],
    ['0', 'no'],
    ['False', 'no'],
    ['yes', 'yes'],
    ['1', 'yes'],
    ['true', 'yes'],
    ['f', 'yes'], // libcacard tests only the upper-case F
    ['removable', 'removable'],
  ];
  for (const [value, expected] of cases) {
    assert.equal(parseEmulatorOptions(`use_hw=${value}`).useHardware, expected, `use_hw=${value}`);
  }
});

test('tokens separated by commas', () => {
  const options = parseEmulatorOptions('use_hw=no,db="sql:/d",soft=(slot, Reader 1 ,cac,p, a , b c ,)');
  assert.equal(options.useHardware, 'no');
  assert.equal(options.nssDatabase, 'sql:/d');
  assert.deepEqual(options.softCards[0], {
    tokenName: 'slot',
    readerName: 'Reader 1',
    cardType: 'CAC',
    cardParams: 'p',
    certificateNicknames: ['a', 'b c'],
  });
});

test('several soft cards', () => {
  const options = parseEmulatorOptions('soft=(,R1,CAC,,a) soft=(,R2,CAC,,b,c)');
  assert.deepEqual(
    options.softCards.map((card) => [card.readerName, card.certificateNicknames]),
    [
      ['R1', ['a']],
      ['R2', ['b', 'c']],
    ],
  );
});

test('soft card with an extra closing parenthesis', () => {
  const options = parseEmulatorOptions('soft=(,R,CAC,,a)) use_hw=no');
  assert.deepEqual(options.softCards[0]?.certificateNicknames, ['a']);
  assert.equal(options.useHardware, 'no');
});

test('soft card with no certificates', () => {
  assert.deepEqual(parseEmulatorOptions('soft=(,R,CAC,,)').softCards[0]?.certificateNicknames, []);
});

test('db value may contain blanks and commas', () => {
  assert.equal(parseEmulatorOptions('db="/a b,c" use_hw=no').nssDatabase, '/a b,c');
});

test('db value ends at a newline', () => {
  const options = parseEmulatorOptions('db="/etc/pki\nuse_hw=no');
  assert.equal(options.nssDatabase, '/etc/pki');
  assert.equal(options.useHardware, 'no');
});

test('hardware options', () => {
  assert.deepEqual(parseEmulatorOptions('hw_type=cac hw_params=x=1'), {
    ...DEFAULTS,
    hardwareCardType: 'CAC',
    hardwareParams: 'x=1',
  });
  assert.deepEqual(parseEmulatorOptions('nssemul'), { ...DEFAULTS, useHardware: 'yes', hardwareCardType: 'CAC' });
  assert.deepEqual(parseEmulatorOptions('passthru'), { ...DEFAULTS, useHardware: 'yes', hardwareCardType: 'PASSTHRU' });
  assert.equal(parseEmulatorOptions('hw_type=CAC use_hw=no').useHardware, 'no');
});

test('rejects invalid strings', () => {
  const cases: [string, RegExp][] = [
    ['bogus', /unknown smartcard specification "bogus"/],
    ['use_hw=no frobnicate=1', /unknown smartcard specification "frobnicate=1"/],
    ['db=/etc/pki/nssdb', /you must quote the file path/],
    ['db="/etc/pki/nssdb', /missing closing quote/],
    ['db="/a" db="/b"', /redefinition of db=/],
    ['hw_params=a hw_params=b', /redefinition of hw_params=/],
    ['hw_type=PIV', /invalid smartcard type "PIV"/],
    ['hw_type=', /invalid smartcard type ""/],
    ['soft=,R,CAC,,a)', /expected "\(" after soft=/],
    ['soft=(,R,CAC)', /four fields/],
    ['soft=(,R', /four fields/],
    ['soft=(,R,CAC,', /four fields/],
    ['soft=(,R,CAC,,', /missing cert specification/],
    ['soft=(,R,CAC,,a,b', /missing "\)"/],
    ['soft=(,R,PASSTHRU,,a)', /invalid smartcard type "PASSTHRU" for a soft card: use CAC or PIV/],
    ['soft=(,R,XYZ,,a)', /invalid smartcard type "XYZ"/],
    ['soft=(,R,PASSTHRU,,a)', /invalid smartcard type "PASSTHRU" for a soft card/],
  ];
  for (const [text, message] of cases) {
    assert.match(parseError(text).message, message, text);
  }
});

test('error names the character position', () => {
  const error = parseError('use_hw=no bogus');
  assert.equal(error.offset, 10);
  assert.match(error.message, /at character 11/);
});

test('vscclient -c names become a soft card', () => {
  assert.equal(appendCertificateNames('use_hw=no', []), 'use_hw=no');
  assert.equal(appendCertificateNames(undefined, []), undefined);

  const built = appendCertificateNames(undefined, ['id-cert', 'signing-cert']);
  assert.equal(built, 'db="/etc/pki/nssdb",soft=(,Virtual Reader,CAC,,id-cert,signing-cert,)');
  assert.ok(built !== undefined);
  const options = parseEmulatorOptions(built);
  assert.equal(options.nssDatabase, '/etc/pki/nssdb');
  assert.deepEqual(options.softCards[0]?.readerName, 'Virtual Reader');
  assert.deepEqual(options.softCards[0]?.certificateNicknames, ['id-cert', 'signing-cert']);

  const withDb = parseEmulatorOptions(appendCertificateNames('db="sql:/x" use_hw=no', ['a'])!);
  assert.equal(withDb.nssDatabase, 'sql:/x');
  assert.equal(withDb.useHardware, 'no');
  assert.deepEqual(withDb.softCards[0]?.certificateNicknames, ['a']);
});
