/**
 * Command-line options that choose the identity of an emulated card: an NSS
 * database, a PKCS#11 token, PEM or PKCS#12 files, or the built-in test
 * identity when none of them is given. Every command that makes a card adds
 * them with `addIdentityOptions` and opens the key store with `openIdentity`.
 *
 * A PIN or password never appears on the command line: it comes from a file
 * (`--pin-file`, `--pkcs12-password-file`) or from the VIRTCARD_PIN variable.
 */
import { readFile } from 'node:fs/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import { openBuiltinIdentity } from '../backends/builtin.js';
import { openKeyFiles, type KeyFileSlot } from '../backends/files.js';
import type { KeyStore } from '../backends/key-store.js';
import { openNssDatabase } from '../backends/nss.js';
import { openPkcs11Token } from '../backends/pkcs11.js';
import { logger } from '../log/logger.js';

const log = logger.child({ component: 'identity' });

/** Environment variable that carries the card PIN when no --pin-file is given. */
export const PIN_VARIABLE = 'VIRTCARD_PIN';

/** Environment variable that sets the built-in identity's directory when no --data-dir is given. */
export const DATA_DIR_VARIABLE = 'VIRTCARD_DATA_DIR';

/** Default number of wrong PIN entries before the card blocks. */
export const DEFAULT_PIN_RETRIES = 3;

/** The identity options as commander stores them after parsing. */
export interface IdentityOptions {
  nssDb?: string;
  cert: string[];
  pkcs11Module?: string;
  token?: string;
  certFile: string[];
  keyFile: string[];
  pkcs12: string[];
  pkcs12PasswordFile?: string;
  pinFile?: string;
  pinRetries: number;
  dataDir?: string;
}

/** Raised for a combination of identity options that cannot work together; the message names the fix. */
export class IdentityOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IdentityOptionsError';
  }
}

/** Source of the card's certificates and keys, after the options were checked. */
export type IdentitySource =
  | { kind: 'nss'; directory: string; nicknames: string[] }
  | { kind: 'pkcs11'; modulePath: string; tokenLabel?: string; labels: string[] }
  /** Certificate/key pairs first, then PKCS#12 files, each in the order given. */
  | { kind: 'files'; certificateKeyPairs: Array<{ certificate: string; key: string }>; pkcs12Files: string[]; pkcs12PasswordFile?: string }
  | { kind: 'builtin'; dataDir?: string };

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parsePinRetries(value: string): number {
  const retries = Number(value);
  // The CAC card reports tries left in the low nibble of SW 63 Cx, so 15 is the maximum.
  if (!Number.isInteger(retries) || retries < 1 || retries > 15) {
    throw new InvalidArgumentError(`invalid PIN retry count "${value}": use a whole number from 1 to 15.`);
  }
  return retries;
}

/** Adds the identity options to `command` and returns it. */
export function addIdentityOptions(command: Command): Command {
  return command
    .option('--nss-db <dir>', 'NSS database directory (sql:DIR or DIR) with the certificates and keys; PIN = database password')
    .option('--cert <name>', 'certificate nickname (--nss-db) or CKA_LABEL (--pkcs11-module), one per card applet, in card order; repeatable', collect, [])
    .option('--pkcs11-module <path>', 'PKCS#11 module (shared library) of the token that holds the keys; PIN = token user PIN')
    .option('--token <label>', 'label of the PKCS#11 token to use (default: the first token present)')
    .option('--cert-file <file>', 'certificate file (PEM or DER), paired in order with --key-file; repeatable', collect, [])
    .option('--key-file <file>', 'unencrypted private key file (PEM or DER, PKCS#1 or PKCS#8) for the --cert-file at the same position; repeatable', collect, [])
    .option('--pkcs12 <file>', 'PKCS#12 file with one certificate and its private key; card applets after the --cert-file ones; repeatable', collect, [])
    .option('--pkcs12-password-file <file>', 'file whose first line is the password of every --pkcs12 file')
    .option('--pin-file <file>', `file whose first line is the card PIN (default: $${PIN_VARIABLE}); required for file keys`)
    .addOption(
      new Option('--pin-retries <count>', 'wrong PIN entries before the card blocks').default(DEFAULT_PIN_RETRIES).argParser(parsePinRetries),
    )
    .option('--data-dir <dir>', `data directory of the built-in test identity (default: $${DATA_DIR_VARIABLE}, else $XDG_DATA_HOME/virtcard, else ~/.local/share/virtcard)`);
}

/**
 * Checks the options for conflicts and returns the identity source they
 * name. Raises `IdentityOptionsError` with a fix for every invalid mix.
 */
export function resolveIdentitySource(options: IdentityOptions): IdentitySource {
  const usesFiles = options.certFile.length > 0 || options.keyFile.length > 0 || options.pkcs12.length > 0;
  const sources = [
    options.nssDb !== undefined ? '--nss-db' : undefined,
    options.pkcs11Module !== undefined ? '--pkcs11-module' : undefined,
    usesFiles ? '--cert-file/--key-file/--pkcs12' : undefined,
    options.dataDir !== undefined ? '--data-dir' : undefined,
  ].filter((name): name is string => name !== undefined);

  if (sources.length > 1) {
    throw new IdentityOptionsError(`${sources.join(' and ')} choose different identities; give only one of them`);
  }
  if (options.cert.length > 0 && options.nssDb === undefined && options.pkcs11Module === undefined) {
    throw new IdentityOptionsError('--cert names a certificate in an NSS database or PKCS#11 token; add --nss-db or --pkcs11-module');
  }
  if (options.token !== undefined && options.pkcs11Module === undefined) {
    throw new IdentityOptionsError('--token selects a token of a PKCS#11 module; add --pkcs11-module');
  }
  if (options.pkcs12PasswordFile !== undefined && options.pkcs12.length === 0) {
    throw new IdentityOptionsError('--pkcs12-password-file is for --pkcs12 files; add --pkcs12 or drop it');
  }

  if (options.nssDb !== undefined) {
    if (options.cert.length === 0) {
      throw new IdentityOptionsError(
        `--nss-db ${options.nssDb} needs the certificate nicknames: add --cert NICK for each (list them with "certutil -L -d sql:${options.nssDb}")`,
      );
    }
    return { kind: 'nss', directory: options.nssDb, nicknames: options.cert };
  }

  if (options.pkcs11Module !== undefined) {
    return {
      kind: 'pkcs11',
      modulePath: options.pkcs11Module,
      ...(options.token === undefined ? {} : { tokenLabel: options.token }),
      labels: options.cert,
    };
  }

  if (usesFiles) {
    if (options.certFile.length !== options.keyFile.length) {
      throw new IdentityOptionsError(
        `${options.certFile.length} --cert-file and ${options.keyFile.length} --key-file options given; give one --key-file for each --cert-file`,
      );
    }
    const certificateKeyPairs = options.certFile.map((certificate, index) => ({
      certificate,
      key: options.keyFile[index] ?? '',
    }));
    return {
      kind: 'files',
      certificateKeyPairs,
      pkcs12Files: options.pkcs12,
      ...(options.pkcs12PasswordFile === undefined ? {} : { pkcs12PasswordFile: options.pkcs12PasswordFile }),
    };
  }

  const dataDir = options.dataDir ?? process.env[DATA_DIR_VARIABLE];
  return { kind: 'builtin', ...(dataDir ? { dataDir } : {}) };
}

/** Reads the first line of a secret file without its line ending; the message never contains the content. */
export async function readSecretFile(file: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'read failed';
    throw new IdentityOptionsError(`cannot read the ${what} file ${file} (${code}); check the path and its permissions`);
  }
  const line = text.split(/\r?\n/, 1)[0] ?? '';
  if (line.length === 0) throw new IdentityOptionsError(`the ${what} file ${file} is empty; put the ${what} on its first line`);
  return line;
}

/** Returns the card PIN from --pin-file or VIRTCARD_PIN, or undefined when neither is set. */
export async function readPin(options: Pick<IdentityOptions, 'pinFile'>): Promise<string | undefined> {
  if (options.pinFile !== undefined) return readSecretFile(options.pinFile, 'PIN');
  const fromEnvironment = process.env[PIN_VARIABLE];
  return fromEnvironment === undefined || fromEnvironment === '' ? undefined : fromEnvironment;
}

/** Opens the key store the identity options name; raises `IdentityOptionsError` for invalid options. */
export async function openIdentity(options: IdentityOptions): Promise<KeyStore> {
  const source = resolveIdentitySource(options);
  const pin = await readPin(options);

  switch (source.kind) {
    case 'nss':
      return openNssDatabase({
        directory: source.directory,
        nicknames: source.nicknames,
        ...(pin === undefined ? {} : { password: pin }),
      });
    case 'pkcs11':
      return openPkcs11Token({
        modulePath: source.modulePath,
        ...(source.tokenLabel === undefined ? {} : { tokenLabel: source.tokenLabel }),
        ...(source.labels.length === 0 ? {} : { labels: source.labels }),
        ...(pin === undefined ? {} : { pin }),
      });
    case 'files':
      return openFileIdentity(source, pin);
    case 'builtin':
      return openBuiltin(source.dataDir, pin);
  }
}

async function openFileIdentity(source: Extract<IdentitySource, { kind: 'files' }>, pin: string | undefined): Promise<KeyStore> {
  if (pin === undefined) {
    throw new IdentityOptionsError(`key files need a card PIN: put it in a file and add --pin-file FILE, or set ${PIN_VARIABLE}`);
  }
  const password =
    source.pkcs12PasswordFile === undefined ? undefined : await readSecretFile(source.pkcs12PasswordFile, 'PKCS#12 password');

  const slots: KeyFileSlot[] = [...source.certificateKeyPairs];
  for (const pkcs12 of source.pkcs12Files) slots.push(password === undefined ? { pkcs12 } : { pkcs12, password });
  return openKeyFiles({ slots, pin });
}

async function openBuiltin(dataDir: string | undefined, pin: string | undefined): Promise<KeyStore> {
  const identity = await openBuiltinIdentity({
    ...(dataDir === undefined ? {} : { dataDir }),
    ...(pin === undefined ? {} : { pin }),
  });

  if (!identity.created) {
    log.info({ directory: identity.directory, caCertificate: identity.caCertificatePath }, 'using the built-in test identity');
    return identity.store;
  }

  // Written to the terminal, not the log, and only now: the identity stores a hash of
  // the generated PIN, so this is the user's only chance to learn it.
  const lines = [`virtcard: created the built-in test identity in ${identity.directory}`];
  if (pin === undefined && identity.pin !== undefined) {
    lines.push(`virtcard: card PIN: ${identity.pin} (shown only this once; note it now)`);
  }
  lines.push(`virtcard: CA certificate: ${identity.caCertificatePath} (import it where the card's certificates must be trusted)`);
  process.stderr.write(`${lines.join('\n')}\n`);
  return identity.store;
}
