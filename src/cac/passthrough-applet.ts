/**
 * The Person Instance (02 00) and Personnel (02 01) applets. libcacard 2.8
 * fills their buffers from the token's data object with the same label.
 * It reads the object on the first READ BUFFER after selection, and without
 * such an object both files are `00 00`.
 */
import type { AppletResult, CardContext } from '../card/applet.js';
import type { KeyStore } from '../backends/key-store.js';
import type { CommandApdu } from '../iso7816/apdu.js';
import { decodeSimpleTlv } from '../iso7816/simple-tlv.js';
import { logger } from '../log/logger.js';
import { BufferApplet } from './cac-applet.js';
import { EMPTY_BUFFER_FILES, buildBufferFiles, type BufferFiles } from './buffer-files.js';
import { INS_READ_BUFFER, dodAid } from './constants.js';
import { appletInformation, numberOfObjects, placeholderObjectEntry } from './properties.js';

const log = logger.child({ component: 'cac-passthrough' });

/**
 * A key store that can also return a token's data objects (PKCS#11
 * CKO_DATA) by label. This is optional: stores without it give empty files.
 */
export interface DataObjectSource {
  readDataObject(label: string): Promise<Uint8Array | undefined>;
}

/** Returns the store as a data object source when it implements `readDataObject`. */
export function dataObjectSourceOf(store: KeyStore): DataObjectSource | undefined {
  const candidate = store as Partial<DataObjectSource>;
  return typeof candidate.readDataObject === 'function' ? (store as KeyStore & DataObjectSource) : undefined;
}

const SIMPLE_TLV = 0x00;

export class PassthroughApplet extends BufferApplet {
  constructor(
    low: number,
    private readonly label: string,
    private readonly source: DataObjectSource | undefined,
  ) {
    const objectId = Uint8Array.of(0x02, low);
    const properties = [appletInformation(), numberOfObjects(1), placeholderObjectEntry(objectId, SIMPLE_TLV)];
    super({ aid: dodAid(0x02, low), name: label, properties, longProperties: properties, objectIds: [objectId] }, undefined);
  }

  /** Discards the files read from the token, so the next READ BUFFER reads them again. */
  onSelect(): void {
    this.files = undefined;
  }

  override process(apdu: CommandApdu, card: CardContext): AppletResult | Promise<AppletResult> {
    if (apdu.ins === INS_READ_BUFFER && this.files === undefined) {
      return this.loadFiles().then(() => this.readBuffer(apdu, card));
    }
    return super.process(apdu, card);
  }

  private async loadFiles(): Promise<void> {
    let content: Uint8Array | undefined;
    try {
      content = await this.source?.readDataObject(this.label);
    } catch (error) {
      log.warn({ label: this.label, err: (error as Error).message }, 'reading the data object failed; the applet stays empty');
    }
    this.files = content === undefined ? EMPTY_BUFFER_FILES : filesFromDataObject(content);
  }
}

/** Splits a data object, a flat SimpleTLV list, into TL and V files; a damaged tail is dropped as libcacard does. */
function filesFromDataObject(content: Uint8Array): BufferFiles {
  const decoded = decodeSimpleTlv(content);
  const objects = decoded.ok ? decoded.objects : decoded.error.decoded;
  // libcacard builds no files from an empty list, so both files have length 0, not `00 00`.
  if (objects.length === 0) return { tagLength: new Uint8Array(0), value: new Uint8Array(0) };
  return buildBufferFiles(objects);
}

/** Creates the Person Instance and Personnel applets. */
export function createPassthroughApplets(store: KeyStore): PassthroughApplet[] {
  const source = dataObjectSourceOf(store);
  return [new PassthroughApplet(0x00, 'Person Instance', source), new PassthroughApplet(0x01, 'Personnel', source)];
}
