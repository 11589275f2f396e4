import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { findSoftokn, openNssDatabase } from '../../src/backends/nss.js';
import { KeyStoreError } from '../../src/backends/key-store.js';
import { assertRawRsaDecrypts, assertRawRsaSigns, sharedDirectory, skipUnlessTools } from '../support/backends-checks.js';

const fixtureDatabase = path.join(sharedDirectory, 'fixtures', 'nss-db');
const password = readFileSync(path.join(sharedDirectory, 'fixtures', 'nss-db-password.txt'), 'utf8').trim();
const nicknames = ['id-cert', 'signing-cert', 'encryption-cert'];

function softoknMissingReason(): string | false {
  try {
    findSoftokn();
    return false;
  } catch (error) {
    if (process.env['CI']) throw error;
    return (error as Error).message;
  }
}

const skip = skipUnlessTools('certutil') || softoknMissingReason();

function hashDirectory(directory: string): string {
  const hash = createHash('sha256');
  for (const name of readdirSync(directory).sort()) {
    hash.update(name).update(readFileSync(path.join(directory, name)));
  }
  return hash.digest('hex');
}

/** Copies the fixture database into a fresh temporary directory, so no test can change the shared one. */
function copyFixture(): { directory: string; remove: () => void } {
  const parent = mkdtempSync(path.join(tmpdir(), 'virtcard-nss-'));
  const directory = path.join(parent, 'db');
  cpSync(fixtureDatabase, directory, { recursive: true });
  return { directory, remove: () => rmSync(parent, { recursive: true, force: true }) };
}

test('NSS certificates match certutil output', { skip }, async () => {
  const copy = copyFixture();
  const store = await openNssDatabase({ directory: `sql:${copy.directory}`, nicknames });
  try {
    assert.deepEqual(store.slots.map((slot) => slot.label), nicknames);
    for (const slot of store.slots) {
      const expected = execFileSync('certutil', ['-L', '-d', `sql:${copy.directory}`, '-n', slot.label, '-r']);
      assert.deepEqual(Buffer.from(slot.certificate), expected, `certificate of ${slot.label}`);
      assert.equal(slot.keyType, 'rsa');
      assert.equal(slot.modulusBits, 2048);
    }
    assert.equal(store.description, `NSS database sql:${copy.directory}`);
    assert.equal(store.needsLogin, true);
  } finally {
    await store.close();
    copy.remove();
  }
});

test('NSS raw RSA signs and decrypts', { skip }, async () => {
  const copy = copyFixture();
  const store = await openNssDatabase({ directory: copy.directory, nicknames, password });
  try {
    assert.equal(await store.verifyPin(Buffer.from(password)), true);
    for (let index = 0; index < store.slots.length; index++) {
      await assertRawRsaSigns(store, index);
      await assertRawRsaDecrypts(store, index);
    }
  } finally {
    await store.close();
    copy.remove();
  }
});

test('NSS wrong password logs out', { skip }, async () => {
  const copy = copyFixture();
  const store = await openNssDatabase({ directory: copy.directory, nicknames });
  try {
    await assert.rejects(store.rsaPrivateRaw(0, new Uint8Array(256)), (error: unknown) => {
      assert.ok(error instanceof KeyStoreError);
      assert.equal(error.reason, 'not-logged-in');
      return true;
    });
    assert.equal(await store.verifyPin(Buffer.from(password)), true);
    assert.equal(await store.verifyPin(Buffer.from('87654321')), false);
    await assert.rejects(store.rsaPrivateRaw(0, new Uint8Array(256)), { reason: 'not-logged-in' });
  } finally {
    await store.close();
    copy.remove();
  }
});

test('NSS raw RSA rejects bad input', { skip }, async () => {
  const copy = copyFixture();
  const store = await openNssDatabase({ directory: copy.directory, nicknames, password });
  try {
    assert.equal(await store.verifyPin(Buffer.from(password)), true);
    await assert.rejects(store.rsaPrivateRaw(1, new Uint8Array(255)), { reason: 'invalid-input' });
    await assert.rejects(store.rsaPrivateRaw(1, new Uint8Array(256).fill(0xff)), { reason: 'invalid-input' });
    await assert.rejects(store.rsaPrivateRaw(3, new Uint8Array(256)), { reason: 'invalid-input' });
    // The store stays usable after rejected input.
    await assertRawRsaSigns(store, 1);
  } finally {
    await store.close();
    copy.remove();
  }
});

test('NSS open reports unknown nickname', { skip }, async () => {
  await assert.rejects(openNssDatabase({ directory: fixtureDatabase, nicknames: ['id-cert', 'no-such-cert'] }), (error: Error) => {
    assert.match(error.message, /"no-such-cert"/);
    assert.match(error.message, /"signing-cert"/);
    return true;
  });
});

test('NSS open reports wrong password', { skip }, async () => {
  const wrong = 'wrong-password-value';
  await assert.rejects(openNssDatabase({ directory: fixtureDatabase, nicknames, password: wrong }), (error: Error) => {
    assert.match(error.message, /password .* is wrong/);
    assert.ok(!error.message.includes(wrong), 'message leaves out the password');
    return true;
  });
});

test('NSS open reports bad database', { skip }, async () => {
  const empty = mkdtempSync(path.join(tmpdir(), 'virtcard-nss-empty-'));
  try {
    await assert.rejects(openNssDatabase({ directory: `sql:${empty}`, nicknames }), (error: Error) => {
      assert.match(error.message, /cert9\.db and key4\.db missing/);
      assert.ok(error.message.includes(empty));
      return true;
    });
    const absent = path.join(empty, 'absent');
    await assert.rejects(openNssDatabase({ directory: absent, nicknames }), new RegExp(`not found: ${absent}`));
    await assert.rejects(openNssDatabase({ directory: `dbm:${empty}`, nicknames }), /only sql databases/);

    writeFileSync(path.join(empty, 'cert9.db'), 'not a database');
    writeFileSync(path.join(empty, 'key4.db'), 'not a database');
    await assert.rejects(openNssDatabase({ directory: empty, nicknames }), /could not open the database .*damaged/);
    // The failed open released softokn, so the next database opens.
    const store = await openNssDatabase({ directory: fixtureDatabase, nicknames });
    await store.close();
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});

test('NSS store leaves the database unchanged', { skip }, async () => {
  assert.ok(existsSync(fixtureDatabase));
  const before = hashDirectory(fixtureDatabase);
  const store = await openNssDatabase({ directory: fixtureDatabase, nicknames, password });
  try {
    assert.equal(await store.verifyPin(Buffer.from('00000000')), false);
    assert.equal(await store.verifyPin(Buffer.from(password)), true);
    await assertRawRsaSigns(store, 0);
  } finally {
    await store.close();
  }
  assert.equal(hashDirectory(fixtureDatabase), before);
});

test('NSS database without password', { skip }, async () => {
  const parent = mkdtempSync(path.join(tmpdir(), 'virtcard-nss-empty-password-'));
  const database = `sql:${parent}`;
  const noise = path.join(parent, 'noise');
  writeFileSync(noise, randomBytes(2048));
  try {
    execFileSync('certutil', ['-N', '-d', database, '--empty-password']);
    execFileSync('certutil', ['-S', '-d', database, '-z', noise, '-x', '-t', ',,', '-s', 'CN=No Password', '-n', 'open-cert', '-v', '12', '-m', '7'], { stdio: 'ignore' });

    const store = await openNssDatabase({ directory: database, nicknames: ['open-cert'] });
    try {
      assert.equal(store.needsLogin, false);
      await assertRawRsaSigns(store, 0);
      assert.equal(await store.verifyPin(new Uint8Array(0)), true);
      assert.equal(await store.verifyPin(Buffer.from('12345678')), false);
      // As in libcacard, a rejected PIN does not lock a key that needs no login.
      await assertRawRsaDecrypts(store, 0);
    } finally {
      await store.close();
    }
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});
