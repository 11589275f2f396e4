import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { builtinIdentityDirectory, openBuiltinIdentity, type BuiltinIdentity } from '../../src/backends/builtin.js';
import { assertRawRsaDecrypts, assertRawRsaSigns } from '../support/backends-checks.js';

let root = '';
/** An identity generated once with a random PIN and shared by the tests that only read it. */
let generated: BuiltinIdentity;
let generatedDataDir = '';

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'virtcard-builtin-'));
  generatedDataDir = path.join(root, 'random-pin');
  generated = await openBuiltinIdentity({ dataDir: generatedDataDir });
});

after(async () => {
  await generated.store.close();
  rmSync(root, { recursive: true, force: true });
});

test('builtin identity first open', () => {
  assert.equal(generated.created, true);
  assert.match(generated.pin ?? '', /^\d{8}$/);
  assert.equal(generated.directory, path.join(generatedDataDir, 'identity'));
  assert.equal(generated.caCertificatePath, path.join(generated.directory, 'ca-cert.pem'));
  assert.deepEqual(generated.store.slots.map((slot) => slot.label), ['id-cert', 'signing-cert', 'encryption-cert']);
  assert.match(generated.store.description, /built-in test identity/);
});

test('builtin identity certificates', () => {
  const authority = new X509Certificate(readFileSync(generated.caCertificatePath));
  assert.equal(authority.subject, 'CN=Fake Smart Card CA');
  assert.equal(authority.ca, true);

  const subjects = ['CN=John Doe', 'CN=John Doe (signing)', 'CN=John Doe (encryption)'];
  generated.store.slots.forEach((slot, index) => {
    const certificate = new X509Certificate(Buffer.from(slot.certificate));
    assert.equal(certificate.subject, subjects[index]);
    assert.equal(certificate.issuer, 'CN=Fake Smart Card CA');
    assert.equal(certificate.ca, false);
    assert.ok(certificate.verify(authority.publicKey), `${slot.label} is signed by the CA`);
    assert.equal(slot.keyType, 'rsa');
    assert.equal(slot.modulusBits, 2048);
  });
  assert.deepEqual(new X509Certificate(Buffer.from(generated.store.slots[1]?.certificate ?? [])).keyUsage, ['1.3.6.1.5.5.7.3.4']);
  assert.deepEqual(new X509Certificate(Buffer.from(generated.store.slots[2]?.certificate ?? [])).keyUsage, ['1.3.6.1.5.5.7.3.2']);
});

test('builtin identity file modes', () => {
  assert.equal(statSync(generated.directory).mode & 0o777, 0o700);
  const files = readdirSync(generated.directory).sort();
  assert.deepEqual(files, [
    'ca-cert.pem',
    'encryption-cert.pem',
    'encryption-key.pem',
    'id-cert.pem',
    'id-key.pem',
    'pin-hash.json',
    'signing-cert.pem',
    'signing-key.pem',
  ]);
  for (const file of files) {
    assert.equal(statSync(path.join(generated.directory, file)).mode & 0o777, 0o600, file);
  }
  const pinHash = readFileSync(path.join(generated.directory, 'pin-hash.json'), 'utf8');
  assert.ok(!pinHash.includes(generated.pin ?? ''), 'the PIN hash file leaves out the PIN');
});

test('builtin identity PIN and keys', async () => {
  const store = generated.store;
  const wrongPin = generated.pin === '00000000' ? '11111111' : '00000000';
  await assert.rejects(store.rsaPrivateRaw(0, new Uint8Array(256)), { reason: 'not-logged-in' });
  assert.equal(await store.verifyPin(Buffer.from(wrongPin)), false);
  assert.equal(await store.verifyPin(Buffer.from(generated.pin ?? '')), true);
  for (let index = 0; index < store.slots.length; index++) {
    await assertRawRsaSigns(store, index);
    await assertRawRsaDecrypts(store, index);
  }
});

test('builtin identity reopen reuses files', async () => {
  const reopened = await openBuiltinIdentity({ dataDir: generatedDataDir });
  try {
    assert.equal(reopened.created, false);
    assert.equal(reopened.pin, undefined);
    assert.deepEqual(
      reopened.store.slots.map((slot) => Buffer.from(slot.certificate)),
      generated.store.slots.map((slot) => Buffer.from(slot.certificate)),
    );
    assert.equal(await reopened.store.verifyPin(Buffer.from(generated.pin ?? '')), true);
  } finally {
    await reopened.store.close();
  }

  const samePin = await openBuiltinIdentity({ dataDir: generatedDataDir, pin: generated.pin ?? '' });
  assert.equal(samePin.created, false);
  assert.equal(samePin.pin, undefined);
  await samePin.store.close();
});

test('builtin identity rejects other PIN', async () => {
  const other = generated.pin === '13572468' ? '86427531' : '13572468';
  await assert.rejects(openBuiltinIdentity({ dataDir: generatedDataDir, pin: other }), (error: Error) => {
    assert.match(error.message, /has a different PIN/);
    assert.ok(error.message.includes(`delete ${generated.directory}`), 'message says how to reset');
    assert.ok(!error.message.includes(other), 'message leaves out the PIN');
    return true;
  });
});

test('builtin identity with chosen PIN', async () => {
  const identity = await openBuiltinIdentity({ dataDir: path.join(root, 'chosen-pin'), pin: '4321' });
  try {
    assert.equal(identity.created, true);
    assert.equal(identity.pin, '4321');
    assert.equal(await identity.store.verifyPin(Buffer.from('1234')), false);
    assert.equal(await identity.store.verifyPin(Buffer.from('4321')), true);
    await assertRawRsaSigns(identity.store, 0);
  } finally {
    await identity.store.close();
  }
});

test('builtin identity rejects long PIN', async () => {
  await assert.rejects(openBuiltinIdentity({ dataDir: path.join(root, 'long-pin'), pin: '123456789' }), /9 bytes long; it must be 4 to 8 bytes/);
  await assert.rejects(openBuiltinIdentity({ dataDir: path.join(root, 'empty-pin'), pin: '' }), /0 bytes long/);
});

test('builtin identity reports missing files', async () => {
  const broken = path.join(root, 'broken');
  cpSync(generatedDataDir, broken, { recursive: true });
  rmSync(path.join(broken, 'identity', 'signing-key.pem'));
  await assert.rejects(openBuiltinIdentity({ dataDir: broken }), (error: Error) => {
    assert.match(error.message, /incomplete: signing-key\.pem is missing/);
    assert.match(error.message, /delete the directory/);
    return true;
  });
});

test('builtin identity default directory', () => {
  const saved = { data: process.env['VIRTCARD_DATA_DIR'], xdg: process.env['XDG_DATA_HOME'] };
  try {
    process.env['VIRTCARD_DATA_DIR'] = '/srv/virtcard-data';
    process.env['XDG_DATA_HOME'] = '/home/test/.data';
    assert.equal(builtinIdentityDirectory(), '/srv/virtcard-data/identity');
    delete process.env['VIRTCARD_DATA_DIR'];
    assert.equal(builtinIdentityDirectory(), '/home/test/.data/virtcard/identity');
    delete process.env['XDG_DATA_HOME'];
    assert.equal(builtinIdentityDirectory(), path.join(os.homedir(), '.local', 'share', 'virtcard', 'identity'));
    assert.equal(builtinIdentityDirectory('/tmp/explicit'), '/tmp/explicit/identity');
  } finally {
    for (const [name, value] of [['VIRTCARD_DATA_DIR', saved.data], ['XDG_DATA_HOME', saved.xdg]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
});
