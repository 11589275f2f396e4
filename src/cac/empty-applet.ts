/**
 * The applets libcacard 2.8 creates without content (cac.c): both buffer
 * files are `00 00`, UPDATE BUFFER is rejected with 69 00, and the
 * properties list each object with placeholder buffer lengths.
 */
import { BufferApplet } from './cac-applet.js';
import { EMPTY_BUFFER_FILES } from './buffer-files.js';
import { ACCESS_CONTROL_FILE_AID, dodAid } from './constants.js';
import { appletInformation, numberOfObjects, placeholderObjectEntry } from './properties.js';

/** Buffer type 01 in the placeholder entries: "not SimpleTLV". */
const NOT_SIMPLE_TLV = 0x01;

/** Creates an empty applet with the given object IDs (none for 02F0, 02F1, 02F2). */
export function createEmptyApplet(aid: Uint8Array, name: string, objectIds: readonly Uint8Array[]): BufferApplet {
  const properties = [
    appletInformation(),
    numberOfObjects(objectIds.length),
    ...objectIds.map((id) => placeholderObjectEntry(id, NOT_SIMPLE_TLV)),
  ];
  return new BufferApplet({ aid, name, properties, longProperties: properties, objectIds }, EMPTY_BUFFER_FILES);
}

/** Creates all empty applets of the CAC card, in libcacard's order. */
export function createEmptyApplets(): BufferApplet[] {
  const oid = (high: number, low: number): Uint8Array => Uint8Array.of(high, low);
  return [
    createEmptyApplet(dodAid(0x02, 0xf0), 'empty 02F0', []),
    createEmptyApplet(dodAid(0x02, 0xf1), 'empty 02F1', []),
    createEmptyApplet(dodAid(0x02, 0xf2), 'empty 02F2', []),
    createEmptyApplet(dodAid(0x02, 0xfb), 'generic container 02FB', [oid(0x02, 0xfb)]),
    createEmptyApplet(dodAid(0x02, 0xfe), 'PKI certificate container 02FE', [oid(0x02, 0xfe)]),
    createEmptyApplet(dodAid(0x02, 0xfd), 'PKI credential container 02FD', [oid(0x02, 0xfd)]),
    createEmptyApplet(dodAid(0x12, 0x01), 'empty 1201', [oid(0x12, 0x01)]),
    createEmptyApplet(dodAid(0x12, 0x02), 'empty 1202', [oid(0x12, 0x02)]),
    createEmptyApplet(ACCESS_CONTROL_FILE_AID, 'access control file', [
      oid(0x30, 0x00),
      oid(0x60, 0x10),
      oid(0x60, 0x30),
      oid(0x90, 0x00),
    ]),
  ];
}
