/**
 * The two files behind READ BUFFER (GSC-IS 2.1 §8.4): the tag/length file
 * contains the SimpleTLV headers and the value file the values, each preceded
 * by its own length as 2 bytes little-endian.
 */
import { encodeSimpleTlvHeaders, type SimpleTlv } from '../iso7816/simple-tlv.js';

/** A TL file and a V file, each including its 2-byte length prefix. */
export interface BufferFiles {
  readonly tagLength: Uint8Array;
  readonly value: Uint8Array;
}

/** The file pair of an applet without content: `00 00` twice. */
export const EMPTY_BUFFER_FILES: BufferFiles = { tagLength: new Uint8Array(2), value: new Uint8Array(2) };

function withLengthPrefix(content: Uint8Array): Uint8Array {
  const file = new Uint8Array(content.length + 2);
  file[0] = content.length & 0xff;
  file[1] = (content.length >> 8) & 0xff;
  file.set(content, 2);
  return file;
}

/** Splits SimpleTLV objects into the TL file and the V file. */
export function buildBufferFiles(objects: readonly SimpleTlv[]): BufferFiles {
  let valueLength = 0;
  for (const object of objects) valueLength += object.value.length;

  const values = new Uint8Array(valueLength);
  let offset = 0;
  for (const object of objects) {
    values.set(object.value, offset);
    offset += object.value.length;
  }
  return { tagLength: withLengthPrefix(encodeSimpleTlvHeaders(objects)), value: withLengthPrefix(values) };
}

/** Encodes the 5-byte buffer properties value: type (00 = SimpleTLV) and both file lengths, LE, prefix included. */
export function bufferProperties(files: BufferFiles, type = 0x00): Uint8Array {
  const t = files.tagLength.length;
  const v = files.value.length;
  return Uint8Array.of(type, t & 0xff, (t >> 8) & 0xff, v & 0xff, (v >> 8) & 0xff);
}
