import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import forge from 'node-forge';
import { openKeyFiles } from '../../src/backends/files.js';
import { KeyStoreError } from '../../src/backends/key-store.js';
import { assertRawRsaDecrypts, assertRawRsaSigns } from '../support/backends-checks.js';

const PIN = '24682468';

let directory = '';

interface TestIdentity {
  privateKey: KeyObject;
  certificateDer: Buffer;
  forgeKey: forge.pki.rsa.PrivateKey;
  forgeCertificate: forge.pki.Certificate;
}

/** Creates an RSA-2048 key with node:crypto and a self-signed certificate for it with node-forge. */
function createIdentity(commonName: string): TestIdentity {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const forgeKey = forge.pki.privateKeyFromPem(privateKey.export({ format: 'pem', type: 'pkcs1' }).toString());
  const forgeCertificate = forge.pki.createCertificate();
  forgeCertificate.publicKey = forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e);
  forgeCertificate.serialNumber = '01';
  forgeCertificate.validity.notBefore = new Date();
  forgeCertificate.validity.notAfter = new Date(Date.now() + 86_400_000);
  forgeCertificate.setSubject([{ name: 'commonName', value: commonName }]);
  forgeCertificate.setIssuer([{ name: 'commonName', value: commonName }]);
  forgeCertificate.sign(forgeKey, forge.md.sha256.create());
  const certificateDer = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(forgeCertificate)).getBytes(), 'binary');
  return { privateKey, certificateDer, forgeKey, forgeCertificate };
}

function writeFile(name: string, content: string | Buffer): string {
  const file = path.join(directory, name);
  writeFileSync(file, content);
  return file;
}

function writePkcs12(name: string, identity: TestIdentity, password: string, algorithm: '3des' | 'aes256', chain: forge.pki.Certificate[] = []): string {
  const asn1 = forge.pkcs12.toPkcs12Asn1(identity.forgeKey, [identity.forgeCertificate, ...chain], password, { algorithm });
  return writeFile(name, Buffer.from(forge.asn1.toDer(asn1).getBytes(), 'binary'));
}

let first: TestIdentity;
let second: TestIdentity;

before(() => {
  directory = mkdtempSync(path.join(tmpdir(), 'virtcard-files-'));
  first = createIdentity('Files Test One');
  second = createIdentity('Files Test Two');
});

after(() => {
  rmSync(directory, { recursive: true, force: true });
});

test('key files in PEM and DER', async () => {
  const pemCertificate = writeFile('one.pem', new X509Certificate(first.certificateDer).toString());
  const pkcs8Key = writeFile('one-key.pem', first.privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const derCertificate = writeFile('two.der', second.certificateDer);
  const pkcs1DerKey = writeFile('two-key.der', second.privateKey.export({ format: 'der', type: 'pkcs1' }));

  const store = await openKeyFiles({
    slots: [
      { certificate: pemCertificate, key: pkcs8Key },
      { certificate: derCertificate, key: pkcs1DerKey },
    ],
    pin: PIN,
  });

  assert.deepEqual(store.slots.map((slot) => slot.label), ['one', 'two']);
  assert.deepEqual(Buffer.from(store.slots[0]?.certificate ?? []), first.certificateDer);
  assert.deepEqual(Buffer.from(store.slots[1]?.certificate ?? []), second.certificateDer);
  assert.equal(store.slots[0]?.modulusBits, 2048);
  assert.equal(await store.verifyPin(Buffer.from(PIN)), true);
  for (const index of [0, 1]) {
    await assertRawRsaSigns(store, index);
    await assertRawRsaDecrypts(store, index);
  }
  await store.close();
  await assert.rejects(store.rsaPrivateRaw(0, new Uint8Array(256)), /is closed/);
});

test('key files with PKCS#1 PEM key', async () => {
  const certificate = writeFile('pkcs1.crt', new X509Certificate(first.certificateDer).toString());
  const key = writeFile('pkcs1-key.pem', first.privateKey.export({ format: 'pem', type: 'pkcs1' }));
  const store = await openKeyFiles({ slots: [{ certificate, key }], pin: PIN });
  assert.equal(store.slots[0]?.label, 'pkcs1');
  assert.equal(await store.verifyPin(Buffer.from(PIN)), true);
  await assertRawRsaSigns(store, 0);
});

test('PKCS#12 files with both ciphers', async () => {
  const authority = createIdentity('Files Test Authority');
  const tripleDes = writePkcs12('legacy.p12', first, 'secret-one', '3des');
  const aes = writePkcs12('modern.pfx', second, 'secret-two', 'aes256', [authority.forgeCertificate]);

  const store = await openKeyFiles({
    slots: [
      { pkcs12: tripleDes, password: 'secret-one' },
      { pkcs12: aes, password: 'secret-two' },
    ],
    pin: PIN,
  });

  assert.deepEqual(store.slots.map((slot) => slot.label), ['legacy', 'modern']);
  assert.deepEqual(Buffer.from(store.slots[0]?.certificate ?? []), first.certificateDer);
  assert.deepEqual(Buffer.from(store.slots[1]?.certificate ?? []), second.certificateDer, 'the key holder, not the chain certificate');
  assert.equal(await store.verifyPin(Buffer.from(PIN)), true);
  await assertRawRsaSigns(store, 1);
  await assertRawRsaDecrypts(store, 0);
});

test('PKCS#12 wrong password', async () => {
  const file = writePkcs12('guarded.p12', first, 'right-password', 'aes256');
  await assert.rejects(openKeyFiles({ slots: [{ pkcs12: file, password: 'bad-password' }], pin: PIN }), (error: Error) => {
    assert.match(error.message, /password for the PKCS#12 file .*guarded\.p12 is wrong/);
    assert.ok(!error.message.includes('bad-password'), 'message leaves out the password');
    return true;
  });
});

test('PIN check and login state', async () => {
  const certificate = writeFile('pin.der', first.certificateDer);
  const key = writeFile('pin-key.pem', first.privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const store = await openKeyFiles({ slots: [{ certificate, key }], pin: PIN });

  await assert.rejects(store.rsaPrivateRaw(0, new Uint8Array(256)), (error: unknown) => {
    assert.ok(error instanceof KeyStoreError);
    assert.equal(error.reason, 'not-logged-in');
    return true;
  });
  assert.equal(await store.verifyPin(Buffer.from('2468246')), false);
  assert.equal(await store.verifyPin(Buffer.from(PIN + '0')), false);
  assert.equal(await store.verifyPin(Buffer.from(PIN)), true);
  await assertRawRsaSigns(store, 0);
  assert.equal(await store.verifyPin(Buffer.from('00000000')), false);
  await assert.rejects(store.rsaPrivateRaw(0, new Uint8Array(256)), { reason: 'not-logged-in' });
});

test('raw RSA input checks', async () => {
  const certificate = writeFile('input.der', first.certificateDer);
  const key = writeFile('input-key.pem', first.privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const store = await openKeyFiles({ slots: [{ certificate, key }], pin: PIN });
  assert.equal(await store.verifyPin(Buffer.from(PIN)), true);

  await assert.rejects(store.rsaPrivateRaw(0, new Uint8Array(255)), { reason: 'invalid-input' });
  await assert.rejects(store.rsaPrivateRaw(0, new Uint8Array(256).fill(0xff)), { reason: 'invalid-input' });
  await assert.rejects(store.rsaPrivateRaw(1, new Uint8Array(256)), { reason: 'invalid-input' });
  const zero = await store.rsaPrivateRaw(0, new Uint8Array(256));
  assert.deepEqual([...zero], new Array<number>(256).fill(0), 'raw RSA of zero is zero at full length');
});

test('key files reject bad input files', async () => {
  const certificate = writeFile('bad.der', first.certificateDer);
  const otherKey = writeFile('other-key.pem', second.privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const encryptedKey = writeFile('encrypted-key.pem', first.privateKey.export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'x' }));
  const { privateKey: ecKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ecKeyFile = writeFile('ec-key.pem', ecKey.export({ format: 'pem', type: 'pkcs8' }));
  const notACertificate = writeFile('text.pem', 'hello');
  const absent = path.join(directory, 'absent.pem');

  await assert.rejects(openKeyFiles({ slots: [{ certificate, key: otherKey }], pin: PIN }), /does not belong to its certificate/);
  await assert.rejects(openKeyFiles({ slots: [{ certificate, key: encryptedKey }], pin: PIN }), /encrypted-key\.pem is encrypted/);
  await assert.rejects(openKeyFiles({ slots: [{ certificate, key: ecKeyFile }], pin: PIN }), /supports only RSA keys/);
  await assert.rejects(openKeyFiles({ slots: [{ certificate: notACertificate, key: otherKey }], pin: PIN }), /text\.pem contains no PEM or DER X\.509 certificate/);
  await assert.rejects(openKeyFiles({ slots: [{ certificate: absent, key: otherKey }], pin: PIN }), /absent\.pem was not found/);
  await assert.rejects(openKeyFiles({ slots: [], pin: PIN }), /No key files given/);
});

test('key files reject bad PINs', async () => {
  const certificate = writeFile('pins.der', first.certificateDer);
  const key = writeFile('pins-key.pem', first.privateKey.export({ format: 'pem', type: 'pkcs8' }));
  await assert.rejects(openKeyFiles({ slots: [{ certificate, key }], pin: '' }), /0 bytes long; it must be 4 to 8 bytes/);
  await assert.rejects(openKeyFiles({ slots: [{ certificate, key }], pin: '123' }), /3 bytes long/);
  const shortest = await openKeyFiles({ slots: [{ certificate, key }], pin: '1234' });
  assert.equal(await shortest.verifyPin(Buffer.from('1234')), true);
  await assert.rejects(openKeyFiles({ slots: [{ certificate, key }], pin: '123456789' }), (error: Error) => {
    assert.match(error.message, /9 bytes long/);
    assert.ok(!error.message.includes('123456789'), 'message leaves out the PIN');
    return true;
  });
});
