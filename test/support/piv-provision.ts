/**
 * Provisions a PIV state file without a reader: opens the file like
 * `virtcard --card piv --piv-state` does, then sends the card the APDUs
 * that yubico-piv-tool would send to generate RSA-2048 or P-256 keys, have
 * the card self-sign a certificate for each, and store those certificates.
 */
import assert from 'node:assert/strict';
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { decodeBerTlv, findBerTlv } from '../../src/iso7816/ber-tlv.js';
import { createDefaultCardState, createPivCard, PivStateFile, type PivCard } from '../../src/piv/index.js';
import { assembleCertificate, buildTbsCertificate } from './piv-certificate.js';
import { authenticateManagementKey, dynamicAuthentication, dynamicAuthenticationItem, selectPiv, send, verifyPin } from './piv-session.js';

/** PIN of a new card. */
export const NEW_CARD_PIN = '123456';

/** Certificate container of each asymmetric slot this helper fills. */
const CERTIFICATE_CONTAINERS: Record<number, number> = { 0x9a: 0x5fc105, 0x9c: 0x5fc10a, 0x9d: 0x5fc10b, 0x9e: 0x5fc101 };

/** PIV algorithm identifiers (SP 800-78-4) of the key types this helper generates. */
const ALGORITHM_RSA_2048 = 0x07;
const ALGORITHM_ECC_P256 = 0x11;

/** Key type of a generated key: RSA-2048 (signed with sha256WithRSAEncryption) or P-256 (ecdsaWithSHA256). */
export type ProvisionedAlgorithm = 'RSA2048' | 'ECCP256';

/** A key to generate in a slot, with the subject of its self-signed certificate. */
export interface KeyRequest {
  readonly slot: number;
  readonly algorithm: ProvisionedAlgorithm;
  /** Subject and issuer of the certificate, e.g. "CN=Jane Doe". */
  readonly subject: string;
}

export interface ProvisionedKey {
  readonly publicKey: KeyObject;
  readonly certificatePem: string;
}

/** DER DigestInfo prefix of SHA-256, which EMSA-PKCS1-v1_5 (RFC 8017) puts before the digest. */
const SHA256_DIGEST_INFO_PREFIX = Buffer.from('3031300d060960864801650304020105000420', 'hex');

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
 * management key) and, for each request, generates the key (PIN policy:
 * the slot's default) and stores a self-signed certificate in the slot's
 * container. Raises when the file already exists or the card rejects a step.
 */
export async function provisionKeys(path: string, passphrase: string, requests: readonly KeyRequest[]): Promise<ProvisionedKey[]> {
  const opened = await PivStateFile.open(path, passphrase, createDefaultCardState);
  assert.ok(opened.created, `${path} already exists; provisioning needs a new state file`);
  const card = createPivCard({ state: opened.state, sink: opened.file });

  assert.equal((await selectPiv(card)).sw, 0x9000, 'SELECT of the PIV application failed');
  assert.equal(await authenticateManagementKey(card), 0x9000, 'management key authentication failed');
  const provisioned: ProvisionedKey[] = [];
  for (const request of requests) provisioned.push(await provisionKey(card, request));

  // The card writes every change to the state file before it responds, so the file is complete here.
  return provisioned;
}

/** Creates the state file `path` with a P-256 key and its self-signed certificate in `slot`; see `provisionKeys`. */
export async function provisionEcKey(path: string, passphrase: string, slot: number, subject: string): Promise<ProvisionedKey> {
  const [provisioned] = await provisionKeys(path, passphrase, [{ slot, algorithm: 'ECCP256', subject }]);
  return provisioned!;
}

async function provisionKey(card: PivCard, { slot, algorithm, subject }: KeyRequest): Promise<ProvisionedKey> {
  const container = CERTIFICATE_CONTAINERS[slot];
  assert.ok(container !== undefined, `slot ${slot.toString(16)} has no certificate container here`);
  const algorithmId = algorithm === 'RSA2048' ? ALGORITHM_RSA_2048 : ALGORITHM_ECC_P256;
  const signatureKind = algorithm === 'RSA2048' ? 'sha256WithRSAEncryption' : 'ecdsaWithSHA256';

  const generated = await send(card, { ins: 0x47, p1: 0x00, p2: slot, data: Buffer.from([0xac, 0x03, 0x80, 0x01, algorithmId]), le: 256 });
  assert.equal(generated.sw, 0x9000, `GENERATE ASYMMETRIC KEY PAIR returned ${statusText(generated.sw)}`);
  const publicKey = algorithm === 'RSA2048' ? rsaPublicKey(generated.data) : p256PublicKey(generated.data);

  // 9C keys default to PIN policy "always", so the PIN goes right before each signature.
  const tbs = buildTbsCertificate(publicKey.export({ format: 'pem', type: 'spki' }).toString(), subject, signatureKind);
  assert.equal((await verifyPin(card, NEW_CARD_PIN)).sw, 0x9000, 'VERIFY of the default PIN failed');
  const digest = createHash('sha256').update(tbs).digest();
  const challenge = algorithm === 'RSA2048' ? pkcs1v15Block(digest, 256) : digest;
  const signed = await send(card, {
    ins: 0x87,
    p1: algorithmId,
    p2: slot,
    data: dynamicAuthentication([0x82, new Uint8Array(0)], [0x81, challenge]),
    le: 256,
    extended: algorithm === 'RSA2048',
  });
  assert.equal(signed.sw, 0x9000, `GENERAL AUTHENTICATE returned ${statusText(signed.sw)}`);
  const certificatePem = assembleCertificate(tbs, dynamicAuthenticationItem(signed.data, 0x82), signatureKind);

  // The container is 70 (certificate), 71 (CertInfo: not compressed) and FE (error detection code).
  const certificateDer = pemToDer(certificatePem);
  const contents = Buffer.concat([tlv(Buffer.of(0x70), certificateDer), Buffer.from([0x71, 0x01, 0x00, 0xfe, 0x00])]);
  const tag = Buffer.from(container.toString(16), 'hex');
  const body = Buffer.concat([tlv(Buffer.of(0x5c), tag), tlv(Buffer.of(0x53), contents)]);
  const stored = await send(card, { ins: 0xdb, p1: 0x3f, p2: 0xff, data: body, extended: true });
  assert.equal(stored.sw, 0x9000, `PUT DATA of the certificate returned ${statusText(stored.sw)}`);
  return { publicKey, certificatePem };
}

/** Decodes the template 7F49 that GENERATE returns for a P-256 key: 86 is the uncompressed point. */
function p256PublicKey(response: Uint8Array): KeyObject {
  const point = publicKeyItem(response, 0x86);
  assert.equal(point.length, 65, 'the generated EC point is not an uncompressed P-256 point');
  return createPublicKey({
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: Buffer.from(point.subarray(1, 33)).toString('base64url'),
      y: Buffer.from(point.subarray(33)).toString('base64url'),
    },
    format: 'jwk',
  });
}

/** Decodes the template 7F49 that GENERATE returns for an RSA key: 81 is the modulus, 82 the public exponent. */
function rsaPublicKey(response: Uint8Array): KeyObject {
  const modulus = publicKeyItem(response, 0x81);
  const exponent = publicKeyItem(response, 0x82);
  assert.equal(modulus.length, 256, 'the generated RSA modulus is not 2048 bits');
  return createPublicKey({
    key: { kty: 'RSA', n: Buffer.from(modulus).toString('base64url'), e: Buffer.from(exponent).toString('base64url') },
    format: 'jwk',
  });
}

function publicKeyItem(response: Uint8Array, tag: number): Uint8Array {
  const decoded = decodeBerTlv(response);
  assert.ok(decoded.ok, 'the generated public key is not BER-TLV');
  const item = findBerTlv(decoded.objects, tag);
  assert.ok(item !== undefined, `the generated public key has no tag ${tag.toString(16)}`);
  return item.value;
}

/** Returns the EMSA-PKCS1-v1_5 block (RFC 8017) of a SHA-256 digest, which the card signs with raw RSA. */
function pkcs1v15Block(digest: Uint8Array, length: number): Buffer {
  const digestInfo = Buffer.concat([SHA256_DIGEST_INFO_PREFIX, digest]);
  const padding = Buffer.alloc(length - digestInfo.length - 3, 0xff);
  return Buffer.concat([Buffer.of(0x00, 0x01), padding, Buffer.of(0x00), digestInfo]);
}

/** Returns the DER bytes of a PEM certificate. */
function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, ''), 'base64');
}
