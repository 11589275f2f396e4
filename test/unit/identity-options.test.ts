import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import {
  DEFAULT_PIN_RETRIES,
  IdentityOptionsError,
  addIdentityOptions,
  openIdentity,
  readPin,
  resolveIdentitySource,
  type IdentityOptions,
} from '../../src/cli/identity-options.js';

/** Parses `args` with the identity options the way a virtcard command does. */
function parse(args: string[]): IdentityOptions {
  const command = addIdentityOptions(new Command('test').exitOverride().configureOutput({ writeErr: () => {} }));
  command.parse(args, { from: 'user' });
  return command.opts<IdentityOptions>();
}

test('no options choose built-in identity', () => {
  const previous = process.env['VIRTCARD_DATA_DIR'];
  delete process.env['VIRTCARD_DATA_DIR'];
  try {
    const options = parse([]);
    assert.equal(options.pinRetries, DEFAULT_PIN_RETRIES);
    assert.deepEqual(resolveIdentitySource(options), { kind: 'builtin' });
  } finally {
    if (previous !== undefined) process.env['VIRTCARD_DATA_DIR'] = previous;
  }
});

test('data dir option and variable', () => {
  assert.deepEqual(resolveIdentitySource(parse(['--data-dir', '/tmp/x'])), { kind: 'builtin', dataDir: '/tmp/x' });

  const previous = process.env['VIRTCARD_DATA_DIR'];
  process.env['VIRTCARD_DATA_DIR'] = '/tmp/from-env';
  try {
    assert.deepEqual(resolveIdentitySource(parse([])), { kind: 'builtin', dataDir: '/tmp/from-env' });
  } finally {
    if (previous === undefined) delete process.env['VIRTCARD_DATA_DIR'];
    else process.env['VIRTCARD_DATA_DIR'] = previous;
  }
});

test('NSS database with repeated certs', () => {
  const source = resolveIdentitySource(parse(['--nss-db', 'sql:/db', '--cert', 'a', '--cert', 'b', '--cert', 'c']));
  assert.deepEqual(source, { kind: 'nss', directory: 'sql:/db', nicknames: ['a', 'b', 'c'] });
});

test('PKCS#11 module with token', () => {
  const source = resolveIdentitySource(parse(['--pkcs11-module', '/lib/m.so', '--token', 'T', '--cert', 'x']));
  assert.deepEqual(source, { kind: 'pkcs11', modulePath: '/lib/m.so', tokenLabel: 'T', labels: ['x'] });
});

test('file slots keep pair order', () => {
  const source = resolveIdentitySource(
    parse(['--cert-file', 'c1.pem', '--key-file', 'k1.pem', '--cert-file', 'c2.pem', '--key-file', 'k2.pem', '--pkcs12', 'p.p12']),
  );
  assert.deepEqual(source, {
    kind: 'files',
    certificateKeyPairs: [
      { certificate: 'c1.pem', key: 'k1.pem' },
      { certificate: 'c2.pem', key: 'k2.pem' },
    ],
    pkcs12Files: ['p.p12'],
  });
});

test('conflicting options are rejected', () => {
  const cases: Array<[string[], RegExp]> = [
    [['--nss-db', 'd', '--cert', 'a', '--pkcs11-module', 'm'], /--nss-db and --pkcs11-module/],
    [['--nss-db', 'd', '--cert', 'a', '--data-dir', 'x'], /--nss-db and --data-dir/],
    [['--pkcs12', 'p', '--pkcs11-module', 'm'], /--pkcs11-module and --cert-file/],
    [['--cert', 'a'], /add --nss-db or --pkcs11-module/],
    [['--cert-file', 'c', '--cert', 'a'], /add --nss-db or --pkcs11-module/],
    [['--token', 'T'], /add --pkcs11-module/],
    [['--pkcs12-password-file', 'f'], /add --pkcs12/],
    [['--nss-db', 'd'], /add --cert NICK/],
    [['--cert-file', 'c'], /1 --cert-file and 0 --key-file/],
    [['--key-file', 'k'], /0 --cert-file and 1 --key-file/],
  ];
  for (const [args, message] of cases) {
    assert.throws(
      () => resolveIdentitySource(parse(args)),
      (error: unknown) => error instanceof IdentityOptionsError && message.test(error.message),
      args.join(' '),
    );
  }
});

test('pin retries out of range', () => {
  for (const value of ['0', '16', '2.5', 'x']) {
    assert.throws(() => parse(['--pin-retries', value]), /invalid PIN retry count/, value);
  }
  assert.equal(parse(['--pin-retries', '5']).pinRetries, 5);
});

test('PIN file first line only', async () => {
  const directory = mkdtempSync(join(tmpdir(), 'virtcard-pin-'));
  const file = join(directory, 'pin');
  writeFileSync(file, '12345678\r\nsecond line\n');
  assert.equal(await readPin({ pinFile: file }), '12345678');
});

test('PIN errors omit the PIN', async () => {
  const directory = mkdtempSync(join(tmpdir(), 'virtcard-pin-'));
  const empty = join(directory, 'empty');
  writeFileSync(empty, '\n');
  await assert.rejects(readPin({ pinFile: empty }), /is empty/);
  await assert.rejects(readPin({ pinFile: join(directory, 'missing') }), /ENOENT/);
});

test('PIN from environment', async () => {
  const previous = process.env['VIRTCARD_PIN'];
  process.env['VIRTCARD_PIN'] = '4321';
  try {
    assert.equal(await readPin({}), '4321');
  } finally {
    if (previous === undefined) delete process.env['VIRTCARD_PIN'];
    else process.env['VIRTCARD_PIN'] = previous;
  }
});

test('key files need a PIN', async () => {
  const previous = process.env['VIRTCARD_PIN'];
  delete process.env['VIRTCARD_PIN'];
  try {
    await assert.rejects(
      openIdentity(parse(['--cert-file', 'c.pem', '--key-file', 'k.pem'])),
      (error: unknown) => error instanceof IdentityOptionsError && /--pin-file FILE/.test(error.message),
    );
  } finally {
    if (previous !== undefined) process.env['VIRTCARD_PIN'] = previous;
  }
});
