import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type JsonWebKey } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type * as Pkcs11Types from 'pkcs11js';
import { openPkcs11Token, Pkcs11LabelNotFoundError, Pkcs11PinRejectedError } from '../../src/backends/pkcs11.js';
import { KeyStoreError } from '../../src/backends/key-store.js';
import { assertRawRsaDecrypts, assertRawRsaSigns, skipUnlessTools } from '../support/backends-checks.js';

const pkcs11js = createRequire(import.meta.url)('pkcs11js') as typeof Pkcs11Types;

const SOFTHSM_MODULES = [
  process.env['SOFTHSM2_MODULE'] ?? '',
  '/usr/lib/softhsm/libsofthsm2.so',
  `/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu/softhsm/libsofthsm2.so`,
  '/usr/lib64/pkcs11/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
].filter((candidate) => candidate !== '');
const modulePath = SOFTHSM_MODULES.find((candidate) => existsSync(candidate));

function softhsmMissingReason(): string | false {
  if (modulePath !== undefined) return false;
  const reason = `libsofthsm2.so not found in ${SOFTHSM_MODULES.join(', ')}; install softhsm2 or set SOFTHSM2_MODULE`;
  if (process.env['CI']) throw new Error(reason);
  return reason;
}

const skip = skipUnlessTools('softhsm2-util', 'pkcs11-tool', 'openssl') || softhsmMissingReason();

const USER_PIN = '1234';
const TOKEN_LABEL = 'virtcard';

let workDirectory = '';
/** DER certificates imported into the token, by CKA_LABEL. */
const certificates = new Map<string, Buffer>();

function run(command: string, args: string[]): void {
  execFileSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Creates an RSA-2048 key and a self-signed certificate with openssl; returns the file paths. */
function createKeyAndCertificate(name: string, subject: string): { keyDer: string; certificateDer: string } {
  const keyPem = path.join(workDirectory, `${name}.key.pem`);
  const keyDer = path.join(workDirectory, `${name}.key.der`);
  const certificateDer = path.join(workDirectory, `${name}.cert.der`);
  run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPem, '-outform', 'DER', '-out', certificateDer, '-subj', subject, '-days', '30']);
  run('openssl', ['pkcs8', '-topk8', '-nocrypt', '-in', keyPem, '-outform', 'DER', '-out', keyDer]);
  return { keyDer, certificateDer };
}

function writeObject(file: string, type: 'privkey' | 'cert', id: string, label: string): void {
  run('pkcs11-tool', ['--module', modulePath ?? '', '--token-label', TOKEN_LABEL, '--login', '--pin', USER_PIN, '--write-object', file, '--type', type, '--id', id, '--label', label]);
}

/**
 * Stores an RSA key that may sign but not decrypt with C_CreateObject through
 * pkcs11js, because pkcs11-tool --write-object ignores --usage-sign (seen
 * with OpenSC 0.23). Returns its certificate.
 */
function createSignOnlyKey(id: Buffer, label: string): Buffer {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk: JsonWebKey = privateKey.export({ format: 'jwk' });
  const component = (name: keyof JsonWebKey): Buffer => Buffer.from(String(jwk[name]), 'base64url');
  const keyPem = path.join(workDirectory, `${label}.key.pem`);
  const certificateDer = path.join(workDirectory, `${label}.cert.der`);
  writeFileSync(keyPem, privateKey.export({ format: 'pem', type: 'pkcs8' }));
  run('openssl', ['req', '-x509', '-new', '-key', keyPem, '-outform', 'DER', '-out', certificateDer, '-subj', `/CN=${label}`, '-days', '30']);

  const module = new pkcs11js.PKCS11();
  module.load(modulePath ?? '');
  module.C_Initialize();
  try {
    const slot = module.C_GetSlotList(true).find((candidate) => module.C_GetTokenInfo(candidate).label.trim() === TOKEN_LABEL);
    assert.ok(slot, 'the test token exists');
    const session = module.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    module.C_Login(session, pkcs11js.CKU_USER, USER_PIN);
    module.C_CreateObject(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: false },
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_MODULUS, value: component('n') },
      { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: component('e') },
      { type: pkcs11js.CKA_PRIVATE_EXPONENT, value: component('d') },
      { type: pkcs11js.CKA_PRIME_1, value: component('p') },
      { type: pkcs11js.CKA_PRIME_2, value: component('q') },
      { type: pkcs11js.CKA_EXPONENT_1, value: component('dp') },
      { type: pkcs11js.CKA_EXPONENT_2, value: component('dq') },
      { type: pkcs11js.CKA_COEFFICIENT, value: component('qi') },
    ]);
    module.C_Logout(session);
    module.C_CloseSession(session);
  } finally {
    module.C_Finalize();
    module.close();
  }
  return readFileSync(certificateDer);
}

before(() => {
  if (skip) return;
  workDirectory = mkdtempSync(path.join(tmpdir(), 'virtcard-softhsm-'));
  const tokenDirectory = path.join(workDirectory, 'tokens');
  mkdirSync(tokenDirectory);
  const configuration = path.join(workDirectory, 'softhsm2.conf');
  writeFileSync(configuration, `directories.tokendir = ${tokenDirectory}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  // SoftHSM reads SOFTHSM2_CONF in C_Initialize, both in the tools and in this process.
  process.env['SOFTHSM2_CONF'] = configuration;

  run('softhsm2-util', ['--init-token', '--free', '--label', TOKEN_LABEL, '--pin', USER_PIN, '--so-pin', '5678']);

  const identity = createKeyAndCertificate('identity', '/CN=SoftHSM Identity');
  writeObject(identity.keyDer, 'privkey', '01', 'identity-key');
  writeObject(identity.certificateDer, 'cert', '01', 'identity');
  certificates.set('identity', readFileSync(identity.certificateDer));

  const signing = createKeyAndCertificate('signing', '/CN=SoftHSM Signing');
  writeObject(signing.keyDer, 'privkey', '02', 'signing-key');
  writeObject(signing.certificateDer, 'cert', '02', 'signing');
  certificates.set('signing', readFileSync(signing.certificateDer));

  // A certificate without a private key, like a CA certificate on a token.
  const authority = createKeyAndCertificate('authority', '/CN=SoftHSM Authority');
  writeObject(authority.certificateDer, 'cert', '09', 'authority');
  certificates.set('authority', readFileSync(authority.certificateDer));

  certificates.set('sign-only', createSignOnlyKey(Buffer.from([0x03]), 'sign-only'));
  const signOnlyCertificate = path.join(workDirectory, 'sign-only.cert.der');
  writeObject(signOnlyCertificate, 'cert', '03', 'sign-only');
});

after(() => {
  if (workDirectory !== '') rmSync(workDirectory, { recursive: true, force: true });
});

test('SoftHSM certificates follow labels', { skip }, async () => {
  const store = await openPkcs11Token({ modulePath: modulePath ?? '', tokenLabel: TOKEN_LABEL, labels: ['signing', 'identity'] });
  try {
    assert.deepEqual(store.slots.map((slot) => slot.label), ['signing', 'identity']);
    for (const slot of store.slots) {
      assert.deepEqual(Buffer.from(slot.certificate), certificates.get(slot.label), `certificate of ${slot.label}`);
      assert.equal(slot.keyType, 'rsa');
      assert.equal(slot.modulusBits, 2048);
    }
    assert.match(store.description, /PKCS#11 token "virtcard"/);
  } finally {
    await store.close();
  }
});

test('SoftHSM raw RSA signs and decrypts', { skip }, async () => {
  const store = await openPkcs11Token({ modulePath: modulePath ?? '', tokenLabel: TOKEN_LABEL, labels: ['identity', 'signing', 'sign-only'], pin: USER_PIN });
  try {
    assert.equal(await store.verifyPin(Buffer.from(USER_PIN)), true);
    for (let index = 0; index < store.slots.length; index++) {
      await assertRawRsaSigns(store, index);
      await assertRawRsaDecrypts(store, index);
    }
  } finally {
    await store.close();
  }
});

test('SoftHSM wrong PIN logs out', { skip }, async () => {
  const store = await openPkcs11Token({ modulePath: modulePath ?? '', tokenLabel: TOKEN_LABEL, labels: ['identity'] });
  try {
    assert.equal(await store.verifyPin(Buffer.from(USER_PIN)), true);
    await assertRawRsaSigns(store, 0);
    assert.equal(await store.verifyPin(Buffer.from('9999')), false);
    await assert.rejects(store.rsaPrivateRaw(0, new Uint8Array(256)), (error: unknown) => {
      assert.ok(error instanceof KeyStoreError);
      assert.equal(error.reason, 'not-logged-in');
      return true;
    });
  } finally {
    await store.close();
  }
});

test('SoftHSM raw RSA rejects bad input', { skip }, async () => {
  const store = await openPkcs11Token({ modulePath: modulePath ?? '', tokenLabel: TOKEN_LABEL, labels: ['identity'] });
  try {
    assert.equal(await store.verifyPin(Buffer.from(USER_PIN)), true);
    await assert.rejects(store.rsaPrivateRaw(0, new Uint8Array(257)), { reason: 'invalid-input' });
    await assert.rejects(store.rsaPrivateRaw(0, new Uint8Array(256).fill(0xff)), { reason: 'invalid-input' });
    await assertRawRsaSigns(store, 0);
  } finally {
    await store.close();
  }
});

test('SoftHSM open without labels', { skip }, async () => {
  const withoutPin = await openPkcs11Token({ modulePath: modulePath ?? '', tokenLabel: TOKEN_LABEL });
  try {
    assert.deepEqual(withoutPin.slots.map((slot) => slot.label).sort(), ['authority', 'identity', 'sign-only', 'signing']);
  } finally {
    await withoutPin.close();
  }

  // With a PIN the store can see the private keys and drops the certificate that has none.
  const withPin = await openPkcs11Token({ modulePath: modulePath ?? '', pin: USER_PIN });
  try {
    assert.deepEqual(withPin.slots.map((slot) => slot.label).sort(), ['identity', 'sign-only', 'signing']);
    await assert.rejects(withPin.rsaPrivateRaw(0, new Uint8Array(256)), { reason: 'not-logged-in' });
  } finally {
    await withPin.close();
  }
});

test('SoftHSM open reports bad options', { skip }, async () => {
  await assert.rejects(openPkcs11Token({ modulePath: modulePath ?? '', tokenLabel: TOKEN_LABEL, labels: ['identity', 'missing'] }), (error: unknown) => {
    assert.ok(error instanceof Pkcs11LabelNotFoundError);
    assert.equal(error.label, 'missing');
    assert.match(error.message, /"missing"/);
    assert.match(error.message, /"authority"/);
    return true;
  });
  await assert.rejects(openPkcs11Token({ modulePath: modulePath ?? '', tokenLabel: TOKEN_LABEL, labels: ['authority'], pin: USER_PIN }), /no private key .*"authority"/);
  await assert.rejects(openPkcs11Token({ modulePath: modulePath ?? '', tokenLabel: TOKEN_LABEL, pin: '4321' }), (error: unknown) => {
    assert.ok(error instanceof Pkcs11PinRejectedError);
    assert.ok(!error.message.includes('4321'), 'message leaves out the PIN');
    return true;
  });
  await assert.rejects(openPkcs11Token({ modulePath: modulePath ?? '', tokenLabel: 'other' }), /No token labelled "other".*"virtcard"/);
  await assert.rejects(openPkcs11Token({ modulePath: modulePath ?? '', slotIndex: 5 }), /No token at slot index 5/);
  await assert.rejects(openPkcs11Token({ modulePath: path.join(workDirectory, 'absent.so') }), /PKCS#11 module not found/);
});

test('SoftHSM module opens once', { skip }, async () => {
  const first = await openPkcs11Token({ modulePath: modulePath ?? '', tokenLabel: TOKEN_LABEL, labels: ['identity'] });
  try {
    await assert.rejects(openPkcs11Token({ modulePath: modulePath ?? '', tokenLabel: TOKEN_LABEL }), /already open in this process/);
  } finally {
    await first.close();
  }
  await assert.rejects(first.verifyPin(Buffer.from(USER_PIN)), /is closed/);

  const second = await openPkcs11Token({ modulePath: modulePath ?? '', tokenLabel: TOKEN_LABEL, labels: ['identity'] });
  await second.close();
});
