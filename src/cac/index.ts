/** Public API of the virtual CAC card for transports and the command line. */
export { createCacCard, createCacReader, cacSerial, type CacCardOptions } from './cac-card.js';
export { CAC_ATR, MAX_PKI_APPLETS } from './constants.js';
export { warmUpCacCard } from './cac-warm-up.js';
export { CERTIFICATE_COMPRESSIONS, parseCertificateCompression, type CertificateCompression } from './certificate-compression.js';
export type { DataObjectSource } from './passthrough-applet.js';
export { EmulatedReader } from '../card/emulated-reader.js';
export { VirtualCard, type SmartCard } from '../card/virtual-card.js';
export { DEFAULT_PIN_RETRIES, MAX_PIN_RETRIES } from '../card/pin.js';
