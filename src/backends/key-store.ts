/**
 * The interface every key backend implements: built-in test identity,
 * PEM/PKCS#12 files, NSS database, or any PKCS#11 token.
 *
 * Private key bytes never leave a key store. The card engine only requests
 * certificates, PIN checks and private-key operations.
 */

/** One certificate with its private key, as one PKI applet of the card presents it. */
export interface KeySlot {
  /** Name the user chose the slot by: NSS nickname, file name or PKCS#11 label. */
  readonly label: string;
  /** The X.509 certificate, DER-encoded. */
  readonly certificate: Uint8Array;
  /** Key algorithm; only RSA is supported by the CAC card. */
  readonly keyType: 'rsa' | 'ec';
  /** RSA modulus length in bits (2048 for the test identity). */
  readonly modulusBits: number;
}

/** Reason a private-key operation failed. The CAC card maps each reason to a status word. */
export type KeyStoreFailure =
  /** The input does not fit the key (wrong length, value not below the modulus). */
  | 'invalid-input'
  /** The store needs a login that has not happened. */
  | 'not-logged-in'
  /** The store ran out of memory. */
  | 'no-memory'
  /** Any other failure of the store or token. */
  | 'failed';

/** Raised by a key store when an operation fails. Never carries key material or a PIN. */
export class KeyStoreError extends Error {
  constructor(
    readonly reason: KeyStoreFailure,
    message: string,
  ) {
    super(message);
    this.name = 'KeyStoreError';
  }
}

export interface KeyStore {
  /** Human-readable description for logs, e.g. `NSS database sql:/path` (no secrets). */
  readonly description: string;

  /** The key slots in card order: the first is the card's first PKI applet. */
  readonly slots: readonly KeySlot[];

  /**
   * False when private-key operations work without `verifyPin`, as with an
   * NSS database that has no password; libcacard then returns 90 00 to a
   * VERIFY without data. Absent means true.
   */
  readonly needsLogin?: boolean;

  /**
   * Checks a PIN against the store itself (the NSS database password, the
   * token's user PIN, or the PIN configured for file-based keys) and returns
   * whether it is correct. On success the store is ready for private-key
   * operations. The caller, not the store, counts failed attempts.
   */
  verifyPin(pin: Uint8Array): Promise<boolean>;

  /**
   * Performs the raw RSA private-key operation (no padding added or removed)
   * with the key of slot `index`. The input must be as long as the modulus.
   * Rejects with `KeyStoreError`.
   */
  rsaPrivateRaw(index: number, input: Uint8Array): Promise<Uint8Array>;

  /** Ends any login and releases the store's resources. */
  close(): Promise<void>;
}
