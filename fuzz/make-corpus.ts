/**
 * Writes the seed corpora in fuzz/corpus/<target>/: small valid (and a few
 * deliberately broken) inputs per target, so that libFuzzer starts from
 * the shapes real peers send. Rerun after changing the seeds:
 *
 *   npx esbuild fuzz/make-corpus.ts --bundle --platform=node --format=esm --packages=external --outfile=dist/fuzz/make-corpus.mjs && node dist/fuzz/make-corpus.mjs
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { encodeBerTlv } from '../src/iso7816/ber-tlv.js';
import { encodeSimpleTlv } from '../src/iso7816/simple-tlv.js';
import { encodeMessage } from '../src/vscard/encode.js';
import { VscMessageType } from '../src/vscard/protocol.js';

const corpusFolder = path.resolve(process.argv[2] ?? 'fuzz/corpus');

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

function writeSeeds(target: string, seeds: readonly Uint8Array[]): void {
  const folder = path.join(corpusFolder, target);
  mkdirSync(folder, { recursive: true });
  for (const seed of seeds) {
    const name = createHash('sha1').update(seed).digest('hex').slice(0, 16);
    writeFileSync(path.join(folder, name), seed);
  }
  console.log(`${target}: ${seeds.length} seeds`);
}

/** Joins APDUs into the cac-card target's input: a length byte before each. */
function apduSequence(...apdus: string[]): Buffer {
  return Buffer.concat(apdus.map((apdu) => {
    const bytes = hex(apdu);
    return Buffer.concat([Buffer.of(bytes.length), bytes]);
  }));
}

/** Builds a CCID PC_to_RDR message: type, dwLength, slot 0, sequence, 3 parameter bytes, data. */
function ccidMessage(type: number, sequence: number, data: Uint8Array = new Uint8Array(0), parameters: Uint8Array = new Uint8Array(3)): Buffer {
  const header = Buffer.alloc(10);
  header[0] = type;
  header.writeUInt32LE(data.length, 1);
  header[6] = sequence;
  header.set(parameters, 7);
  return Buffer.concat([header, data]);
}

/** Joins ccid-device operations: bulk OUT transfers get a length byte, control transfers 0xFF. */
function ccidOperations(...operations: Buffer[]): Buffer {
  return Buffer.concat(operations.map((operation) => (operation.length === 9 && operation[0] === 0xff ? operation : Buffer.concat([Buffer.of(operation.length), operation]))));
}

const SELECT_CCC = '00 A4 04 00 07 A0 00 00 01 16 DB 00 00';
const SELECT_PKI = '00 A4 04 00 07 A0 00 00 00 79 01 00 00';
const SELECT_ACA = '00 A4 04 00 07 A0 00 00 00 79 03 00';
const VERIFY_PIN = '00 20 00 00 08 31 32 33 34 35 36 37 38';
const SIGN_FIRST = `00 42 80 00 F0 00 01 ${'FF '.repeat(238)}`;
const SIGN_LAST = `00 42 00 00 10 ${'00 '.repeat(16)} FF`;

writeSeeds('apdu', [
  hex('00 A4 04 00'),
  hex('00 C0 00 00 00'),
  hex(SELECT_PKI),
  hex('80 52 00 02 02 02 F0 F0'),
  hex(VERIFY_PIN),
  hex('00 42 00 00 00 01 00 00 01 02 00 00'),
  hex('00 B0 00 00 00 00 00'),
  hex('00 A4 04 00 07 A0 00 00 00 79 01'),
]);

writeSeeds('simple-tlv', [
  encodeSimpleTlv([{ tag: 0x01, value: hex('10 02 06 02 03') }, { tag: 0x40, value: hex('01') }]),
  encodeSimpleTlv([{ tag: 0x70, value: Buffer.alloc(300, 0x30) }, { tag: 0x71, value: hex('00') }]),
  hex('01 FF 00'),
  hex('50 0A 41 02 02 00 42 04 00 00 00 00'),
]);

writeSeeds('ber-tlv', [
  encodeBerTlv({ tag: 0x6f, value: new Uint8Array(0), children: [{ tag: 0x84, value: hex('A0 00 00 00 79 01 00') }, { tag: 0xa5, value: new Uint8Array(0), children: [] }] }),
  encodeBerTlv({ tag: 0x9f7f, value: Buffer.alloc(42, 0x11) }),
  encodeBerTlv({ tag: 0x7f68, value: Buffer.alloc(200, 0x22) }),
  hex('5F 2D 02 65 6E'),
  hex('30 81 03 02 01 00'),
  hex('30 80 00 00'),
]);

const vscardStream = Buffer.concat([
  encodeMessage({ type: VscMessageType.Init, readerId: 0xffffffff, version: 2, capabilities: [0] }),
  encodeMessage({ type: VscMessageType.ReaderAdd, readerId: 0, name: 'Virtual Reader' }),
  encodeMessage({ type: VscMessageType.Atr, readerId: 0, atr: hex('3B 7A 18 00 00 73 66 74 65 20 63 64 31 34 34') }),
  encodeMessage({ type: VscMessageType.Apdu, readerId: 0, apdu: hex(SELECT_PKI) }),
  encodeMessage({ type: VscMessageType.Apdu, readerId: 0, apdu: hex('6F 0B 84 07 A0 00 00 00 79 01 00 A5 00 90 00') }),
  encodeMessage({ type: VscMessageType.Error, readerId: 0, code: 0 }),
  encodeMessage({ type: VscMessageType.Flush, readerId: 0 }),
  encodeMessage({ type: VscMessageType.CardRemove, readerId: 0 }),
]);
writeSeeds('vscard-decoder', [Buffer.concat([Buffer.of(63), vscardStream]), Buffer.concat([Buffer.of(0), vscardStream.subarray(0, 40)]), Buffer.concat([Buffer.of(11), vscardStream])]);

writeSeeds('libcacard-options', [
  'db="sql:/etc/pki/nssdb" use_hw=no soft=(,Virtual Reader,CAC,,id-cert,signing-cert,encryption-cert)',
  'db="/etc/pki/nssdb",soft=(,Virtual Reader,CAC,,cert1,)',
  'use_hw=removable hw_type=CAC hw_params=x',
  'nssemul',
  'passthru',
  'soft=(,Test,cac,,a) soft=(slot,Second,CAC,p,b,c)',
  'db="unterminated',
].map((text) => Buffer.from(text, 'latin1')));

writeSeeds('cac-card', [
  apduSequence(SELECT_CCC, '80 56 01 00 00', '80 52 00 00 02 01 02 02', '80 52 00 02 02 02 F0 F0'),
  apduSequence(SELECT_PKI, VERIFY_PIN, SIGN_FIRST, SIGN_LAST, '00 C0 00 00 00'),
  apduSequence(SELECT_PKI, '00 52 00 00 02 01 02', '00 C0 00 00 02', '00 C0 00 00 02'),
  apduSequence(SELECT_ACA, '80 4C 00 00 00', '80 4C 10 00 00', '00 C0 00 00 00'),
  apduSequence('00 A4 04 00 07 A0 00 00 00 03 00 00 00', '80 CA 9F 7F 00'),
  apduSequence('00 A4 04 00 0B A0 00 00 03 97 43 49 44 5F 01 00 00', '00 CA 7F 68 00', '00 20 00 00 00'),
  apduSequence('01 A4 04 00 07 A0 00 00 00 79 01 00', '00 20 00 00 08 FF FF FF FF FF FF FF FF'),
]);

writeSeeds('ccid-device', [
  ccidOperations(hex('FF 80 06 00 01 00 00 12 00'), ccidMessage(0x62, 0), ccidMessage(0x6f, 1, hex(SELECT_PKI)), ccidMessage(0x65, 2), ccidMessage(0x63, 3)),
  ccidOperations(ccidMessage(0x62, 0), ccidMessage(0x6c, 1), ccidMessage(0x61, 2, hex('11 00 00 0A 00'), hex('01 00 00')), ccidMessage(0x6f, 3, Buffer.alloc(300, 0x42))),
  ccidOperations(hex('FF 80 06 00 02 00 00 FF 00'), hex('FF 21 02 00 00 00 00 40 00'), ccidMessage(0x6b, 0, hex('01 02 03'))),
]);
