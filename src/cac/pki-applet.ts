/**
 * PKI applet `i` (AID A0 00 00 00 79 01 0i): certificate `i` in its buffers
 * and SIGN/DECRYPT as a raw RSA private-key operation with key `i`
 * (libcacard 2.8 cac.c).
 */
import type { AppletResult, CardContext } from '../card/applet.js';
import { statusWordForKeyStoreError } from '../card/key-store-status.js';
import { KeyStoreError, type KeySlot, type KeyStore } from '../backends/key-store.js';
import type { CommandApdu } from '../iso7816/apdu.js';
import { statusOnlyResponse } from '../iso7816/response.js';
import {
  SW_CONDITIONS_NOT_SATISFIED,
  SW_DATA_INVALID,
  SW_INCORRECT_P1_P2,
  SW_SUCCESS,
} from '../iso7816/status-words.js';
import { logger } from '../log/logger.js';
import { BufferApplet } from './cac-applet.js';
import { storeCertificate, type CertificateCompression } from './certificate-compression.js';
import { bufferProperties, buildBufferFiles } from './buffer-files.js';
import { INS_SIGN_DECRYPT, TAG_BUFFER_PROPERTIES, TAG_OBJECT_ID, TAG_PKI_OBJECT, TAG_PKI_PROPERTIES, pkiAid } from './constants.js';
import {
  LONG_PROPERTY_SUFFIX,
  PROPERTY_26,
  appletInformation,
  numberOfObjects,
  objectEntry,
} from './properties.js';

const log = logger.child({ component: 'cac-pki' });

/** SimpleTLV tags of the PKI buffers (GSC-IS 2.1 §9.4). */
const TAG_CERTIFICATE = 0x70;
const TAG_CERT_INFO = 0x71;
const TAG_MSCUID = 0x72;
const TAG_ERROR_DETECTION_CODE = 0xfe;

const SIGN_MORE_DATA_FOLLOWS = 0x80;
const SIGN_LAST_BLOCK = 0x00;

/** Returns the key-size byte of the PKI properties: modulus bits / 64, or 0x10 when unknown. */
function keySizeByte(modulusBits: number): number {
  return modulusBits > 0 ? Math.floor(modulusBits / 64) & 0xff : 0x10;
}

export class PkiApplet extends BufferApplet {
  private readonly modulusBytes: number;
  private signChunks: Uint8Array[] = [];
  private signLength = 0;

  constructor(
    private readonly index: number,
    slot: KeySlot,
    private readonly store: KeyStore,
    compression: CertificateCompression = 'none',
  ) {
    const objectId = Uint8Array.of(0x01, index);
    const stored = storeCertificate(slot.certificate, compression);
    const files = buildBufferFiles([
      { tag: TAG_CERT_INFO, value: Uint8Array.of(stored.certInfo) },
      { tag: TAG_CERTIFICATE, value: stored.certificate },
      { tag: TAG_MSCUID, value: new Uint8Array(0) },
      { tag: TAG_ERROR_DETECTION_CODE, value: new Uint8Array(0) },
    ]);
    // PKI properties: algorithm 06 (RSA), key size, private key and public key present.
    const pkiProperties = Uint8Array.of(0x06, keySizeByte(slot.modulusBits), 0x01, 0x01);
    const properties = [
      appletInformation(),
      numberOfObjects(1),
      objectEntry(TAG_PKI_OBJECT, [
        { tag: TAG_OBJECT_ID, value: objectId },
        { tag: TAG_BUFFER_PROPERTIES, value: bufferProperties(files) },
        { tag: TAG_PKI_PROPERTIES, value: pkiProperties },
        PROPERTY_26,
      ]),
    ];

    super(
      {
        aid: pkiAid(index),
        name: `PKI ${index}`,
        properties,
        longProperties: [...properties, ...LONG_PROPERTY_SUFFIX],
        objectIds: [objectId],
      },
      files,
      SW_CONDITIONS_NOT_SATISFIED,
    );
    this.modulusBytes = Math.ceil(slot.modulusBits / 8);
  }

  /** Drops partly sent SIGN/DECRYPT input; SELECT of this applet does this. */
  onSelect(): void {
    this.clearSignBuffer();
  }

  override process(apdu: CommandApdu, card: CardContext): AppletResult | Promise<AppletResult> {
    if (apdu.ins === INS_SIGN_DECRYPT) return this.signDecrypt(apdu, card);
    return super.process(apdu, card);
  }

  private clearSignBuffer(): void {
    this.signChunks = [];
    this.signLength = 0;
  }

  /**
   * Handles SIGN/DECRYPT (INS 42). Every block is appended to the input
   * buffer; P1 = 80 waits for more, P1 = 00 runs the raw RSA operation on
   * the whole input. P2 ≠ 00 is rejected before the data is appended, and
   * every other outcome clears the buffer.
   */
  private async signDecrypt(apdu: CommandApdu, card: CardContext): Promise<Uint8Array> {
    if (apdu.p2 !== 0) return statusOnlyResponse(SW_INCORRECT_P1_P2);

    if (apdu.data.length > 0) {
      // Copy, because the command buffer belongs to the caller.
      this.signChunks.push(apdu.data.slice());
      this.signLength += apdu.data.length;
    }
    if (apdu.p1 === SIGN_MORE_DATA_FOLLOWS) return statusOnlyResponse(SW_SUCCESS);

    const input = this.takeSignInput();
    if (apdu.p1 !== SIGN_LAST_BLOCK) return statusOnlyResponse(SW_INCORRECT_P1_P2);

    // The PIN check comes first, as libcacard looks the key up before it checks the length.
    if (!card.pinVerified) return statusOnlyResponse(SW_CONDITIONS_NOT_SATISFIED);
    if (input.length !== this.modulusBytes) return statusOnlyResponse(SW_DATA_INVALID);

    let output: Uint8Array;
    try {
      output = await this.store.rsaPrivateRaw(this.index, input);
    } catch (error) {
      if (!(error instanceof KeyStoreError)) throw error;
      log.warn({ slot: this.index, reason: error.reason, err: error.message }, 'private-key operation failed');
      return statusOnlyResponse(statusWordForKeyStoreError(error));
    }
    return card.respond(output, apdu.le);
  }

  private takeSignInput(): Uint8Array {
    const chunks = this.signChunks;
    const length = this.signLength;
    this.clearSignBuffer();
    if (chunks.length === 1) return chunks[0]!;

    const input = new Uint8Array(length);
    let offset = 0;
    for (const chunk of chunks) {
      input.set(chunk, offset);
      offset += chunk.length;
    }
    return input;
  }
}
