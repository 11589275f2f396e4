/**
 * The CAC card as CoolKey 1.1 (Debian coolkey 1.1.0-16) drives it: card
 * detection through the CCC, certificate load, VERIFY and SIGN/DECRYPT in
 * 240-byte blocks. docs/coolkey.md explains the certificate-compression
 * option these tests exercise.
 */
import assert from 'node:assert/strict';
import { constants, generateKeyPairSync, privateDecrypt, publicEncrypt, type KeyObject } from 'node:crypto';
import { test } from 'node:test';
import { inflateSync } from 'node:zlib';

import type { KeySlot, KeyStore } from '../../src/backends/key-store.js';
import { createCacCard } from '../../src/cac/cac-card.js';
import { CoolKeyClient, statusWord } from '../support/coolkey-client.js';

const PIN = '12345678';
const LABELS = ['id-cert', 'signing-cert', 'encryption-cert'];

interface TestIdentity {
  readonly certificate: Uint8Array;
  readonly publicKey: KeyObject;
  readonly privateKey: KeyObject;
}

/**
 * A key store over generated RSA-2048 keys. The card treats certificates as
 * opaque bytes, so each "certificate" is a DER SEQUENCE of a subject name
 * and the public key: shaped like a certificate, with the same mix of
 * compressible text and incompressible key bytes.
 */
class GeneratedKeyStore implements KeyStore {
  readonly description = 'generated test keys';
  readonly slots: readonly KeySlot[];

  constructor(private readonly identities: readonly TestIdentity[]) {
    this.slots = identities.map((identity, index) => ({
      label: LABELS[index] ?? `key-${index}`,
      certificate: identity.certificate,
      keyType: 'rsa' as const,
      modulusBits: 2048,
    }));
  }

  verifyPin(pin: Uint8Array): Promise<boolean> {
    return Promise.resolve(Buffer.from(pin).equals(Buffer.from(PIN)));
  }

  rsaPrivateRaw(index: number, input: Uint8Array): Promise<Uint8Array> {
    const identity = this.identities[index];
    if (identity === undefined) throw new RangeError(`no key ${index}`);
    return Promise.resolve(new Uint8Array(privateDecrypt({ key: identity.privateKey, padding: constants.RSA_NO_PADDING }, input)));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

function generateIdentity(serial: number): TestIdentity {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const subject = Buffer.from(`serialNumber=${serial}, CN=John Doe, OU=DoD, O=U.S. Government, C=US`);
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const body = Buffer.concat([Buffer.from([0x0c, subject.length]), subject, spki]);
  const certificate = Buffer.concat([Buffer.from([0x30, 0x82, body.length >> 8, body.length & 0xff]), body]);
  return { certificate: new Uint8Array(certificate), publicKey, privateKey };
}

const identities = [generateIdentity(1), generateIdentity(2), generateIdentity(3)];
const store = new GeneratedKeyStore(identities);

test('default card fails CoolKey certificate load', async () => {
  const card = createCacCard(store);
  card.reset();
  const results = await new CoolKeyClient(card).loadCertificates();

  assert.equal(results.length, 3, 'CoolKey finds three PKI applets in the CCC');
  for (const result of results) {
    assert.equal(result.ok, false, `certificate ${result.instance} is rejected, as by CoolKey 1.1 on libcacard 2.8`);
    if (!result.ok) assert.match(result.error, /Corrupted compressed CAC Cert/);
  }
});

test('zlib card passes CoolKey certificate load', async () => {
  const card = createCacCard(store, { certificateCompression: 'zlib' });
  card.reset();
  const results = await new CoolKeyClient(card).loadCertificates();

  assert.equal(results.length, 3);
  for (const [index, result] of results.entries()) {
    assert.equal(result.ok, true, `certificate ${index} loads`);
    if (result.ok) assert.deepEqual(result.der, store.slots[index]?.certificate);
  }
});

test('zlib card value file layout', async () => {
  const card = createCacCard(store, { certificateCompression: 'zlib' });
  card.reset();
  const client = new CoolKeyClient(card);
  const [location] = await client.detectCac();
  assert.ok(location);
  await client.selectPki(location);

  const tags = await client.readFile(1);
  const values = await client.readFile(2);
  // Tag/length file: CertInfo (1 byte), certificate (3-byte length form), MSCUID and error detection code (empty).
  const certificateLength = (tags[6] ?? 0) | ((tags[7] ?? 0) << 8);
  assert.deepEqual([...tags.subarray(0, 6)], [0x0a, 0x00, 0x71, 0x01, 0x70, 0xff]);
  assert.deepEqual([...tags.subarray(8)], [0x72, 0x00, 0xfe, 0x00]);
  assert.equal(values[2], 0x01, 'CertInfo 01: zlib-compressed');
  assert.equal((values[0] ?? 0) | ((values[1] ?? 0) << 8), 1 + certificateLength, 'value file length prefix');
  assert.equal(values.length, 2 + 1 + certificateLength);

  const der = new Uint8Array(inflateSync(values.subarray(3)));
  assert.deepEqual(der, store.slots[0]?.certificate);
});

test('default card keeps uncompressed value file', async () => {
  const card = createCacCard(store);
  card.reset();
  const client = new CoolKeyClient(card);
  const [location] = await client.detectCac();
  assert.ok(location);
  await client.selectPki(location);

  const values = await client.readFile(2);
  assert.equal(values[2], 0x00, 'CertInfo 00 as libcacard 2.8');
  assert.deepEqual(new Uint8Array(values.subarray(3)), store.slots[0]?.certificate);
});

test('OpenSC-style read of zlib card', async () => {
  const card = createCacCard(store, { certificateCompression: 'zlib' });
  card.reset();
  // OpenSC 0.23 selects with P2 = 0C and reads with class 00; it decompresses when CertInfo bits 0-1 are 01.
  const select = await card.transmit(Uint8Array.of(0x00, 0xa4, 0x04, 0x0c, 0x07, 0xa0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x01));
  assert.equal(statusWord(select) & 0xff00, 0x6100);
  const client = new CoolKeyClient(card);
  const header = await client.exchange(Uint8Array.of(0x00, 0x52, 0x00, 0x00, 0x02, 0x02, 0x02));
  assert.equal(header.sw, 0x9000);
  const length = (header.data[0] ?? 0) | ((header.data[1] ?? 0) << 8);
  const body = await client.exchange(Uint8Array.of(0x00, 0x52, 0x00, 0x02, 0x02, 0x02, Math.min(length, 0xff)));
  assert.equal(body.data[0] ?? -1, 0x01);
});

test('CoolKey login and signature', async () => {
  const card = createCacCard(store, { certificateCompression: 'zlib' });
  card.reset();
  const client = new CoolKeyClient(card);
  const locations = await client.detectCac();

  // CoolKey logs in with PKI 0 selected.
  const first = locations[0];
  assert.ok(first);
  await client.selectPki(first);
  assert.equal(await client.verifyPin('00000000'), 0x63c2, 'wrong PIN: 63 Cx, which CoolKey maps to CKR_PIN_INCORRECT');
  assert.equal(await client.verifyPin(PIN), 0x9000);

  // CKM_RSA_PKCS: CoolKey pads on the host and sends 256 raw bytes as 240 + 16.
  const message = Buffer.from('virtcard test data\n');
  const padded = Buffer.concat([Buffer.from([0x00, 0x01]), Buffer.alloc(256 - 3 - message.length, 0xff), Buffer.from([0x00]), message]);
  for (const [index, location] of locations.entries()) {
    const result = await client.signDecrypt(location, padded);
    assert.equal(result.sw, 0x9000, `SIGN with key ${index}`);
    assert.equal(result.data.length, 256);

    const publicKey = identities[index]?.publicKey;
    assert.ok(publicKey);
    // Raw RSA public operation: encrypting the signature without padding gives back the padded block.
    const recovered = publicEncrypt({ key: publicKey, padding: constants.RSA_NO_PADDING }, result.data);
    assert.deepEqual(recovered, padded, `signature of key ${index} verifies`);
  }
});
