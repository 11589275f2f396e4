/**
 * The state of one PIV card application while it runs: the persistent card
 * state, the PIN and PUK, the management key session, key slots that come
 * from a key store, and saving after every change.
 */
import type { PinChecker } from '../card/pin.js';
import { encodeBerTlv } from '../iso7816/ber-tlv.js';
import { createDefaultCardState, DEFAULT_PIN, DEFAULT_PUK, type PinPolicy, type PivCardState, type SlotKey } from './card-state.js';
import {
  KEY_RETIRED_FIRST,
  KEY_RETIRED_LAST,
  TAG_CERT_RETIRED_FIRST,
  TAG_KEY_HISTORY,
  certificateTagForKey,
} from './constants.js';
import { ManagementKeyAuthenticator } from './management-key.js';
import { PivReferenceData } from './reference-data.js';
import { localKeyOperations, type SlotKeyOperations } from './slot-keys.js';

/** Destination of the changed card state, such as the encrypted state file. A card in memory only has none. */
export interface CardStateSink {
  save(state: PivCardState): Promise<void>;
}

/** A slot filled from a key store: its certificate (DER) and private-key operations. */
export interface ExternalSlot {
  readonly certificate: Uint8Array;
  readonly operations: SlotKeyOperations;
}

export interface PivApplicationOptions {
  readonly state: PivCardState;
  /** Receives the state after every change; omitted for a card whose changes end with the process. */
  readonly sink?: CardStateSink;
  /** Slots whose keys live in a key store, by key reference. Keys generated on the card take precedence. */
  readonly externalSlots?: ReadonlyMap<number, ExternalSlot>;
  /** Checks the PIN against a key store instead of the card state; the PIN then cannot be changed on the card. */
  readonly pinCheck?: PinChecker;
}

/** Encodes a certificate container (SP 800-73-4 part 1 appendix A): 70 certificate, 71 CertInfo 00, FE empty. */
export function encodeCertificateContainer(certificate: Uint8Array): Uint8Array {
  return Uint8Array.from(
    Buffer.concat([
      encodeBerTlv({ tag: 0x70, value: certificate }),
      encodeBerTlv({ tag: 0x71, value: Uint8Array.of(0x00) }),
      encodeBerTlv({ tag: 0xfe, value: new Uint8Array(0) }),
    ]),
  );
}

export class PivApplication {
  readonly state: PivCardState;
  readonly pin: PivReferenceData;
  readonly puk: PivReferenceData;
  readonly management: ManagementKeyAuthenticator;
  private readonly sink: CardStateSink | undefined;
  private readonly externalSlots: ReadonlyMap<number, ExternalSlot>;
  /** Whether a PIN VERIFY happened since the last use of a key with PIN policy "always". */
  private pinUseGranted = false;

  constructor(options: PivApplicationOptions) {
    this.state = options.state;
    this.sink = options.sink;
    this.externalSlots = options.externalSlots ?? new Map();
    this.pin = new PivReferenceData(this.state.pin, options.pinCheck);
    this.puk = new PivReferenceData(this.state.puk);
    this.management = new ManagementKeyAuthenticator(() => this.state.managementKey);
  }

  /** Clears the PIN and management key security status, as a card reset does. Counters are kept. */
  resetSecurityStatus(): void {
    this.pinUseGranted = false;
    this.pin.resetSecurityStatus();
    this.puk.resetSecurityStatus();
    this.management.reset();
  }

  /** Records a successful PIN VERIFY, which allows one use of a key with PIN policy "always". */
  grantPinUse(): void {
    this.pinUseGranted = true;
  }

  /** Clears the grant of `grantPinUse`; a logout (VERIFY with P1 FF) does this. */
  revokePinUse(): void {
    this.pinUseGranted = false;
  }

  /**
   * Checks whether a key with `policy` may be used now and, for "always",
   * uses up the PIN VERIFY that allowed it.
   */
  consumePinForKey(policy: PinPolicy): boolean {
    if (policy === 'never') return true;
    if (!this.pin.verified) return false;
    if (policy === 'once') return true;
    const granted = this.pinUseGranted;
    this.pinUseGranted = false;
    return granted;
  }

  /** Returns the key of slot `keyReference`: one generated on the card, else one from a key store. */
  keyOperations(keyReference: number): SlotKeyOperations | undefined {
    const local = this.state.keys.get(keyReference);
    if (local !== undefined) return localKeyOperations(local);
    return this.externalSlots.get(keyReference)?.operations;
  }

  /**
   * Returns the contents of data object `tag`. Certificates of key store
   * slots appear in their containers until PUT DATA replaces them. The key
   * history object is computed from the retired certificates unless one was
   * written.
   */
  getObject(tag: number): Uint8Array | undefined {
    const stored = this.state.objects.get(tag);
    if (stored !== undefined) return stored;

    for (const [keyReference, slot] of this.externalSlots) {
      if (certificateTagForKey(keyReference) === tag) return encodeCertificateContainer(slot.certificate);
    }
    if (tag === TAG_KEY_HISTORY) return this.keyHistory();
    return undefined;
  }

  /** Number of retired key slots whose certificate container is present. */
  private retiredCertificateCount(): number {
    let count = 0;
    for (let reference = KEY_RETIRED_FIRST; reference <= KEY_RETIRED_LAST; reference++) {
      if (this.state.objects.has(TAG_CERT_RETIRED_FIRST + (reference - KEY_RETIRED_FIRST))) count++;
    }
    return count;
  }

  /**
   * Builds the key history object of SP 800-73-4 part 1: the number of
   * retired keys with on-card certificates (C1) and with off-card ones (C2),
   * then the error detection code (FE).
   */
  private keyHistory(): Uint8Array {
    return Uint8Array.of(0xc1, 0x01, this.retiredCertificateCount(), 0xc2, 0x01, 0x00, 0xfe, 0x00);
  }

  /** Stores or, for an empty value, deletes data object `tag`, then saves the state. */
  async putObject(tag: number, value: Uint8Array): Promise<void> {
    if (value.length === 0) this.state.objects.delete(tag);
    else this.state.objects.set(tag, Uint8Array.from(value));
    await this.save();
  }

  /** Stores a generated key in slot `keyReference`, then saves the state. */
  async setKey(keyReference: number, key: SlotKey): Promise<void> {
    this.state.keys.set(keyReference, key);
    await this.save();
  }

  /**
   * Sets the retry counts of PIN and PUK and, as a YubiKey does, resets both
   * to their defaults (123456 and 12345678), then saves the state.
   */
  async setRetries(pinRetries: number, pukRetries: number): Promise<void> {
    Object.assign(this.state.pin, { value: Buffer.from(DEFAULT_PIN, 'latin1'), maxRetries: pinRetries, triesLeft: pinRetries });
    Object.assign(this.state.puk, { value: Buffer.from(DEFAULT_PUK, 'latin1'), maxRetries: pukRetries, triesLeft: pukRetries });
    this.resetSecurityStatus();
    await this.save();
  }

  /**
   * Returns the card to a new card's state: default PIN, PUK and management
   * key, no keys, and only a fresh CHUID, CCC and discovery object. Then
   * saves the state.
   */
  async resetToFactory(): Promise<void> {
    const fresh = createDefaultCardState();
    // PivReferenceData keeps references to the pin and puk objects, so they change in place.
    Object.assign(this.state.pin, fresh.pin);
    Object.assign(this.state.puk, fresh.puk);
    this.state.managementKey = fresh.managementKey;
    this.state.objects = fresh.objects;
    this.state.keys = fresh.keys;
    this.resetSecurityStatus();
    await this.save();
  }

  /** Saves the state, when the card has a state file. */
  async save(): Promise<void> {
    await this.sink?.save(this.state);
  }
}
