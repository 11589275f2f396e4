/**
 * A KeyStore for unit tests: RSA keys generated with node:crypto, opaque
 * bytes as certificates (the card never parses them) and a fixed PIN.
 */
import { constants, generateKeyPairSync, privateDecrypt, randomBytes, type KeyObject } from 'node:crypto';
import { KeyStoreError, type KeySlot, type KeyStore, type KeyStoreFailure } from '../../src/backends/key-store.js';

export interface MemoryKeyStoreOptions {
  /** Number of slots; 1 when omitted. */
  slots?: number;
  modulusBits?: number;
  pin?: string;
  /** Certificate length in bytes; longer than 256 when omitted, to exercise GET RESPONSE chains. */
  certificateLength?: number;
}

export class MemoryKeyStore implements KeyStore {
  readonly description = 'in-memory test keys';
  readonly slots: KeySlot[];
  readonly privateKeys: KeyObject[];
  readonly publicKeys: KeyObject[];
  private readonly pin: Buffer;
  /** Number of verifyPin calls, to check that the card calls the store every time. */
  pinChecks = 0;
  /** When set, rsaPrivateRaw rejects with this reason. */
  failWith: KeyStoreFailure | undefined;

  constructor(options: MemoryKeyStoreOptions = {}) {
    const count = options.slots ?? 1;
    const modulusBits = options.modulusBits ?? 1024;
    this.pin = Buffer.from(options.pin ?? '12345678', 'latin1');
    this.slots = [];
    this.privateKeys = [];
    this.publicKeys = [];
    for (let i = 0; i < count; i++) {
      const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: modulusBits });
      this.privateKeys.push(privateKey);
      this.publicKeys.push(publicKey);
      const certificate = new Uint8Array(randomBytes(options.certificateLength ?? 700));
      certificate[0] = 0x30;
      this.slots.push({ label: `key-${i}`, certificate, keyType: 'rsa', modulusBits });
    }
  }

  verifyPin(pin: Uint8Array): Promise<boolean> {
    this.pinChecks += 1;
    return Promise.resolve(Buffer.from(pin).equals(this.pin));
  }

  rsaPrivateRaw(index: number, input: Uint8Array): Promise<Uint8Array> {
    if (this.failWith !== undefined) return Promise.reject(new KeyStoreError(this.failWith, 'injected failure'));
    const key = this.privateKeys[index];
    if (key === undefined) return Promise.reject(new KeyStoreError('invalid-input', `no slot ${index}`));
    try {
      return Promise.resolve(new Uint8Array(privateDecrypt({ key, padding: constants.RSA_NO_PADDING }, input)));
    } catch (error) {
      return Promise.reject(new KeyStoreError('invalid-input', (error as Error).message));
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
