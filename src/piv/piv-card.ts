/**
 * Builds a virtual PIV card: the card engine with the PIV applet as its only
 * applet, from a card state (in memory or from the encrypted state file)
 * and, optionally, key store slots for 9A, 9C and 9D.
 */
import type { KeyStore } from '../backends/key-store.js';
import { EmulatedReader } from '../card/emulated-reader.js';
import { PinState } from '../card/pin.js';
import { VirtualCard } from '../card/virtual-card.js';
import { encodeCommandApdu, MAX_EXTENDED_LE, MAX_SHORT_LE, parseCommandApdu } from '../iso7816/apdu.js';
import { createDefaultCardState, type PivCardState } from './card-state.js';
import { KEY_DIGITAL_SIGNATURE, KEY_KEY_MANAGEMENT, KEY_PIV_AUTHENTICATION, PIV_ATR } from './constants.js';
import { PivApplet } from './piv-applet.js';
import { PivApplication, type CardStateSink, type ExternalSlot } from './piv-application.js';
import type { PivReferenceData } from './reference-data.js';
import { storeKeyOperations } from './slot-keys.js';

/** Slots that key store certificates fill, in store order. */
export const STORE_SLOT_ORDER = [KEY_PIV_AUTHENTICATION, KEY_DIGITAL_SIGNATURE, KEY_KEY_MANAGEMENT] as const;

/**
 * The card engine's view of the PIV PIN. The engine only reads the verified
 * state and resets it; VERIFY runs inside the PIV applet, so the engine's
 * own VERIFY (reachable only before PIV is selected) gets the PIN status.
 */
class PivPinState extends PinState {
  constructor(private readonly pivPin: PivReferenceData) {
    super(() => Promise.resolve(false));
  }

  override get verified(): boolean {
    return this.pivPin.verified;
  }

  override get remainingTries(): number {
    return this.pivPin.triesLeft;
  }

  override get blocked(): boolean {
    return this.pivPin.blocked;
  }

  override resetSecurityStatus(): void {
    this.pivPin.resetSecurityStatus();
  }

  override status(): number {
    return this.pivPin.status();
  }

  override verify(): Promise<number> {
    return Promise.resolve(this.pivPin.status());
  }
}

/**
 * Returns `command` with the largest Le added when it is a case 3 command
 * (data, no Le), else `command` itself. PIV hosts such as yubico-piv-tool
 * send SELECT and GENERAL AUTHENTICATE without Le and expect the response
 * data at once, as T=1 cards return it, where the card engine's sizing rule
 * would hold the data back for GET RESPONSE.
 */
export function addMaximumLe(command: Uint8Array): Uint8Array {
  const parsed = parseCommandApdu(command);
  if (!parsed.ok || parsed.apdu.apduCase !== 3) return command;
  const { cla, ins, p1, p2, data, extended } = parsed.apdu;
  return encodeCommandApdu({ cla, ins, p1, p2, data, le: extended ? MAX_EXTENDED_LE : MAX_SHORT_LE, extended });
}

/** A virtual card whose reset also clears the PIV management key session and a half-received command chain. */
export class PivCard extends VirtualCard {
  constructor(
    readonly application: PivApplication,
    private readonly applet: PivApplet,
  ) {
    super({ atr: PIV_ATR, applets: [applet], pin: new PivPinState(application.pin) });
  }

  override transmit(command: Uint8Array): Promise<Uint8Array> {
    return super.transmit(addMaximumLe(command));
  }

  override reset(): void {
    super.reset();
    this.application.resetSecurityStatus();
    this.applet.reset();
  }
}

export interface PivCardOptions {
  /** The card state; a new default card (PIN 123456, PUK 12345678, default management key) when omitted. */
  state?: PivCardState;
  /** Receives the state after every change, e.g. the state file. */
  sink?: CardStateSink;
  /**
   * A key store whose first three certificates fill 9A, 9C and 9D (RSA-2048
   * only). Its PIN becomes the card PIN, which then cannot be changed on the
   * card.
   */
  store?: KeyStore;
}

/** Raised when a key store slot cannot fill a PIV slot; the message names the slot and the fix. */
export class PivCardOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PivCardOptionsError';
  }
}

function externalSlots(store: KeyStore): Map<number, ExternalSlot> {
  if (store.slots.length > STORE_SLOT_ORDER.length) {
    throw new PivCardOptionsError(
      `key store ${store.description} has ${store.slots.length} certificates, but a PIV card takes at most ${STORE_SLOT_ORDER.length} (slots 9A, 9C, 9D); choose fewer certificates`,
    );
  }
  const slots = new Map<number, ExternalSlot>();
  store.slots.forEach((slot, index) => {
    if (slot.keyType !== 'rsa' || slot.modulusBits !== 2048) {
      throw new PivCardOptionsError(
        `certificate ${slot.label} has a ${slot.keyType.toUpperCase()} key of ${slot.modulusBits} bits, but key store slots of a PIV card must be RSA-2048; choose another certificate`,
      );
    }
    const keyReference = STORE_SLOT_ORDER[index]!;
    slots.set(keyReference, { certificate: slot.certificate, operations: storeKeyOperations(store, index, 'once') });
  });
  return slots;
}

/** Creates a PIV card; it starts powered on. */
export function createPivCard(options: PivCardOptions = {}): PivCard {
  const store = options.store;
  const application = new PivApplication({
    state: options.state ?? createDefaultCardState(),
    ...(options.sink === undefined ? {} : { sink: options.sink }),
    ...(store === undefined ? {} : { externalSlots: externalSlots(store), pinCheck: (pin) => store.verifyPin(pin) }),
  });
  const card = new PivCard(application, new PivApplet(application));
  card.reset();
  return card;
}

/** Creates a reader named `readerName` with a new PIV card inserted. */
export function createPivReader(readerName: string, options: PivCardOptions = {}): EmulatedReader {
  return new EmulatedReader(readerName, createPivCard(options));
}
