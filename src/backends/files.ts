/**
 * A key store on key and certificate files: a PEM or DER certificate with an
 * unencrypted PEM or DER private key (PKCS#1 or PKCS#8), or a PKCS#12 file.
 * The card PIN is a value of the configuration, compared in constant time.
 *
 * node:crypto cannot read PKCS#12, so node-forge decodes those files and the
 * key is handed to node:crypto as DER right away.
 */
import { createHash, createPrivateKey, timingSafeEqual, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import forge from 'node-forge';
import type { KeyStore } from './key-store.js';
import { checkCardPinLength, createMemorySlot, MemoryKeyStore } from './memory-key-store.js';

/** A certificate file with its private key file. */
export interface CertificateAndKeyFiles {
  /** Certificate, PEM or DER. The first certificate of a PEM file is used. */
  certificate: string;
  /** Unencrypted private key, PEM or DER, PKCS#1 or PKCS#8. */
  key: string;
}

/** A PKCS#12 file with one RSA private key and its certificate. */
export interface Pkcs12File {
  pkcs12: string;
  /** Password of the PKCS#12 file; empty when not given. */
  password?: string;
}

export type KeyFileSlot = CertificateAndKeyFiles | Pkcs12File;

export interface KeyFilesOptions {
  /** One entry per PKI applet, in card order. */
  slots: readonly KeyFileSlot[];
  /** The card PIN a guest must verify: 4 to 8 bytes. */
  pin: string;
}

function readInput(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`The ${what} file ${file} was not found; check the path`);
    throw new Error(`Cannot read the ${what} file ${file}: ${(error as Error).message}`);
  }
}

function isPem(data: Buffer): boolean {
  return data.subarray(0, 2048).toString('latin1').includes('-----BEGIN ');
}

function readCertificate(file: string): Buffer {
  const data = readInput(file, 'certificate');
  try {
    return new X509Certificate(data).raw;
  } catch (error) {
    throw new Error(`The certificate file ${file} contains no PEM or DER X.509 certificate: ${(error as Error).message}`);
  }
}

function readPrivateKey(file: string): KeyObject {
  const data = readInput(file, 'private key');
  if (isPem(data)) {
    if (/-----BEGIN (ENCRYPTED PRIVATE KEY|RSA PRIVATE KEY-----[\s\S]*Proc-Type: 4,ENCRYPTED)/.test(data.toString('latin1'))) {
      throw new Error(`The private key file ${file} is encrypted; store it unencrypted ("openssl pkey -in KEY -out NEW") or use a PKCS#12 file with a password`);
    }
    try {
      return createPrivateKey({ key: data, format: 'pem' });
    } catch (error) {
      throw new Error(`The private key file ${file} contains no readable PEM private key: ${(error as Error).message}`);
    }
  }
  for (const type of ['pkcs8', 'pkcs1'] as const) {
    try {
      return createPrivateKey({ key: data, format: 'der', type });
    } catch {
      // Try the next DER structure.
    }
  }
  throw new Error(`The private key file ${file} contains no PEM key and no DER PKCS#8 or PKCS#1 key`);
}

/** Returns the certificate and RSA private key of a PKCS#12 file, decoded by node-forge. */
function readPkcs12(file: string, password: string): { certificate: Buffer; privateKey: KeyObject } {
  const data = readInput(file, 'PKCS#12');
  let p12: forge.pkcs12.Pkcs12Pfx;
  try {
    const asn1 = forge.asn1.fromDer(forge.util.createBuffer(data.toString('binary')));
    p12 = forge.pkcs12.pkcs12FromAsn1(asn1, true, password);
  } catch (error) {
    const message = (error as Error).message;
    if (/MAC could not be verified|Invalid password/i.test(message)) {
      throw new Error(`The password for the PKCS#12 file ${file} is wrong; give the export password of the file`);
    }
    throw new Error(`The PKCS#12 file ${file} could not be read: ${message}; forge reads RSA keys only`);
  }

  const keyBags = [
    ...(p12.getBags({ bagType: forge.pki.oids.pkcs8ShroudedKeyBag })[forge.pki.oids.pkcs8ShroudedKeyBag ?? ''] ?? []),
    ...(p12.getBags({ bagType: forge.pki.oids.keyBag })[forge.pki.oids.keyBag ?? ''] ?? []),
  ].filter((bag) => bag.key !== undefined && bag.key !== null);
  if (keyBags.length !== 1) {
    throw new Error(`The PKCS#12 file ${file} contains ${keyBags.length} RSA private keys; it needs exactly one, so split it with openssl pkcs12`);
  }
  const forgeKey = keyBags[0]?.key as forge.pki.rsa.PrivateKey;
  const keyDer = Buffer.from(forge.asn1.toDer(forge.pki.privateKeyToAsn1(forgeKey)).getBytes(), 'binary');
  const privateKey = createPrivateKey({ key: keyDer, format: 'der', type: 'pkcs1' });
  keyDer.fill(0);

  // The certificate is the one whose public key matches; the others form its chain.
  const publicKey = privateKey.export({ format: 'jwk' }).n;
  const certificateBags = p12.getBags({ bagType: forge.pki.oids.certBag })[forge.pki.oids.certBag ?? ''] ?? [];
  for (const bag of certificateBags) {
    if (bag.cert === undefined || bag.cert === null) continue;
    const certificate = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(bag.cert)).getBytes(), 'binary');
    if (new X509Certificate(certificate).publicKey.export({ format: 'jwk' }).n === publicKey) {
      return { certificate, privateKey };
    }
  }
  throw new Error(`The PKCS#12 file ${file} contains no certificate for its private key; export it again with the certificate`);
}

function slotLabel(file: string): string {
  return path.basename(file).replace(/\.(pem|crt|cer|der|p12|pfx)$/i, '');
}

/** SHA-256 digests have equal lengths, which timingSafeEqual requires, and hide the PIN length. */
function pinDigest(pin: Buffer): Buffer {
  return createHash('sha256').update(pin).digest();
}

/** Opens the given key files as one key store; `pin` becomes the card PIN. */
export function openKeyFiles(options: KeyFilesOptions): Promise<KeyStore> {
  // The executor turns the errors of the synchronous file reads into a rejection.
  return new Promise((resolve) => resolve(createKeyFileStore(options)));
}

function createKeyFileStore(options: KeyFilesOptions): KeyStore {
  checkCardPinLength(options.pin, 'PIN for key files');
  if (options.slots.length === 0) {
    throw new Error('No key files given; give at least one certificate and key, or a PKCS#12 file');
  }

  const slots = options.slots.map((entry) => {
    if ('pkcs12' in entry) {
      const { certificate, privateKey } = readPkcs12(entry.pkcs12, entry.password ?? '');
      return createMemorySlot(slotLabel(entry.pkcs12), certificate, privateKey, `PKCS#12 file ${entry.pkcs12}`);
    }
    const certificate = readCertificate(entry.certificate);
    const privateKey = readPrivateKey(entry.key);
    return createMemorySlot(slotLabel(entry.certificate), certificate, privateKey, `certificate ${entry.certificate} with key ${entry.key}`);
  });

  const expected = pinDigest(Buffer.from(options.pin, 'utf8'));
  const checkPin = (pin: Buffer): Promise<boolean> => Promise.resolve(timingSafeEqual(pinDigest(pin), expected));
  const files = options.slots.map((entry) => ('pkcs12' in entry ? entry.pkcs12 : entry.certificate)).join(', ');
  return new MemoryKeyStore(`key files ${files}`, slots, checkPin);
}
