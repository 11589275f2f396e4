/**
 * Drives a virtual PIV card in unit tests: sends APDUs written in hex,
 * follows 61 xx with GET RESPONSE, and authenticates with the card
 * management key.
 */
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { encodeCommandApdu } from '../../src/iso7816/apdu.js';
import { decodeBerTlv, findBerTlv } from '../../src/iso7816/ber-tlv.js';
import type { SmartCard } from '../../src/card/virtual-card.js';

/** Default 3DES card management key of a new card. */
export const DEFAULT_MANAGEMENT_KEY = Buffer.from('010203040506070801020304050607080102030405060708', 'hex');

export interface PivResponse {
  readonly data: Buffer;
  readonly sw: number;
}

function split(response: Uint8Array): PivResponse {
  const end = response.length - 2;
  return { data: Buffer.from(response.subarray(0, end)), sw: (response[end]! << 8) | response[end + 1]! };
}

/** Sends `command` (bytes or hex) once and returns data and status word, without GET RESPONSE. */
export async function sendRaw(card: SmartCard, command: Uint8Array | string): Promise<PivResponse> {
  const bytes = typeof command === 'string' ? Buffer.from(command.replace(/\s+/g, ''), 'hex') : command;
  return split(await card.transmit(bytes));
}

/** Sends a command and collects the whole response through GET RESPONSE while the card returns 61 xx. */
export async function send(
  card: SmartCard,
  fields: { cla?: number; ins: number; p1: number; p2: number; data?: Uint8Array; le?: number; extended?: boolean },
): Promise<PivResponse> {
  let response = await sendRaw(card, encodeCommandApdu({ cla: fields.cla ?? 0, ...fields }));
  const parts = [response.data];
  while (response.sw >> 8 === 0x61) {
    response = await sendRaw(card, Uint8Array.of(0x00, 0xc0, 0x00, 0x00, response.sw & 0xff));
    parts.push(response.data);
  }
  return { data: Buffer.concat(parts), sw: response.sw };
}

/** Pads a PIN or PUK with FF to 8 bytes. */
export function padded(value: string): Buffer {
  const out = Buffer.alloc(8, 0xff);
  out.write(value, 'latin1');
  return out;
}

export function selectPiv(card: SmartCard): Promise<PivResponse> {
  return send(card, { ins: 0xa4, p1: 0x04, p2: 0x00, data: Buffer.from('a000000308', 'hex'), le: 256 });
}

export function verifyPin(card: SmartCard, pin: string, reference = 0x80): Promise<PivResponse> {
  return send(card, { ins: 0x20, p1: 0x00, p2: reference, data: padded(pin) });
}

/** Wraps TLV children in a 7C template. */
export function dynamicAuthentication(...items: Array<[number, Uint8Array]>): Buffer {
  const body = Buffer.concat(items.map(([tag, value]) => Buffer.concat([Buffer.of(tag), lengthBytes(value.length), value])));
  return Buffer.concat([Buffer.of(0x7c), lengthBytes(body.length), body]);
}

function lengthBytes(length: number): Buffer {
  if (length < 0x80) return Buffer.of(length);
  if (length < 0x100) return Buffer.of(0x81, length);
  return Buffer.of(0x82, length >> 8, length & 0xff);
}

/** Returns the value of `tag` inside the response's 7C template. */
export function dynamicAuthenticationItem(data: Uint8Array, tag: number): Buffer {
  const decoded = decodeBerTlv(data);
  assert.ok(decoded.ok, 'response is not BER-TLV');
  const item = findBerTlv(decoded.objects, tag);
  assert.ok(item, `response has no tag ${tag.toString(16)}`);
  return Buffer.from(item.value);
}

const CIPHERS: Record<number, string> = { 0x03: 'des-ede3-ecb', 0x08: 'aes-128-ecb', 0x0a: 'aes-192-ecb', 0x0c: 'aes-256-ecb' };

export function encryptBlock(algorithm: number, key: Uint8Array, block: Uint8Array): Buffer {
  const cipher = createCipheriv(CIPHERS[algorithm]!, key, null);
  cipher.setAutoPadding(false);
  return Buffer.concat([cipher.update(block), cipher.final()]);
}

export function decryptBlock(algorithm: number, key: Uint8Array, block: Uint8Array): Buffer {
  const decipher = createDecipheriv(CIPHERS[algorithm]!, key, null);
  decipher.setAutoPadding(false);
  return Buffer.concat([decipher.update(block), decipher.final()]);
}

/**
 * Runs the mutual authentication with the card management key as
 * yubico-piv-tool does, checks the card's response to the host challenge and
 * returns the status word of the second step.
 */
export async function authenticateManagementKey(
  card: SmartCard,
  key: Uint8Array = DEFAULT_MANAGEMENT_KEY,
  algorithm = 0x03,
): Promise<number> {
  const blockSize = algorithm === 0x03 ? 8 : 16;
  const first = await send(card, { ins: 0x87, p1: algorithm, p2: 0x9b, data: dynamicAuthentication([0x80, new Uint8Array(0)]) });
  assert.equal(first.sw, 0x9000, 'witness request failed');
  const witness = dynamicAuthenticationItem(first.data, 0x80);
  assert.equal(witness.length, blockSize);

  const challenge = randomBytes(blockSize);
  const second = await send(card, {
    ins: 0x87,
    p1: algorithm,
    p2: 0x9b,
    data: dynamicAuthentication([0x80, decryptBlock(algorithm, key, witness)], [0x81, challenge]),
  });
  if (second.sw === 0x9000) {
    assert.deepEqual(dynamicAuthenticationItem(second.data, 0x82), encryptBlock(algorithm, key, challenge));
  }
  return second.sw;
}
