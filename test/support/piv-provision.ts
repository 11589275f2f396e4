/**
 * Provisions a PIV state file without a reader: opens the file like
 * `virtcard --card piv --piv-state` does, then sends the card the APDUs
 * that yubico-piv-tool would send to generate a key, have the card
 * self-sign a certificate for it, and store that certificate.
 */
import assert from 'node:assert/strict';
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { decodeBerTlv, findBerTlv } from '../../src/iso7816/ber-tlv.js';
import { createDefaultCardState, createPivCard, PivStateFile } from '../../src/piv/index.js';
import { assembleCertificate, buildTbsCertificate } from './piv-certificate.js';
import { authenticateManagementKey, dynamicAuthentication, dynamicAuthenticationItem, selectPiv, send, verifyPin } from './piv-session.js';

/** PIN of a new card. */
export const NEW_CARD_PIN = '123456';

/** Certificate container of each asymmetric slot this helper fills. */
const CERTIFICATE_CONTAINERS: Record<number, number> = { 0x9a: 0x5fc105, 0x9c: 0x5fc10a, 0x9d: 0x5fc10b, 0x9e: 0x5fc101 };

const ALGORITHM_ECC_P256 = 0x11;

export interface ProvisionedKey {
  readonly publicKey: KeyObject;
  readonly certificatePem: string;
}

function berLength(length: number): Buffer {
  if (length < 0x80) return Buffer.of(length);
  if (length < 0x100) return Buffer.of(0x81, length);
  return Buffer.of(0x82, length >> 8, length & 0xff);
}

function tlv(tag: Buffer, value: Uint8Array): Buffer {
  return Buffer.concat([tag, berLength(value.length), value]);
}

function statusText(sw: number): string {
  return sw.toString(16).toUpperCase().padStart(4, '0');
}

/**
 * Creates the state file `path` for a new card (default PIN, PUK and
 * management key), generates a P-256 key in `slot` (PIN policy: the slot's
 * default) and stores a self-signed certificate for `subject` in the slot's
 * container. Raises when the file already exists or the card rejects a step.
 */
export async function provisionEcKey(path: string, passphrase: string, slot: number, subject: string): Promise<ProvisionedKey> {
  const container = CERTIFICATE_CONTAINERS[slot];
  assert.ok(container !== undefined, `slot ${slot.toString(16)} has no certificate container here`);
  const opened = await PivStateFile.open(path, passphrase, createDefaultCardState);
  assert.ok(opened.created, `${path} already exists; provisioning needs a new state file`);
  const card = createPivCard({ state: opened.state, sink: opened.file });

  assert.equal((await selectPiv(card)).sw, 0x9000, 'SELECT of the PIV application failed');
  assert.equal(await authenticateManagementKey(card), 0x9000, 'management key authentication failed');

  const generated = await send(card, { ins: 0x47, p1: 0x00, p2: slot, data: Buffer.from([0xac, 0x03, 0x80, 0x01, ALGORITHM_ECC_P256]), le: 256 });
  assert.equal(generated.sw, 0x9000, `GENERATE ASYMMETRIC KEY PAIR returned ${statusText(generated.sw)}`);
  const decoded = decodeBerTlv(generated.data);
  assert.ok(decoded.ok, 'the generated public key is not BER-TLV');
  const point = findBerTlv(decoded.objects, 0x86);
  assert.ok(point !== undefined, 'the generated public key has no EC point (tag 86)');
  assert.equal(point.value.length, 65, 'the generated EC point is not an uncompressed P-256 point');
  const publicKey = createPublicKey({
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: Buffer.from(point.value.subarray(1, 33)).toString('base64url'),
      y: Buffer.from(point.value.subarray(33)).toString('base64url'),
    },
    format: 'jwk',
  });

  // 9C keys default to PIN policy "always", so the PIN goes right before the signature.
  const tbs = buildTbsCertificate(publicKey.export({ format: 'pem', type: 'spki' }).toString(), subject, 'ecdsaWithSHA256');
  assert.equal((await verifyPin(card, NEW_CARD_PIN)).sw, 0x9000, 'VERIFY of the default PIN failed');
  const digest = createHash('sha256').update(tbs).digest();
  const signed = await send(card, {
    ins: 0x87,
    p1: ALGORITHM_ECC_P256,
    p2: slot,
    data: dynamicAuthentication([0x82, new Uint8Array(0)], [0x81, digest]),
    le: 256,
  });
  assert.equal(signed.sw, 0x9000, `GENERAL AUTHENTICATE returned ${statusText(signed.sw)}`);
  const certificatePem = assembleCertificate(tbs, dynamicAuthenticationItem(signed.data, 0x82), 'ecdsaWithSHA256');

  // The container is 70 (certificate), 71 (CertInfo: not compressed) and FE (error detection code).
  const certificateDer = pemToDer(certificatePem);
  const contents = Buffer.concat([tlv(Buffer.of(0x70), certificateDer), Buffer.from([0x71, 0x01, 0x00, 0xfe, 0x00])]);
  const tag = Buffer.from(container.toString(16), 'hex');
  const body = Buffer.concat([tlv(Buffer.of(0x5c), tag), tlv(Buffer.of(0x53), contents)]);
  const stored = await send(card, { ins: 0xdb, p1: 0x3f, p2: 0xff, data: body, extended: true });
  assert.equal(stored.sw, 0x9000, `PUT DATA of the certificate returned ${statusText(stored.sw)}`);

  // The card writes every change to the state file before it responds, so the file is complete here.
  return { publicKey, certificatePem };
}

/** Returns the DER bytes of a PEM certificate. */
function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, ''), 'base64');
}
