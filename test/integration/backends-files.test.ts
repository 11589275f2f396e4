import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openKeyFiles } from '../../src/backends/files.js';
import { assertRawRsaDecrypts, assertRawRsaSigns, skipUnlessTools } from '../support/backends-checks.js';

const skip = skipUnlessTools('openssl');
const PIN = '1357';

let directory = '';
let certificatePem = '';
let keyPem = '';

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

before(() => {
  if (skip) return;
  directory = mkdtempSync(path.join(tmpdir(), 'virtcard-openssl-files-'));
  certificatePem = path.join(directory, 'cert.pem');
  keyPem = path.join(directory, 'key.pem');
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPem, '-out', certificatePem, '-subj', '/CN=OpenSSL Files Test', '-days', '30');
});

after(() => {
  if (directory !== '') rmSync(directory, { recursive: true, force: true });
});

test('OpenSSL PEM certificate and key', { skip }, async () => {
  const store = await openKeyFiles({ slots: [{ certificate: certificatePem, key: keyPem }], pin: PIN });
  const expected = execFileSync('openssl', ['x509', '-in', certificatePem, '-outform', 'DER']);
  assert.deepEqual(Buffer.from(store.slots[0]?.certificate ?? []), expected);
  assert.equal(await store.verifyPin(Buffer.from(PIN)), true);
  await assertRawRsaSigns(store, 0);
  await assertRawRsaDecrypts(store, 0);
});

// OpenSSL 3 writes PBES2 with AES-256-CBC and an HMAC-SHA-256 MAC by default; -legacy gives RC2/3DES with SHA-1.
for (const variant of ['default', 'legacy'] as const) {
  test(`OpenSSL PKCS#12 ${variant} encryption`, { skip }, async () => {
    const file = path.join(directory, `${variant}.p12`);
    const extra = variant === 'legacy' ? ['-legacy'] : [];
    openssl('pkcs12', '-export', ...extra, '-in', certificatePem, '-inkey', keyPem, '-out', file, '-passout', 'pass:export-secret', '-name', 'files test');

    const store = await openKeyFiles({ slots: [{ pkcs12: file, password: 'export-secret' }], pin: PIN });
    const expected = execFileSync('openssl', ['x509', '-in', certificatePem, '-outform', 'DER']);
    assert.deepEqual(Buffer.from(store.slots[0]?.certificate ?? []), expected);
    assert.equal(store.slots[0]?.label, variant);
    assert.equal(await store.verifyPin(Buffer.from(PIN)), true);
    await assertRawRsaSigns(store, 0);
    await assertRawRsaDecrypts(store, 0);

    await assert.rejects(openKeyFiles({ slots: [{ pkcs12: file, password: 'other' }], pin: PIN }), /is wrong/);
  });
}

test('OpenSSL PKCS#12 without password', { skip }, async () => {
  const file = path.join(directory, 'open.p12');
  openssl('pkcs12', '-export', '-in', certificatePem, '-inkey', keyPem, '-out', file, '-passout', 'pass:');
  const store = await openKeyFiles({ slots: [{ pkcs12: file }], pin: PIN });
  assert.equal(store.slots.length, 1);
  assert.equal(await store.verifyPin(Buffer.from(PIN)), true);
  await assertRawRsaSigns(store, 0);
});
