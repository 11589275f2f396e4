/**
 * A key store on any PKCS#11 module (SoftHSM2, OpenSC, NSS's softokn, a
 * hardware token) through pkcs11js.
 *
 * Certificates are read when the store opens. Private keys are usually
 * private objects that a token shows only after C_Login, so their handles are
 * looked up by CKA_ID after each successful login.
 */
import { X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import { realpathSync } from 'node:fs';
import type * as Pkcs11Types from 'pkcs11js';
import { logger } from '../log/logger.js';
import { KeyStoreError, type KeySlot, type KeyStore, type KeyStoreFailure } from './key-store.js';

// pkcs11js is a CommonJS native addon; require() gives its exports object as is.
const pkcs11js = createRequire(import.meta.url)('pkcs11js') as typeof Pkcs11Types;

const log = logger.child({ component: 'pkcs11' });

export interface Pkcs11TokenOptions {
  /** Path of the PKCS#11 module (shared library). */
  modulePath: string;
  /**
   * String passed to C_Initialize in the pReserved field, as NSS's softokn
   * expects (`configdir='sql:DIR' ...`). Other modules ignore it.
   */
  libraryParameters?: string;
  /** Label of the token to use (compared without trailing blanks). */
  tokenLabel?: string;
  /**
   * Index into the list of slots with a token present, used when `tokenLabel`
   * is not set. Without both, the first initialized token is used.
   */
  slotIndex?: number;
  /**
   * CKA_LABEL values of the certificates to present, in card order. Without
   * it, every certificate with a private key of the same CKA_ID is presented
   * in the order the token lists them.
   */
  labels?: readonly string[];
  /**
   * User PIN to check at open time: the store logs in, makes sure every
   * certificate has its private key, and logs out again so the card starts
   * unverified.
   */
  pin?: string;
  /** Replaces the default `description` (`PKCS#11 token "LABEL" in MODULE`). */
  description?: string;
}

/** Raised by `openPkcs11Token` when a requested CKA_LABEL has no certificate on the token. */
export class Pkcs11LabelNotFoundError extends Error {
  constructor(
    readonly label: string,
    readonly availableLabels: readonly string[],
    readonly tokenLabel: string,
  ) {
    const available = availableLabels.length > 0 ? availableLabels.map((l) => `"${l}"`).join(', ') : 'none';
    super(`No certificate with label "${label}" on token "${tokenLabel}"; labels present: ${available}`);
    this.name = 'Pkcs11LabelNotFoundError';
  }
}

/** Raised when the user PIN given to `openPkcs11Token` (or the NSS password) is rejected. */
export class Pkcs11PinRejectedError extends Error {
  constructor(readonly tokenLabel: string) {
    super(`The token "${tokenLabel}" rejected the PIN given at open time; check the PIN or password`);
    this.name = 'Pkcs11PinRejectedError';
  }
}

/** Raised when C_Initialize of a module fails, for example on a damaged NSS database. */
export class Pkcs11InitializeError extends Error {
  constructor(
    readonly modulePath: string,
    readonly returnValue: string,
  ) {
    super(`C_Initialize of PKCS#11 module ${modulePath} failed: ${returnValue}`);
    this.name = 'Pkcs11InitializeError';
  }
}

type Pkcs11Error = Error & { code: number };

function isPkcs11Error(error: unknown): error is Pkcs11Error {
  return error instanceof Error && typeof (error as { code?: unknown }).code === 'number' && /^CKR_/.test(error.message);
}

function hasCode(error: unknown, ...codes: number[]): boolean {
  return isPkcs11Error(error) && codes.includes(error.code);
}

/**
 * Maps a PKCS#11 return value of a private-key operation to the reason the
 * card reports. The groups follow libcacard 2.8 on NSS, where bad data,
 * lengths, arguments and keys become "wrong data" (69 84). NSS softokn
 * 3.87, for example, returns CKR_ARGUMENTS_BAD for an input not below the
 * modulus.
 */
export function failureForReturnValue(code: number): KeyStoreFailure {
  switch (code) {
    case pkcs11js.CKR_USER_NOT_LOGGED_IN:
      return 'not-logged-in';
    case pkcs11js.CKR_ARGUMENTS_BAD:
    case pkcs11js.CKR_DATA_LEN_RANGE:
    case pkcs11js.CKR_DATA_INVALID:
    case pkcs11js.CKR_ENCRYPTED_DATA_LEN_RANGE:
    case pkcs11js.CKR_ENCRYPTED_DATA_INVALID:
    case pkcs11js.CKR_BUFFER_TOO_SMALL:
    case pkcs11js.CKR_KEY_HANDLE_INVALID:
    case pkcs11js.CKR_KEY_SIZE_RANGE:
    case pkcs11js.CKR_KEY_TYPE_INCONSISTENT:
      return 'invalid-input';
    case pkcs11js.CKR_HOST_MEMORY:
    case pkcs11js.CKR_DEVICE_MEMORY:
      return 'no-memory';
    default:
      return 'failed';
  }
}

/** Return values after which C_Decrypt with CKM_RSA_X_509 cannot work for a key, so C_Sign is tried. */
const DECRYPT_UNUSABLE = [
  pkcs11js.CKR_KEY_FUNCTION_NOT_PERMITTED,
  pkcs11js.CKR_MECHANISM_INVALID,
  pkcs11js.CKR_KEY_TYPE_INCONSISTENT,
  pkcs11js.CKR_FUNCTION_NOT_SUPPORTED,
];

/** Resolved module paths initialized by a store of this process; a module can be initialized only once. */
const modulesInUse = new Set<string>();

interface CertificateObject {
  label: string;
  id: Buffer;
  der: Buffer;
}

interface Pkcs11Slot extends KeySlot {
  readonly id: Buffer;
  /** RSA modulus from the certificate, big-endian without leading zeros; empty for EC keys. */
  readonly modulus: Buffer;
}

function trimPadded(text: string): string {
  return text.replace(/[ \0]+$/, '');
}

function describeSlot(label: string, der: Buffer, id: Buffer): Pkcs11Slot {
  let publicKey;
  try {
    publicKey = new X509Certificate(der).publicKey;
  } catch (error) {
    throw new Error(`The certificate labelled "${label}" is not a valid X.509 certificate: ${(error as Error).message}`);
  }
  const keyType = publicKey.asymmetricKeyType;
  if (keyType !== 'rsa' && keyType !== 'ec') {
    throw new Error(`The certificate labelled "${label}" has an unsupported ${String(keyType)} key; use an RSA or EC certificate`);
  }
  // NOTE: EC slots report 0 bits because modulusBits is defined for RSA only.
  const modulusBits = keyType === 'rsa' ? (publicKey.asymmetricKeyDetails?.modulusLength ?? 0) : 0;
  const modulus = keyType === 'rsa' ? Buffer.from(publicKey.export({ format: 'jwk' }).n ?? '', 'base64url') : Buffer.alloc(0);
  return { label, certificate: new Uint8Array(der), keyType, modulusBits, modulus, id };
}

/** A PKCS#11 key store on one read-only session of one token. */
class Pkcs11KeyStore implements KeyStore {
  readonly description: string;
  readonly needsLogin: boolean;
  /** Not readonly: `dropSlotsWithoutKey` may shorten it once, before the store is returned. */
  slots: readonly Pkcs11Slot[];

  private readonly module: Pkcs11Types.PKCS11;
  private readonly modulePath: string;
  private readonly session: Buffer;
  private readonly tokenLabel: string;
  /** Private key handle per slot, valid while logged in or for a token that needs no login. */
  private keyHandles: (Buffer | undefined)[] = [];
  /** Slots whose key rejected CKM_RSA_X_509 decryption, so raw RSA goes through C_Sign. */
  private readonly signOnly = new Set<number>();
  private loggedIn = false;
  private closed = false;
  /** Tail of the chain that runs every token call of this store one after another. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(init: {
    module: Pkcs11Types.PKCS11;
    modulePath: string;
    session: Buffer;
    tokenLabel: string;
    slots: Pkcs11Slot[];
    description: string;
    needsLogin: boolean;
  }) {
    this.module = init.module;
    this.modulePath = init.modulePath;
    this.session = init.session;
    this.tokenLabel = init.tokenLabel;
    this.slots = init.slots;
    this.description = init.description;
    this.needsLogin = init.needsLogin;
    if (!this.needsLogin) this.findPrivateKeys();
  }

  /** Runs `operation` after every earlier call of this store has finished. */
  private serialize<T>(operation: () => Promise<T> | T): Promise<T> {
    const result = this.queue.then(operation);
    this.queue = result.catch(() => undefined);
    return result;
  }

  verifyPin(pin: Uint8Array): Promise<boolean> {
    // NOTE: pkcs11js takes the PIN as a string, so bytes that are not UTF-8 reach the token altered and fail as a wrong PIN.
    return this.serialize(() => this.login(Buffer.from(pin).toString('utf8')));
  }

  /** Logs out, then logs in as CKU_USER; returns false when the token rejects the PIN. */
  login(pin: string): boolean {
    this.assertOpen();
    this.logout();
    try {
      this.module.C_Login(this.session, pkcs11js.CKU_USER, pin);
    } catch (error) {
      if (hasCode(error, pkcs11js.CKR_PIN_INCORRECT, pkcs11js.CKR_PIN_LEN_RANGE, pkcs11js.CKR_PIN_INVALID)) {
        log.info({ token: this.tokenLabel }, 'PIN rejected by the token');
        return false;
      }
      if (hasCode(error, pkcs11js.CKR_PIN_LOCKED)) {
        throw new KeyStoreError('failed', `The user PIN of token "${this.tokenLabel}" is locked; unlock it with the SO PIN`);
      }
      throw new KeyStoreError('failed', `C_Login on token "${this.tokenLabel}" failed: ${(error as Error).message}`);
    }
    this.loggedIn = true;
    this.findPrivateKeys();
    return true;
  }

  private findPrivateKeys(): void {
    this.keyHandles = this.slots.map((slot) => this.findPrivateKey(slot.id));
  }

  /** Ends the login of this application, if any. */
  private logout(): void {
    this.loggedIn = false;
    if (this.needsLogin) this.keyHandles = [];
    try {
      this.module.C_Logout(this.session);
    } catch (error) {
      if (!hasCode(error, pkcs11js.CKR_USER_NOT_LOGGED_IN)) {
        log.warn({ token: this.tokenLabel, err: (error as Error).message }, 'C_Logout failed');
      }
    }
  }

  private findPrivateKey(id: Buffer): Buffer | undefined {
    const template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_ID, value: id },
    ];
    this.module.C_FindObjectsInit(this.session, template);
    try {
      return this.module.C_FindObjects(this.session) ?? undefined;
    } finally {
      this.module.C_FindObjectsFinal(this.session);
    }
  }

  /** Lists the labels of slots that have no private key; call while logged in or when no login is needed. */
  missingKeyLabels(): string[] {
    return this.slots.filter((_slot, index) => this.keyHandles[index] === undefined).map((slot) => slot.label);
  }

  /** Removes the slots whose certificate has no private key; call while logged in or when no login is needed. */
  dropSlotsWithoutKey(): void {
    const kept = this.slots.map((slot, index) => ({ slot, key: this.keyHandles[index] })).filter((entry) => entry.key !== undefined);
    this.slots = kept.map((entry) => entry.slot);
    this.keyHandles = kept.map((entry) => entry.key);
  }

  /** Ends the login that `login` started; for use before the store is returned. */
  endLogin(): void {
    this.logout();
  }

  rsaPrivateRaw(index: number, input: Uint8Array): Promise<Uint8Array> {
    return this.serialize(() => this.runRsaPrivateRaw(index, input));
  }

  private async runRsaPrivateRaw(index: number, input: Uint8Array): Promise<Uint8Array> {
    this.assertOpen();
    const slot = this.slots[index];
    if (slot === undefined) {
      throw new KeyStoreError('invalid-input', `No key slot ${index}; this store has ${this.slots.length} slots`);
    }
    if (slot.keyType !== 'rsa') {
      throw new KeyStoreError('failed', `Slot "${slot.label}" contains an EC key, but raw RSA needs an RSA key`);
    }
    const length = Math.ceil(slot.modulusBits / 8);
    if (input.length !== length) {
      throw new KeyStoreError('invalid-input', `Raw RSA input for slot "${slot.label}" is ${input.length} bytes; the modulus is ${length} bytes`);
    }
    // Checked here because tokens differ: NSS softokn returns CKR_ARGUMENTS_BAD, SoftHSM 2.6 CKR_GENERAL_ERROR.
    if (Buffer.compare(Buffer.from(input), slot.modulus) >= 0) {
      throw new KeyStoreError('invalid-input', `Raw RSA input for slot "${slot.label}" is not below the modulus`);
    }
    if (this.needsLogin && !this.loggedIn) {
      throw new KeyStoreError('not-logged-in', `Token "${this.tokenLabel}" needs a PIN verification before using the key of "${slot.label}"`);
    }
    const key = this.keyHandles[index];
    if (key === undefined) {
      // NOTE: 'not-logged-in' because libcacard returns the same status (69 85) for a key it cannot find.
      throw new KeyStoreError('not-logged-in', `Token "${this.tokenLabel}" has no private key with the CKA_ID of certificate "${slot.label}"`);
    }

    const output = await this.rawRsa(index, key, Buffer.from(input), length);
    if (output.length === length) return new Uint8Array(output);
    // Some modules drop leading zero bytes of the result; the card expects the full modulus length.
    const padded = new Uint8Array(length);
    padded.set(output, length - output.length);
    return padded;
  }

  /**
   * Applies CKM_RSA_X_509 with C_Decrypt, as libcacard does with NSS
   * (PK11_PrivDecryptRaw), and falls back to C_Sign for keys that may not
   * decrypt. NSS softokn 3.87 and SoftHSM 2.6.1 accept either call.
   */
  private async rawRsa(index: number, key: Buffer, input: Buffer, length: number): Promise<Buffer> {
    const mechanism = { mechanism: pkcs11js.CKM_RSA_X_509 };
    const label = this.slots[index]?.label ?? String(index);
    try {
      if (!this.signOnly.has(index)) {
        try {
          this.module.C_DecryptInit(this.session, mechanism, key);
          return await this.module.C_DecryptAsync(this.session, input, Buffer.alloc(length));
        } catch (error) {
          if (!hasCode(error, ...DECRYPT_UNUSABLE)) throw error;
          log.debug({ slot: label, err: (error as Error).message }, 'raw RSA decryption not permitted; using C_Sign');
          this.signOnly.add(index);
        }
      }
      this.module.C_SignInit(this.session, mechanism, key);
      return await this.module.C_SignAsync(this.session, input, Buffer.alloc(length));
    } catch (error) {
      if (!isPkcs11Error(error)) {
        throw new KeyStoreError('failed', `Raw RSA with the key of "${label}" failed: ${(error as Error).message}`);
      }
      const reason = failureForReturnValue(error.code);
      if (reason === 'not-logged-in') this.loggedIn = false;
      throw new KeyStoreError(reason, `Raw RSA with the key of "${label}" on token "${this.tokenLabel}" failed: ${error.message}`);
    }
  }

  close(): Promise<void> {
    return this.serialize(() => {
      if (this.closed) return;
      this.closed = true;
      this.logout();
      const steps: [string, () => void][] = [
        ['C_CloseSession', () => this.module.C_CloseSession(this.session)],
        ['C_Finalize', () => this.module.C_Finalize()],
      ];
      for (const [name, step] of steps) {
        try {
          step();
        } catch (error) {
          log.warn({ module: this.modulePath, err: (error as Error).message }, `${name} failed while closing the key store`);
        }
      }
      try {
        this.module.close();
      } finally {
        modulesInUse.delete(this.modulePath);
      }
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new KeyStoreError('failed', `The key store "${this.description}" is closed`);
  }
}

function loadModule(modulePath: string): Pkcs11Types.PKCS11 {
  const module = new pkcs11js.PKCS11();
  try {
    module.load(modulePath);
  } catch (error) {
    throw new Error(`Cannot load the PKCS#11 module ${modulePath}: ${(error as Error).message}; check the module path`);
  }
  return module;
}

/** Calls C_Initialize, asking for OS locking first because async calls run on libuv's thread pool. */
function initializeModule(module: Pkcs11Types.PKCS11, modulePath: string, libraryParameters: string | undefined): void {
  const parameters = libraryParameters === undefined ? {} : { libraryParameters };
  try {
    module.C_Initialize({ ...parameters, flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (error) {
    if (!hasCode(error, pkcs11js.CKR_CANT_LOCK)) {
      throw new Pkcs11InitializeError(modulePath, (error as Error).message);
    }
    // Every call is serialized by the store, so the module's own locking is not needed.
    module.C_Initialize(libraryParameters === undefined ? undefined : { libraryParameters });
  }
}

function selectSlot(module: Pkcs11Types.PKCS11, options: Pkcs11TokenOptions): { slot: Buffer; tokenLabel: string } {
  const slots = module.C_GetSlotList(true);
  const tokens = slots.map((slot) => {
    const info = module.C_GetTokenInfo(slot);
    return { slot, tokenLabel: trimPadded(info.label), initialized: (info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) !== 0 };
  });
  const describeToken = (token: (typeof tokens)[number]): string => `"${token.tokenLabel}"${token.initialized ? '' : ' (not initialized)'}`;
  const present = tokens.map(describeToken).join(', ') || 'none';

  if (options.tokenLabel !== undefined) {
    const match = tokens.find((token) => token.tokenLabel === options.tokenLabel);
    if (match === undefined) {
      throw new Error(`No token labelled "${options.tokenLabel}" in ${options.modulePath}; tokens present: ${present}`);
    }
    return match;
  }

  if (options.slotIndex === undefined) {
    const first = tokens.find((token) => token.initialized);
    if (first === undefined) throw new Error(`No initialized token in ${options.modulePath}; tokens present: ${present}`);
    return first;
  }

  const index = options.slotIndex;
  const match = tokens[index];
  if (match === undefined) {
    throw new Error(`No token at slot index ${index} in ${options.modulePath}; it has ${tokens.length} slots with a token (${present})`);
  }
  return match;
}

function readAttribute(module: Pkcs11Types.PKCS11, session: Buffer, object: Buffer, type: number): Buffer {
  const [attribute] = module.C_GetAttributeValue(session, object, [{ type }]);
  const value = attribute?.value;
  return Buffer.isBuffer(value) ? value : Buffer.alloc(0);
}

function listCertificates(module: Pkcs11Types.PKCS11, session: Buffer): CertificateObject[] {
  module.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_CERTIFICATE },
    { type: pkcs11js.CKA_CERTIFICATE_TYPE, value: pkcs11js.CKC_X_509 },
  ]);
  let handles: Buffer[];
  try {
    handles = module.C_FindObjects(session, 1000);
  } finally {
    module.C_FindObjectsFinal(session);
  }
  return handles.map((handle) => ({
    label: readAttribute(module, session, handle, pkcs11js.CKA_LABEL).toString('utf8'),
    id: readAttribute(module, session, handle, pkcs11js.CKA_ID),
    der: readAttribute(module, session, handle, pkcs11js.CKA_VALUE),
  }));
}

function chooseCertificates(certificates: CertificateObject[], labels: readonly string[] | undefined, tokenLabel: string): CertificateObject[] {
  if (labels === undefined) return certificates;
  return labels.map((label) => {
    const match = certificates.find((certificate) => certificate.label === label);
    if (match === undefined) {
      throw new Pkcs11LabelNotFoundError(label, certificates.map((certificate) => certificate.label), tokenLabel);
    }
    return match;
  });
}

/**
 * Opens a token of a PKCS#11 module and reads its certificates. The store
 * owns the module until `close()`: a module can be open only once per process.
 */
export async function openPkcs11Token(options: Pkcs11TokenOptions): Promise<KeyStore> {
  let modulePath: string;
  try {
    modulePath = realpathSync(options.modulePath);
  } catch {
    throw new Error(`PKCS#11 module not found: ${options.modulePath}; give the path of the module's shared library`);
  }
  if (modulesInUse.has(modulePath)) {
    throw new Error(`The PKCS#11 module ${options.modulePath} is already open in this process; close the other key store first`);
  }

  const module = loadModule(modulePath);
  try {
    initializeModule(module, options.modulePath, options.libraryParameters);
  } catch (error) {
    module.close();
    throw error;
  }
  modulesInUse.add(modulePath);

  let store: Pkcs11KeyStore | undefined;
  try {
    const { slot, tokenLabel } = selectSlot(module, options);
    const needsLogin = (module.C_GetTokenInfo(slot).flags & pkcs11js.CKF_LOGIN_REQUIRED) !== 0;
    const session = module.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
    const certificates = chooseCertificates(listCertificates(module, session), options.labels, tokenLabel);
    const slots = certificates.map((certificate) => describeSlot(certificate.label, certificate.der, certificate.id));
    const description = options.description ?? `PKCS#11 token "${tokenLabel}" in ${options.modulePath}`;
    store = new Pkcs11KeyStore({ module, modulePath, session, tokenLabel, slots, description, needsLogin });

    if (options.pin !== undefined && !store.login(options.pin)) throw new Pkcs11PinRejectedError(tokenLabel);
    if (options.pin !== undefined || !needsLogin) {
      checkPrivateKeys(store, tokenLabel, options.labels !== undefined);
      store.endLogin();
    }
    log.info({ token: tokenLabel, slots: store.slots.map((s) => s.label) }, 'PKCS#11 token opened');
    return store;
  } catch (error) {
    if (store !== undefined) {
      await store.close();
    } else {
      module.C_Finalize();
      module.close();
      modulesInUse.delete(modulePath);
    }
    throw error;
  }
}

/**
 * Checks that the certificates have private keys; call while the keys are
 * visible. Without explicit labels, certificates without a private key (the
 * CA certificate of an NSS database, for example) are dropped instead of
 * being an error.
 */
function checkPrivateKeys(store: Pkcs11KeyStore, tokenLabel: string, labelsGiven: boolean): void {
  const missing = store.missingKeyLabels();
  if (labelsGiven && missing.length > 0) {
    const names = missing.map((label) => `"${label}"`).join(', ');
    throw new Error(`Token "${tokenLabel}" has no private key with the CKA_ID of the certificates ${names}; import each key with its certificate's CKA_ID`);
  }
  if (!labelsGiven) store.dropSlotsWithoutKey();
}
