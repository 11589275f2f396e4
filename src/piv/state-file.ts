/**
 * The encrypted PIV card state file: the JSON of `card-state.ts`, encrypted
 * with AES-256-GCM under a key that scrypt derives from a passphrase.
 *
 * The file is JSON itself:
 * `{ format, version, kdf: { name: "scrypt", salt, N, r, p }, cipher: "aes-256-gcm", iv, tag, ciphertext }`
 * with binary fields in base64. The header fields are the GCM additional
 * data, so changing any of them makes decryption fail. Every save writes a
 * fresh IV to a temporary file with mode 0600 and renames it over the old
 * file, so a crash leaves either the old or the new state.
 */
import { createCipheriv, createDecipheriv, randomBytes, scrypt, type ScryptOptions } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { logger } from '../log/logger.js';
import { parseCardState, serializeCardState, type PivCardState } from './card-state.js';

const log = logger.child({ component: 'piv-state' });

const FORMAT = 'virtcard-piv-state';
const VERSION = 1;
const CIPHER = 'aes-256-gcm';
const KEY_LENGTH = 32;
const IV_LENGTH = 12;

/** scrypt cost parameters for new files: N = 2^15, r = 8, p = 1 (about 32 MiB of memory). */
export const DEFAULT_SCRYPT_PARAMETERS = { N: 32768, r: 8, p: 1 } as const;

interface ScryptParameters {
  N: number;
  r: number;
  p: number;
}

interface StateFileEnvelope {
  format: string;
  version: number;
  kdf: { name: string; salt: string } & ScryptParameters;
  cipher: string;
  iv: string;
  tag: string;
  ciphertext: string;
}

/** Raised when the state file cannot be read, decrypted or parsed; the message names the file and the fix. */
export class StateFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateFileError';
  }
}

function deriveKey(passphrase: string, salt: Uint8Array, parameters: ScryptParameters): Promise<Buffer> {
  // maxmem must cover 128 * N * r bytes, plus headroom for OpenSSL's own buffers.
  const options: ScryptOptions = { ...parameters, maxmem: 256 * parameters.N * parameters.r };
  return new Promise((resolve, reject) => {
    scrypt(passphrase, salt, KEY_LENGTH, options, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

function additionalData(envelope: Pick<StateFileEnvelope, 'format' | 'version' | 'kdf' | 'cipher'>): Buffer {
  const { format, version, kdf, cipher } = envelope;
  return Buffer.from(JSON.stringify({ format, version, kdf, cipher }), 'utf8');
}

/**
 * An open state file: the derived key stays in memory so saves need no
 * second scrypt run. Saves run one at a time in call order.
 */
export class PivStateFile {
  private queue: Promise<void> = Promise.resolve();

  private constructor(
    readonly path: string,
    private readonly key: Buffer,
    private readonly salt: Buffer,
    private readonly parameters: ScryptParameters,
  ) {}

  /**
   * Opens `path` with `passphrase`: decrypts the state when the file exists,
   * otherwise calls `createState` and writes the new file. Raises
   * `StateFileError` for a wrong passphrase or a damaged file.
   */
  static async open(
    path: string,
    passphrase: string,
    createState: () => PivCardState,
    parameters: ScryptParameters = DEFAULT_SCRYPT_PARAMETERS,
  ): Promise<{ file: PivStateFile; state: PivCardState; created: boolean }> {
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        const code = (error as NodeJS.ErrnoException).code ?? 'read failed';
        throw new StateFileError(`cannot read the PIV state file ${path} (${code}); check the path and its permissions`);
      }
    }

    if (text === undefined) {
      const salt = randomBytes(16);
      const file = new PivStateFile(path, await deriveKey(passphrase, salt, parameters), salt, parameters);
      const state = createState();
      await file.save(state);
      log.info({ path }, 'created a new PIV card state file');
      return { file, state, created: true };
    }

    const envelope = parseEnvelope(text, path);
    const salt = Buffer.from(envelope.kdf.salt, 'base64');
    const fileParameters = { N: envelope.kdf.N, r: envelope.kdf.r, p: envelope.kdf.p };
    const key = await deriveKey(passphrase, salt, fileParameters);
    const plaintext = decrypt(envelope, key, path);
    return { file: new PivStateFile(path, key, salt, fileParameters), state: parseCardState(plaintext), created: false };
  }

  /** Encrypts `state` and replaces the file with it; resolves when the new file is in place. */
  save(state: PivCardState): Promise<void> {
    const plaintext = serializeCardState(state);
    const run = (): Promise<void> => this.write(plaintext);
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async write(plaintext: string): Promise<void> {
    const header = {
      format: FORMAT,
      version: VERSION,
      kdf: { name: 'scrypt', salt: this.salt.toString('base64'), ...this.parameters },
      cipher: CIPHER,
    };
    const iv = randomBytes(IV_LENGTH);
    const cipher = createCipheriv(CIPHER, this.key, iv);
    cipher.setAAD(additionalData(header));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const envelope: StateFileEnvelope = {
      ...header,
      iv: iv.toString('base64'),
      tag: cipher.getAuthTag().toString('base64'),
      ciphertext: ciphertext.toString('base64'),
    };

    const temporary = `${this.path}.${process.pid}.tmp`;
    const handle = await open(temporary, 'w', 0o600);
    try {
      await handle.writeFile(`${JSON.stringify(envelope, null, 2)}\n`, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await rename(temporary, this.path);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
  }
}

function parseEnvelope(text: string, path: string): StateFileEnvelope {
  let envelope: Partial<StateFileEnvelope>;
  try {
    envelope = JSON.parse(text) as Partial<StateFileEnvelope>;
  } catch {
    throw new StateFileError(`the PIV state file ${path} is not JSON; restore it from a backup or move it away to start a new card`);
  }
  const kdf = envelope.kdf;
  if (
    envelope.format !== FORMAT ||
    envelope.version !== VERSION ||
    envelope.cipher !== CIPHER ||
    kdf?.name !== 'scrypt' ||
    typeof kdf.salt !== 'string' ||
    ![kdf.N, kdf.r, kdf.p].every((value) => Number.isInteger(value) && (value) > 0) ||
    typeof envelope.iv !== 'string' ||
    typeof envelope.tag !== 'string' ||
    typeof envelope.ciphertext !== 'string'
  ) {
    throw new StateFileError(
      `the PIV state file ${path} is not a ${FORMAT} version ${VERSION} file; check that the path names a virtcard PIV state file`,
    );
  }
  return envelope as StateFileEnvelope;
}

function decrypt(envelope: StateFileEnvelope, key: Buffer, path: string): string {
  try {
    const decipher = createDecipheriv(CIPHER, key, Buffer.from(envelope.iv, 'base64'));
    decipher.setAAD(additionalData(envelope));
    decipher.setAuthTag(Buffer.from(envelope.tag, 'base64'));
    return Buffer.concat([decipher.update(Buffer.from(envelope.ciphertext, 'base64')), decipher.final()]).toString('utf8');
  } catch {
    throw new StateFileError(`cannot decrypt the PIV state file ${path}: the passphrase is wrong or the file is damaged`);
  }
}
