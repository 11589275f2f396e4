/**
 * A key store on an NSS sql database (cert9.db and key4.db), the backend
 * QEMU's ccid-card-emulated uses. NSS's own softokn module opens the
 * database as a PKCS#11 token, so the PKCS#11 store does the rest: the card
 * PIN is the database password and certificate nicknames are CKA_LABELs.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import type { KeyStore } from './key-store.js';
import { openPkcs11Token, Pkcs11InitializeError, Pkcs11LabelNotFoundError, Pkcs11PinRejectedError } from './pkcs11.js';

/** Label softokn gives the token of the certificate and key database. */
const NSS_DATABASE_TOKEN = 'NSS Certificate DB';

/** Environment variable that overrides where libsoftokn3 is looked for. */
export const SOFTOKN_PATH_VARIABLE = 'VIRTCARD_SOFTOKN';

export interface NssDatabaseOptions {
  /** Database directory, as `sql:DIR` or `DIR`. */
  directory: string;
  /** Certificate nicknames in card order: the first is the card's first PKI applet. */
  nicknames: readonly string[];
  /**
   * Database password to check at open time, so a wrong password or a
   * missing private key is reported before a guest uses the card. The store
   * logs out afterwards, so the guest still has to verify the PIN.
   */
  password?: string;
  /** Path of libsoftokn3; defaults to `$VIRTCARD_SOFTOKN` or the first one found in the usual library directories. */
  softoknPath?: string;
}

function multiarchTriplet(): string | undefined {
  const triplets: Partial<Record<string, string>> = {
    x64: 'x86_64-linux-gnu',
    arm64: 'aarch64-linux-gnu',
    arm: 'arm-linux-gnueabihf',
    ppc64: 'powerpc64le-linux-gnu',
    s390x: 's390x-linux-gnu',
    riscv64: 'riscv64-linux-gnu',
  };
  return triplets[process.arch];
}

/** Lists the paths where distributions install libsoftokn3, most likely first. */
export function softoknCandidates(): string[] {
  const triplet = multiarchTriplet();
  const directories = [
    ...(triplet === undefined ? [] : [`/usr/lib/${triplet}`, `/usr/lib/${triplet}/nss`]),
    '/usr/lib64',
    '/usr/lib64/nss',
    '/usr/lib',
    '/usr/lib/nss',
    '/usr/local/lib',
    '/opt/homebrew/lib',
    '/usr/local/opt/nss/lib',
  ];
  const names = process.platform === 'darwin' ? ['libsoftokn3.dylib'] : ['libsoftokn3.so'];
  return directories.flatMap((directory) => names.map((name) => path.join(directory, name)));
}

/** Returns the path of NSS's softokn module, or raises an error that explains how to install or name it. */
export function findSoftokn(explicitPath?: string): string {
  const configured = explicitPath ?? process.env[SOFTOKN_PATH_VARIABLE];
  if (configured !== undefined && configured !== '') {
    if (!existsSync(configured)) {
      throw new Error(`NSS softokn module not found at ${configured}; fix the path or unset ${SOFTOKN_PATH_VARIABLE}`);
    }
    return configured;
  }
  const found = softoknCandidates().find((candidate) => existsSync(candidate));
  if (found === undefined) {
    throw new Error(
      `NSS softokn module (libsoftokn3) not found in the usual library directories; ` +
        `install NSS (Debian: apt-get install libnss3) or set ${SOFTOKN_PATH_VARIABLE} to its path`,
    );
  }
  return found;
}

/** Strips an optional `sql:` prefix, checks that DIR contains an sql database, and returns the absolute directory. */
export function resolveDatabaseDirectory(directory: string): string {
  if (/^(dbm|extern|multiaccess|rdb):/.test(directory)) {
    throw new Error(`Unsupported NSS database type in "${directory}"; only sql databases (cert9.db, key4.db) are supported, given as sql:DIR or DIR`);
  }
  const bare = directory.startsWith('sql:') ? directory.slice('sql:'.length) : directory;
  const absolute = path.resolve(bare);

  if (!existsSync(absolute) || !statSync(absolute).isDirectory()) {
    throw new Error(`NSS database directory not found: ${absolute}; give the directory that contains cert9.db and key4.db`);
  }
  const missing = ['cert9.db', 'key4.db'].filter((file) => !existsSync(path.join(absolute, file)));
  if (missing.length > 0) {
    const legacy = existsSync(path.join(absolute, 'cert8.db')) ? ' It contains a legacy dbm database (cert8.db); convert it to the sql format with certutil.' : '';
    throw new Error(`No NSS sql database in ${absolute}: ${missing.join(' and ')} missing.${legacy} Create one with "certutil -N -d sql:${absolute}" or give another directory`);
  }
  return absolute;
}

/**
 * Builds softokn's C_Initialize parameters. The database is opened
 * read-only, so a read-only directory works and the store never changes it.
 */
export function softoknParameters(directory: string): string {
  if (directory.includes("'")) {
    throw new Error(`NSS database path ${directory} contains a single quote, which softokn's parameter syntax cannot carry; move or link the database to another path`);
  }
  return `configdir='sql:${directory}' certPrefix='' keyPrefix='' secmod='secmod.db' flags=readOnly,noModDB`;
}

/**
 * Opens the certificates named by `nicknames` and their private keys in an
 * NSS sql database.
 */
export async function openNssDatabase(options: NssDatabaseOptions): Promise<KeyStore> {
  if (options.nicknames.length === 0) {
    throw new Error('No certificate nicknames given for the NSS database; list them with "certutil -L -d sql:DIR"');
  }
  const directory = resolveDatabaseDirectory(options.directory);
  const modulePath = findSoftokn(options.softoknPath);

  try {
    return await openPkcs11Token({
      modulePath,
      libraryParameters: softoknParameters(directory),
      tokenLabel: NSS_DATABASE_TOKEN,
      labels: options.nicknames,
      ...(options.password === undefined ? {} : { pin: options.password }),
      description: `NSS database sql:${directory}`,
    });
  } catch (error) {
    if (error instanceof Pkcs11LabelNotFoundError) {
      const available = error.availableLabels.map((label) => `"${label}"`).join(', ') || 'none';
      throw new Error(`No certificate with nickname "${error.label}" in NSS database sql:${directory}; nicknames present: ${available}`);
    }
    if (error instanceof Pkcs11InitializeError) {
      throw new Error(
        `NSS softokn could not open the database sql:${directory} (${error.returnValue}); ` +
          `the files may be damaged or not an NSS database, so check them with "certutil -L -d sql:${directory}"`,
      );
    }
    if (error instanceof Pkcs11PinRejectedError) {
      throw new Error(`The password for NSS database sql:${directory} is wrong; it is the one set with "certutil -N" or "certutil -W"`);
    }
    throw error;
  }
}
