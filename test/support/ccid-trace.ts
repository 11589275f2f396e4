/**
 * Parser for the text traces of QEMU's usb-ccid traffic (one line per CCID
 * message or control transfer, as written by the recording tool's
 * pcap2trace.py). Tests rebuild the raw bytes from each line and replay them
 * against the CCID model.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** The shared test material: `$VIRTCARD_SHARED`, else `shared` beside the repository. */
export const sharedDirectory = process.env['VIRTCARD_SHARED'] ?? path.resolve(repositoryRoot, '../shared');

/** Folder with the usb-ccid recordings of QEMU 7.2. */
export const usbCcidRecordings = path.join(sharedDirectory, 'reference', 'qemu-usb-ccid');

const PC_TO_RDR_TYPES: Record<string, number> = {
  SetParameters: 0x61,
  IccPowerOn: 0x62,
  IccPowerOff: 0x63,
  GetSlotStatus: 0x65,
  Secure: 0x69,
  T0APDU: 0x6a,
  Escape: 0x6b,
  GetParameters: 0x6c,
  ResetParameters: 0x6d,
  IccClock: 0x6e,
  XfrBlock: 0x6f,
  Mechanical: 0x71,
  Abort: 0x72,
  SetDataRateAndClockFrequency: 0x73,
};

const RDR_TO_PC_TYPES: Record<string, number> = { DataBlock: 0x80, SlotStatus: 0x81, Parameters: 0x82 };

export type TraceEntry =
  | { kind: 'out'; line: number; type: number; slot: number; seq: number; bytes: Uint8Array; stalled: boolean }
  | { kind: 'in'; line: number; type: number; slot: number; seq: number; status: number; bytes: Uint8Array }
  | { kind: 'interrupt'; line: number; state: number }
  | { kind: 'control'; line: number; text: string };

function hexToBytes(text: string): number[] {
  return text
    .trim()
    .split(/\s+/)
    .filter((token) => /^[0-9a-f]{2}$/i.test(token))
    .map((token) => parseInt(token, 16));
}

function field(text: string, name: string): number {
  const match = new RegExp(`\\b${name}=([0-9A-Fa-f]+)`).exec(text);
  if (!match) throw new Error(`trace line has no ${name}= field: ${text}`);
  return name === 'status' || name === 'error' ? parseInt(match[1]!, 16) : parseInt(match[1]!, 10);
}

/** Returns the three message-specific header bytes written in the [...] part of a line. */
function bracketBytes(text: string, count: number): number[] {
  const match = /\[([^\]]*)\]/.exec(text);
  if (!match) throw new Error(`trace line has no [...] header bytes: ${text}`);
  const bytes = hexToBytes(match[1]!.replace(/\w+=/g, ' '));
  if (bytes.length !== count) throw new Error(`expected ${count} header bytes in ${match[0]}`);
  return bytes;
}

function dataBytes(text: string): number[] {
  const index = text.indexOf(' data: ');
  return index < 0 ? [] : hexToBytes(text.slice(index + 7));
}

function message(type: number, length: number, slot: number, seq: number, header: number[], data: number[]): Uint8Array {
  const bytes = new Uint8Array(10 + data.length);
  bytes[0] = type;
  new DataView(bytes.buffer).setUint32(1, length, true);
  bytes[5] = slot;
  bytes[6] = seq;
  bytes.set(header, 7);
  bytes.set(data, 10);
  return bytes;
}

/** Parses one trace file (path relative to the recordings folder). */
export function readTrace(relativePath: string): TraceEntry[] {
  const lines = readFileSync(path.join(usbCcidRecordings, relativePath), 'utf8').split('\n');
  const entries: TraceEntry[] = [];
  lines.forEach((text, index) => {
    const line = index + 1;
    if (text.startsWith('C ')) {
      entries.push({ kind: 'control', line, text });
    } else if (text.startsWith('! ')) {
      const match = /NotifySlotChange ([0-9a-f]{2})/.exec(text);
      if (!match) throw new Error(`unparsed interrupt line ${line}: ${text}`);
      entries.push({ kind: 'interrupt', line, state: parseInt(match[1]!, 16) });
    } else if (text.startsWith('> ')) {
      const stalled = text.includes('STALL');
      const short = /short message \(\d+ bytes\).*?: ([0-9a-f ]+)$/.exec(text);
      if (short) {
        entries.push({ kind: 'out', line, type: -1, slot: -1, seq: -1, bytes: Uint8Array.from(hexToBytes(short[1]!)), stalled });
        return;
      }
      const name = /PC_to_RDR_(\w+)/.exec(text)![1]!;
      const type = name.startsWith('Unknown') ? parseInt(name.slice(7), 16) : PC_TO_RDR_TYPES[name];
      if (type === undefined) throw new Error(`unknown PC_to_RDR name on line ${line}: ${name}`);
      const slot = field(text, 'slot');
      const seq = field(text, 'seq');
      const bytes = message(type, field(text, 'len'), slot, seq, bracketBytes(text, 3), dataBytes(text));
      entries.push({ kind: 'out', line, type, slot, seq, bytes, stalled });
    } else if (text.startsWith('< ')) {
      const name = /RDR_to_PC_(\w+)/.exec(text)![1]!;
      const type = RDR_TO_PC_TYPES[name];
      if (type === undefined) throw new Error(`unknown RDR_to_PC name on line ${line}: ${name}`);
      const slot = field(text, 'slot');
      const seq = field(text, 'seq');
      const status = field(text, 'status');
      const header = [status, field(text, 'error'), ...bracketBytes(text, 1)];
      const bytes = message(type, field(text, 'len'), slot, seq, header, dataBytes(text));
      entries.push({ kind: 'in', line, type, slot, seq, status, bytes });
    }
  });
  return entries;
}
