/**
 * A key store whose private keys are node:crypto KeyObjects in this
 * process: the base of the key-file and built-in identity backends.
 */
import { constants, createPublicKey, privateDecrypt, X509Certificate, type KeyObject } from 'node:crypto';
import { KeyStoreError, type KeySlot, type KeyStore } from './key-store.js';

/** PIN length limits in bytes of OpenSC's CAC driver, which sends the PIN padded with FF to 8 bytes. */
export const MIN_CARD_PIN_BYTES = 4;
export const MAX_CARD_PIN_BYTES = 8;

/** Checks a PIN candidate and returns whether it is correct; never logs or keeps it. */
export type PinCheck = (pin: Buffer) => Promise<boolean>;

interface MemorySlot extends KeySlot {
  readonly privateKey: KeyObject;
  /** RSA modulus, big-endian without leading zeros. */
  readonly modulus: Buffer;
}

/** Raises an error naming `source` unless the PIN is 4 to 8 bytes long, so a guest using OpenSC can enter it. */
export function checkCardPinLength(pin: string, source: string): void {
  const length = Buffer.byteLength(pin, 'utf8');
  if (length < MIN_CARD_PIN_BYTES || length > MAX_CARD_PIN_BYTES) {
    throw new Error(`The ${source} is ${length} bytes long; it must be ${MIN_CARD_PIN_BYTES} to ${MAX_CARD_PIN_BYTES} bytes, the PIN lengths OpenSC accepts for CAC cards`);
  }
}

/**
 * Pairs a DER certificate with its RSA private key after checking that both
 * hold the same public key. `source` names the files in error messages.
 */
export function createMemorySlot(label: string, certificate: Buffer, privateKey: KeyObject, source: string): MemorySlot {
  let publicKey: KeyObject;
  try {
    publicKey = new X509Certificate(certificate).publicKey;
  } catch (error) {
    throw new Error(`The certificate of ${source} is not a valid X.509 certificate: ${(error as Error).message}`);
  }
  if (privateKey.asymmetricKeyType !== 'rsa' || publicKey.asymmetricKeyType !== 'rsa') {
    throw new Error(`The key of ${source} is ${String(privateKey.asymmetricKeyType)}, but the CAC card supports only RSA keys; use an RSA key and certificate`);
  }

  const certificateKey = publicKey.export({ type: 'spki', format: 'der' });
  const derivedKey = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  if (!certificateKey.equals(derivedKey)) {
    throw new Error(`The private key of ${source} does not belong to its certificate; give the key the certificate was issued for`);
  }

  const modulus = Buffer.from(publicKey.export({ format: 'jwk' }).n ?? '', 'base64url');
  const modulusBits = publicKey.asymmetricKeyDetails?.modulusLength ?? modulus.length * 8;
  return { label, certificate: new Uint8Array(certificate), keyType: 'rsa', modulusBits, privateKey, modulus };
}

/** A key store over KeyObjects; the PIN check is supplied by the backend. */
export class MemoryKeyStore implements KeyStore {
  readonly description: string;
  readonly slots: readonly KeySlot[];
  readonly needsLogin = true;
  private memorySlots: MemorySlot[];
  private readonly checkPin: PinCheck;
  private loggedIn = false;
  private closed = false;

  constructor(description: string, slots: MemorySlot[], checkPin: PinCheck) {
    this.description = description;
    this.memorySlots = slots;
    this.slots = slots.map(({ label, certificate, keyType, modulusBits }) => ({ label, certificate, keyType, modulusBits }));
    this.checkPin = checkPin;
  }

  /** Checks the PIN; a wrong PIN also ends an earlier login, as C_Logout before C_Login does on a token. */
  async verifyPin(pin: Uint8Array): Promise<boolean> {
    if (this.closed) throw new KeyStoreError('failed', `The key store "${this.description}" is closed`);
    this.loggedIn = false;
    const correct = await this.checkPin(Buffer.from(pin));
    this.loggedIn = correct;
    return correct;
  }

  rsaPrivateRaw(index: number, input: Uint8Array): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new KeyStoreError('failed', `The key store "${this.description}" is closed`));
    const slot = this.memorySlots[index];
    if (slot === undefined) {
      return Promise.reject(new KeyStoreError('invalid-input', `No key slot ${index}; this store has ${this.memorySlots.length} slots`));
    }
    const length = Math.ceil(slot.modulusBits / 8);
    if (input.length !== length) {
      return Promise.reject(new KeyStoreError('invalid-input', `Raw RSA input for slot "${slot.label}" is ${input.length} bytes; the modulus is ${length} bytes`));
    }
    if (Buffer.compare(Buffer.from(input), slot.modulus) >= 0) {
      return Promise.reject(new KeyStoreError('invalid-input', `Raw RSA input for slot "${slot.label}" is not below the modulus`));
    }
    if (!this.loggedIn) {
      return Promise.reject(new KeyStoreError('not-logged-in', `The key of "${slot.label}" needs a PIN verification first`));
    }

    let output: Buffer;
    try {
      output = privateDecrypt({ key: slot.privateKey, padding: constants.RSA_NO_PADDING }, input);
    } catch (error) {
      return Promise.reject(new KeyStoreError('failed', `Raw RSA with the key of "${slot.label}" failed: ${(error as Error).message}`));
    }
    const result = new Uint8Array(length);
    result.set(output, length - output.length);
    return Promise.resolve(result);
  }

  close(): Promise<void> {
    this.closed = true;
    this.loggedIn = false;
    this.memorySlots = [];
    return Promise.resolve();
  }
}
