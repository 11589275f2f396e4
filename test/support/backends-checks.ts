// Checks shared by the key backend tests: raw RSA signatures and
// decryptions verified with node:crypto, and where the shared fixtures are.
import assert from 'node:assert/strict';
import { constants, createHash, publicEncrypt, randomBytes, verify, X509Certificate } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KeyStore } from '../../src/backends/key-store.js';

/** DER prefix of a DigestInfo for SHA-256 (RFC 8017, section 9.2, note 1). */
const SHA256_DIGEST_INFO_PREFIX = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/** The repository root, found from this file's place in dist/test/support. */
export const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** The shared test material: `$VIRTCARD_SHARED`, else `shared` beside the repository. */
export const sharedDirectory = process.env['VIRTCARD_SHARED'] ?? path.resolve(repositoryRoot, '../shared');

/** Builds the PKCS#1 v1.5 signature block `00 01 FF.. 00 DigestInfo` for a SHA-256 digest. */
export function pkcs1SignatureBlock(digest: Buffer, modulusBytes: number): Buffer {
  const digestInfo = Buffer.concat([SHA256_DIGEST_INFO_PREFIX, digest]);
  const padding = Buffer.alloc(modulusBytes - digestInfo.length - 3, 0xff);
  return Buffer.concat([Buffer.from([0x00, 0x01]), padding, Buffer.from([0x00]), digestInfo]);
}

/** Signs a random message through raw RSA on slot `index` and verifies it against the slot's certificate. */
export async function assertRawRsaSigns(store: KeyStore, index: number): Promise<void> {
  const slot = store.slots[index];
  assert.ok(slot, `slot ${index} exists`);
  const modulusBytes = slot.modulusBits / 8;
  const message = randomBytes(100);
  const block = pkcs1SignatureBlock(createHash('sha256').update(message).digest(), modulusBytes);

  const signature = await store.rsaPrivateRaw(index, block);

  assert.equal(signature.length, modulusBytes);
  const publicKey = new X509Certificate(Buffer.from(slot.certificate)).publicKey;
  const valid = verify('sha256', message, { key: publicKey, padding: constants.RSA_PKCS1_PADDING }, signature);
  assert.ok(valid, `signature of slot "${slot.label}" verifies with its certificate`);
}

/** Encrypts a random secret to the slot's certificate and checks that raw RSA returns the PKCS#1 type 2 block. */
export async function assertRawRsaDecrypts(store: KeyStore, index: number): Promise<void> {
  const slot = store.slots[index];
  assert.ok(slot, `slot ${index} exists`);
  const secret = randomBytes(32);
  const publicKey = new X509Certificate(Buffer.from(slot.certificate)).publicKey;
  const ciphertext = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, secret);

  const block = Buffer.from(await store.rsaPrivateRaw(index, ciphertext));

  assert.equal(block.length, slot.modulusBits / 8);
  assert.deepEqual([...block.subarray(0, 2)], [0x00, 0x02], 'block type 2');
  assert.equal(block[block.length - secret.length - 1], 0x00, 'separator before the secret');
  assert.deepEqual(block.subarray(block.length - secret.length), secret);
}

/**
 * Returns why a test that needs `tools` cannot run here, or false when it can.
 * Under CI a missing tool fails the test instead of skipping it.
 */
export function skipUnlessTools(...tools: string[]): string | false {
  const missing = tools.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
  if (missing.length === 0) return false;
  const reason = `${missing.join(', ')} not installed`;
  if (process.env['CI']) throw new Error(`${reason}; CI needs it for the key backend tests`);
  return reason;
}
