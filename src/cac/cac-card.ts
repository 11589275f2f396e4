/**
 * Builds the virtual CAC card of libcacard 2.8 (cac.c, vcard_emul_type.c)
 * around a key store: one PKI applet per key slot, the ACA, the CCC, the
 * empty and passthrough applets, then the GlobalPlatform card manager and
 * the Microsoft PnP applet.
 */
import { createHash } from 'node:crypto';
import type { KeyStore } from '../backends/key-store.js';
import type { Applet } from '../card/applet.js';
import { EmulatedReader } from '../card/emulated-reader.js';
import { DEFAULT_PIN_RETRIES, PinState } from '../card/pin.js';
import { VirtualCard } from '../card/virtual-card.js';
import { AcaApplet } from './aca-applet.js';
import { warmUpCacCard } from './cac-warm-up.js';
import { createCccApplet } from './ccc-applet.js';
import type { CertificateCompression } from './certificate-compression.js';
import { CAC_ATR, MAX_PKI_APPLETS } from './constants.js';
import { createEmptyApplets } from './empty-applet.js';
import { GpCardManagerApplet } from './gp-applet.js';
import { MicrosoftPnpApplet } from './msft-applet.js';
import { createPassthroughApplets } from './passthrough-applet.js';
import { PkiApplet } from './pki-applet.js';

export interface CacCardOptions {
  /** Wrong PINs allowed before the PIN blocks (1 to 15); 3 when omitted. */
  pinRetries?: number;
  /**
   * Storage form of the certificates in the PKI applets: 'none' (default)
   * as libcacard 2.8, 'zlib' as real CAC cards, which CoolKey 1.1 needs.
   */
  certificateCompression?: CertificateCompression;
}

/** Returns the card serial: SHA-256 of the first certificate, or empty without certificates. */
export function cacSerial(store: KeyStore): Uint8Array {
  const first = store.slots[0];
  if (first === undefined) return new Uint8Array(0);
  return new Uint8Array(createHash('sha256').update(first.certificate).digest());
}

/**
 * Creates the CAC card for `store`. Throws RangeError when the store has
 * more than 10 slots, the most the card's applet IDs allow, or when
 * `pinRetries` is out of range.
 */
export function createCacCard(store: KeyStore, options: CacCardOptions = {}): VirtualCard {
  const slots = store.slots;
  if (slots.length > MAX_PKI_APPLETS) {
    throw new RangeError(
      `key store ${store.description} has ${slots.length} certificates, but the CAC card supports at most ${MAX_PKI_APPLETS}; choose fewer certificates`,
    );
  }

  const serial = cacSerial(store);
  const applets: Applet[] = [
    ...slots.map((slot, index) => new PkiApplet(index, slot, store, options.certificateCompression)),
    new AcaApplet(slots.length),
    createCccApplet(slots.length),
    ...createEmptyApplets(),
    ...createPassthroughApplets(store),
    new GpCardManagerApplet(serial),
    new MicrosoftPnpApplet(),
  ];

  const pin = new PinState((candidate) => store.verifyPin(candidate), options.pinRetries ?? DEFAULT_PIN_RETRIES);
  return new VirtualCard({ atr: CAC_ATR, applets, pin, serial });
}

/**
 * Creates a reader named `readerName` with a new CAC card for `store`
 * inserted. A second, throwaway card receives the commands OpenSC reads the
 * card with (see cac-warm-up.ts), so V8 compiles those paths before the
 * first client arrives. That warm-up runs in microtasks right after this
 * function returns.
 */
export function createCacReader(readerName: string, store: KeyStore, options: CacCardOptions = {}): EmulatedReader {
  void warmUpCacCard(createCacCard(store, options), store.slots.length);
  const card = createCacCard(store, options);
  card.reset();
  return new EmulatedReader(readerName, card);
}
