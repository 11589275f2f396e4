/**
 * The built-in test identity: the CA and the three RSA-2048 certificates of
 * QEMU's smart-card documentation for "John Doe" (ID, signing, encryption),
 * generated on first use into a per-user directory and reused afterwards.
 *
 * The directory stores the CA certificate, each certificate with its
 * unencrypted PKCS#8 key, and a salted scrypt hash of the PIN, all mode 0600.
 * The CA private key is discarded after issuing, so no further certificate
 * can be issued under this CA.
 *
 * @peculiar/x509 signs with its default provider, the global WebCrypto of Node 20.
 */
import { createPrivateKey, randomBytes, randomInt, scrypt, timingSafeEqual, webcrypto, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
// @peculiar/x509 needs a Reflect metadata polyfill loaded before it.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { logger } from '../log/logger.js';
import type { KeyStore } from './key-store.js';
import { checkCardPinLength, createMemorySlot, MemoryKeyStore } from './memory-key-store.js';

const log = logger.child({ component: 'builtin-identity' });

export interface BuiltinIdentityOptions {
  /**
   * The virtcard data directory; the identity lives in its `identity`
   * subdirectory. Defaults to `$VIRTCARD_DATA_DIR`, else
   * `$XDG_DATA_HOME/virtcard`, else `~/.local/share/virtcard`.
   */
  dataDir?: string;
  /**
   * The card PIN (4 to 8 bytes) for a new identity. For an existing identity
   * it must match the stored PIN, because the stored hash decides.
   */
  pin?: string;
}

export interface BuiltinIdentity {
  store: KeyStore;
  /** True when this call generated the identity. */
  created: boolean;
  /** The PIN, set only when this call generated the identity, so a CLI can print it once. */
  pin?: string;
  /** Directory of the identity files. */
  directory: string;
  /** PEM file of the CA certificate, to import into a guest's trust store. */
  caCertificatePath: string;
}

/** The certificates of the identity in card order, labelled with the NSS nicknames of QEMU's documentation. */
const IDENTITY_CERTIFICATES = [
  { label: 'id-cert', subject: 'CN=John Doe' },
  { label: 'signing-cert', subject: 'CN=John Doe (signing)' },
  { label: 'encryption-cert', subject: 'CN=John Doe (encryption)' },
] as const;

type CertificateLabel = (typeof IDENTITY_CERTIFICATES)[number]['label'];

const CA_SUBJECT = 'CN=Fake Smart Card CA';
const CA_CERTIFICATE_FILE = 'ca-cert.pem';
const PIN_HASH_FILE = 'pin-hash.json';
const CERTIFICATE_VALIDITY_YEARS = 20;

/** Netscape certificate type extension, which QEMU's documented `certutil --nsCertType` commands add. */
const NS_CERT_TYPE_OID = '2.16.840.1.113730.1.1';
/** DER BIT STRINGs of nsCertType: bit 2 (S/MIME) and bit 0 (SSL client). */
const NS_CERT_TYPE_SMIME = Uint8Array.from([0x03, 0x02, 0x05, 0x20]);
const NS_CERT_TYPE_SSL_CLIENT = Uint8Array.from([0x03, 0x02, 0x07, 0x80]);

/** scrypt cost parameters for the PIN hash: Node's defaults, N = 2^14, r = 8, p = 1 (about 90 ms per check on the development machine). */
const SCRYPT_PARAMETERS = { N: 16384, r: 8, p: 1 } as const;
const SCRYPT_KEY_LENGTH = 32;

const SIGNING_ALGORITHM = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as const;

interface PinHash {
  kdf: 'scrypt';
  N: number;
  r: number;
  p: number;
  salt: string;
  hash: string;
}

/** Returns the identity directory for a data directory, or for the default one. */
export function builtinIdentityDirectory(dataDir?: string): string {
  return path.join(dataDir ?? defaultDataDirectory(), 'identity');
}

function defaultDataDirectory(): string {
  const configured = process.env['VIRTCARD_DATA_DIR'];
  if (configured !== undefined && configured !== '') return path.resolve(configured);
  const xdgDataHome = process.env['XDG_DATA_HOME'];
  if (xdgDataHome !== undefined && path.isAbsolute(xdgDataHome)) return path.join(xdgDataHome, 'virtcard');
  return path.join(os.homedir(), '.local', 'share', 'virtcard');
}

function certificateFile(label: CertificateLabel): string {
  return `${label}.pem`;
}

function keyFile(label: CertificateLabel): string {
  return `${label.replace(/-cert$/, '')}-key.pem`;
}

function hashPin(pin: Buffer, salt: Buffer, parameters: { N: number; r: number; p: number }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // maxmem above 128 * N * r bytes, which scrypt needs for its memory-hard mixing.
    const options = { ...parameters, maxmem: 256 * parameters.N * parameters.r };
    scrypt(pin, salt, SCRYPT_KEY_LENGTH, options, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

async function createPinHash(pin: string): Promise<PinHash> {
  const salt = randomBytes(16);
  const hash = await hashPin(Buffer.from(pin, 'utf8'), salt, SCRYPT_PARAMETERS);
  return { kdf: 'scrypt', ...SCRYPT_PARAMETERS, salt: salt.toString('base64'), hash: hash.toString('base64') };
}

async function pinMatches(pin: Buffer, stored: PinHash): Promise<boolean> {
  const expected = Buffer.from(stored.hash, 'base64');
  const actual = await hashPin(pin, Buffer.from(stored.salt, 'base64'), stored);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

function generateSigningKeyPair(): Promise<webcrypto.CryptoKeyPair> {
  const algorithm = { ...SIGNING_ALGORITHM, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) };
  return webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
}

async function exportPrivateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  const pem = x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
  pkcs8.fill(0);
  return pem;
}

function randomSerialNumber(): string {
  // 16 random bytes with the top bit cleared, so the DER INTEGER stays positive.
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f;
  return serial.toString('hex');
}

function endUserExtensions(label: CertificateLabel): x509.Extension[] {
  switch (label) {
    case 'id-cert':
      return [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true), new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth])];
    case 'signing-cert':
      return [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.nonRepudiation, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.emailProtection]),
        new x509.Extension(NS_CERT_TYPE_OID, false, NS_CERT_TYPE_SMIME),
      ];
    case 'encryption-cert':
      return [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
        new x509.Extension(NS_CERT_TYPE_OID, false, NS_CERT_TYPE_SSL_CLIENT),
      ];
  }
}

/** Generates the CA and the three certificates with their keys; returns file names and contents. */
async function generateIdentityFiles(): Promise<Map<string, string>> {
  const notBefore = new Date(Date.now() - 60 * 60 * 1000);
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + CERTIFICATE_VALIDITY_YEARS);

  const caKeys = await generateSigningKeyPair();
  const caCertificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerialNumber(),
      name: CA_SUBJECT,
      notBefore,
      notAfter,
      signingAlgorithm: SIGNING_ALGORITHM,
      keys: caKeys,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
      ],
    },
  );

  const files = new Map<string, string>([[CA_CERTIFICATE_FILE, caCertificate.toString('pem')]]);
  for (const { label, subject } of IDENTITY_CERTIFICATES) {
    const keys = await generateSigningKeyPair();
    const certificate = await x509.X509CertificateGenerator.create(
      {
        serialNumber: randomSerialNumber(),
        subject,
        issuer: caCertificate.subject,
        notBefore,
        notAfter,
        signingAlgorithm: SIGNING_ALGORITHM,
        publicKey: keys.publicKey,
        signingKey: caKeys.privateKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          ...endUserExtensions(label),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
          await x509.AuthorityKeyIdentifierExtension.create(caCertificate),
        ],
      },
    );
    files.set(certificateFile(label), certificate.toString('pem'));
    files.set(keyFile(label), await exportPrivateKeyPem(keys.privateKey));
  }
  return files;
}

/**
 * Writes a new identity into a temporary sibling directory and renames it
 * into place, so a crash never leaves half an identity. Returns false when
 * another process created the identity first.
 */
async function createIdentity(directory: string, pin: string): Promise<boolean> {
  const parent = path.dirname(directory);
  mkdirSync(parent, { recursive: true, mode: 0o700 });
  const files = await generateIdentityFiles();
  files.set(PIN_HASH_FILE, JSON.stringify(await createPinHash(pin)) + '\n');

  const staging = mkdtempSync(path.join(parent, '.identity-'));
  try {
    for (const [name, content] of files) {
      writeFileSync(path.join(staging, name), content, { mode: 0o600 });
    }
    renameSync(staging, directory);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if ((code === 'ENOTEMPTY' || code === 'EEXIST') && existsSync(path.join(directory, PIN_HASH_FILE))) return false;
    throw new Error(`Cannot create the built-in identity in ${directory}: ${(error as Error).message}`);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

function readIdentityFile(directory: string, name: string): string {
  const file = path.join(directory, name);
  try {
    const mode = statSync(file).mode & 0o777;
    if ((mode & 0o077) !== 0) log.warn({ file, mode: mode.toString(8) }, 'identity file is readable by other users; run chmod 600 on it');
    return readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`The built-in identity in ${directory} is incomplete: ${name} is missing; delete the directory to create a new identity`);
    }
    throw new Error(`Cannot read ${file}: ${(error as Error).message}`);
  }
}

function readPinHash(directory: string): PinHash {
  const text = readIdentityFile(directory, PIN_HASH_FILE);
  let stored: Partial<PinHash>;
  try {
    stored = JSON.parse(text) as Partial<PinHash>;
  } catch {
    stored = {};
  }
  const valid =
    stored.kdf === 'scrypt' &&
    [stored.N, stored.r, stored.p].every((value) => Number.isInteger(value) && (value ?? 0) > 0) &&
    typeof stored.salt === 'string' &&
    typeof stored.hash === 'string';
  if (!valid) {
    throw new Error(`The PIN hash ${path.join(directory, PIN_HASH_FILE)} is invalid; delete ${directory} to create a new identity`);
  }
  return stored as PinHash;
}

function loadStore(directory: string, pinHash: PinHash): KeyStore {
  const slots = IDENTITY_CERTIFICATES.map(({ label }) => {
    const certificatePem = readIdentityFile(directory, certificateFile(label));
    const certificate = Buffer.from(x509.PemConverter.decodeFirst(certificatePem));
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey({ key: readIdentityFile(directory, keyFile(label)), format: 'pem' });
    } catch (error) {
      throw new Error(`The key ${path.join(directory, keyFile(label))} is unreadable (${(error as Error).message}); delete ${directory} to create a new identity`);
    }
    return createMemorySlot(label, certificate, privateKey, `the built-in identity file ${certificateFile(label)} in ${directory}`);
  });
  const checkPin = (pin: Buffer): Promise<boolean> => pinMatches(pin, pinHash);
  return new MemoryKeyStore(`built-in test identity in ${directory}`, slots, checkPin);
}

/** Returns a random 8-digit numeric PIN. */
function generatePin(): string {
  return randomInt(0, 100_000_000).toString().padStart(8, '0');
}

/**
 * Opens the built-in test identity, generating it on first use. An explicit
 * `pin` for an existing identity must match the stored one.
 */
export async function openBuiltinIdentity(options: BuiltinIdentityOptions = {}): Promise<BuiltinIdentity> {
  if (options.pin !== undefined) checkCardPinLength(options.pin, 'PIN for the built-in identity');
  const directory = builtinIdentityDirectory(options.dataDir);
  const caCertificatePath = path.join(directory, CA_CERTIFICATE_FILE);

  let created = false;
  let newPin: string | undefined;
  if (!existsSync(directory)) {
    newPin = options.pin ?? generatePin();
    created = await createIdentity(directory, newPin);
    if (created) log.info({ directory }, 'generated the built-in test identity');
  }

  const pinHash = readPinHash(directory);
  if (!created && options.pin !== undefined && !(await pinMatches(Buffer.from(options.pin, 'utf8'), pinHash))) {
    throw new Error(
      `The built-in identity in ${directory} has a different PIN; leave out the PIN option to use the stored PIN, ` +
        `or delete ${directory} to create a new identity with this PIN`,
    );
  }

  const store = loadStore(directory, pinHash);
  return created && newPin !== undefined ? { store, created, pin: newPin, directory, caCertificatePath } : { store, created, directory, caCertificatePath };
}
