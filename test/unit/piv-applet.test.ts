import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, createECDH, createHash, createPublicKey, generateKeyPairSync, publicEncrypt, verify, type KeyObject } from 'node:crypto';
import { decodeBerTlv, findBerTlv } from '../../src/iso7816/ber-tlv.js';
import { createPivCard, type PivCard } from '../../src/piv/piv-card.js';
import {
  DEFAULT_MANAGEMENT_KEY,
  authenticateManagementKey,
  dynamicAuthentication,
  dynamicAuthenticationItem,
  encryptBlock,
  padded,
  selectPiv,
  send,
  sendRaw,
  verifyPin,
} from '../support/piv-session.js';

const EMPTY = new Uint8Array(0);

async function newCard(): Promise<PivCard> {
  const card = createPivCard();
  const selected = await selectPiv(card);
  assert.equal(selected.sw, 0x9000);
  return card;
}

function getData(card: PivCard, tag: string, le = 256): ReturnType<typeof send> {
  const tagBytes = Buffer.from(tag, 'hex');
  return send(card, { ins: 0xcb, p1: 0x3f, p2: 0xff, data: Buffer.concat([Buffer.of(0x5c, tagBytes.length), tagBytes]), le });
}

function putData(card: PivCard, tag: string, contents: Uint8Array, extended = false): ReturnType<typeof send> {
  const tagBytes = Buffer.from(tag, 'hex');
  const body = Buffer.concat([Buffer.of(0x5c, tagBytes.length), tagBytes, Buffer.of(0x53), berLength(contents.length), contents]);
  return send(card, { ins: 0xdb, p1: 0x3f, p2: 0xff, data: body, extended });
}

function berLength(length: number): Buffer {
  if (length < 0x80) return Buffer.of(length);
  if (length < 0x100) return Buffer.of(0x81, length);
  return Buffer.of(0x82, length >> 8, length & 0xff);
}

/** Generates a key in `slot` and returns its public key. */
async function generate(card: PivCard, slot: number, algorithm: number, pinPolicy?: number): Promise<KeyObject> {
  const template = pinPolicy === undefined ? [0x80, 0x01, algorithm] : [0x80, 0x01, algorithm, 0xaa, 0x01, pinPolicy];
  const response = await send(card, { ins: 0x47, p1: 0x00, p2: slot, data: Buffer.of(0xac, template.length, ...template), le: 256 });
  assert.equal(response.sw, 0x9000, `GENERATE ${slot.toString(16)} answered ${response.sw.toString(16)}`);
  const decoded = decodeBerTlv(response.data);
  assert.ok(decoded.ok);
  const point = findBerTlv(decoded.objects, 0x86);
  if (point !== undefined) {
    const size = (point.value.length - 1) / 2;
    const crv = size === 32 ? 'P-256' : 'P-384';
    const x = Buffer.from(point.value.subarray(1, 1 + size)).toString('base64url');
    const y = Buffer.from(point.value.subarray(1 + size)).toString('base64url');
    return createPublicKey({ key: { kty: 'EC', crv, x, y }, format: 'jwk' });
  }
  const modulus = findBerTlv(decoded.objects, 0x81)!.value;
  const exponent = findBerTlv(decoded.objects, 0x82)!.value;
  return createPublicKey({
    key: { kty: 'RSA', n: Buffer.from(modulus).toString('base64url'), e: Buffer.from(exponent).toString('base64url') },
    format: 'jwk',
  });
}

function authenticate(card: PivCard, algorithm: number, slot: number, items: Array<[number, Uint8Array]>): ReturnType<typeof send> {
  return send(card, { ins: 0x87, p1: algorithm, p2: slot, data: dynamicAuthentication(...items), le: 256 });
}

/** PKCS#1 v1.5 type 1 block of a SHA-256 DigestInfo, 256 bytes. */
function pkcs1SignatureBlock(message: Buffer): Buffer {
  const digestInfo = Buffer.concat([Buffer.from('3031300d060960864801650304020105000420', 'hex'), createHash('sha256').update(message).digest()]);
  return Buffer.concat([Buffer.of(0x00, 0x01), Buffer.alloc(256 - 3 - digestInfo.length, 0xff), Buffer.of(0x00), digestInfo]);
}

test('SELECT returns the application property template', async () => {
  const card = createPivCard();
  for (const aid of ['a000000308', 'a00000030800001000', 'a0000003080000100001 00']) {
    const response = await send(card, { ins: 0xa4, p1: 0x04, p2: 0x00, data: Buffer.from(aid.replace(' ', ''), 'hex'), le: 256 });
    assert.equal(response.sw, 0x9000, aid);
    const decoded = decodeBerTlv(response.data);
    assert.ok(decoded.ok);
    assert.equal(decoded.objects[0]?.tag, 0x61);
    assert.deepEqual(Buffer.from(findBerTlv(decoded.objects, 0x4f)!.value), Buffer.from('000010000100', 'hex'));
    assert.deepEqual(Buffer.from(findBerTlv(decoded.objects, 0x79)!.children![0]!.value), Buffer.from('a000000308', 'hex'));
  }
});

test('SELECT without Le returns data', async () => {
  const card = createPivCard();
  const response = await sendRaw(card, '00a4040005a000000308');
  assert.equal(response.sw, 0x9000);
  assert.equal(response.data[0], 0x61);
});

test('SELECT rejects other AIDs', async () => {
  const card = createPivCard();
  assert.equal((await sendRaw(card, '00a4040004a0000003')).sw, 0x6a82, 'shorter than the RID');
  assert.equal((await sendRaw(card, '00a4040006a00000030801')).sw, 0x6a82, 'not a prefix of the PIV AID');
  await selectPiv(card);
  assert.equal((await sendRaw(card, '00a4040007a0000005272001')).sw, 0x6a82, 'YubiKey OTP applet');
  assert.equal((await getData(card, '5fc102')).sw, 0x9000, 'PIV stays selected after a failed SELECT');
  assert.equal((await sendRaw(card, '00a4020002 3f00'.replace(' ', ''))).sw, 0x6a81);
});

test('GET DATA returns default objects', async () => {
  const card = await newCard();
  const chuid = await getData(card, '5fc102');
  assert.equal(chuid.sw, 0x9000);
  assert.equal(chuid.data[0], 0x53);
  const decoded = decodeBerTlv(chuid.data);
  assert.ok(decoded.ok);
  assert.equal(decoded.objects[0]!.value[0], 0x30, 'CHUID starts with the FASC-N');

  const ccc = await getData(card, '5fc107');
  assert.equal(ccc.sw, 0x9000);
  const discovery = await getData(card, '7e');
  assert.equal(discovery.sw, 0x9000);
  assert.equal(discovery.data[0], 0x7e);
  assert.ok(discovery.data.includes(Buffer.from('a00000030800001000', 'hex')));

  const history = await getData(card, '5fc10c');
  assert.equal(history.sw, 0x9000);
  assert.deepEqual(history.data, Buffer.from('5308c10100c20100fe00', 'hex'));
});

test('GET DATA error status words', async () => {
  const card = await newCard();
  assert.equal((await getData(card, '5fc105')).sw, 0x6a82, 'empty certificate container');
  assert.equal((await send(card, { ins: 0xcb, p1: 0x00, p2: 0x00, data: Buffer.from('5c035fc102', 'hex') })).sw, 0x6a86);
  assert.equal((await send(card, { ins: 0xcb, p1: 0x3f, p2: 0xff, data: Buffer.from('5d035fc102', 'hex') })).sw, 0x6a80);
  assert.equal((await send(card, { ins: 0xcb, p1: 0x3f, p2: 0xff, data: Buffer.from('5c045fc10201', 'hex') })).sw, 0x6a80);
  assert.equal((await getData(card, '5fc109')).sw, 0x6982, 'printed information needs the PIN');
  assert.equal((await verifyPin(card, '123456')).sw, 0x9000);
  assert.equal((await getData(card, '5fc109')).sw, 0x6a82, 'with the PIN, the missing object is reported');
});

test('VERIFY counts down and blocks', async () => {
  const card = await newCard();
  assert.equal((await send(card, { ins: 0x20, p1: 0x00, p2: 0x80 })).sw, 0x63c3);
  assert.equal((await verifyPin(card, '000000')).sw, 0x63c2);
  assert.equal((await verifyPin(card, '000000')).sw, 0x63c1);
  assert.equal((await verifyPin(card, '123456')).sw, 0x9000, 'a right PIN refills the counter');
  assert.equal((await send(card, { ins: 0x20, p1: 0x00, p2: 0x80 })).sw, 0x9000);
  assert.equal((await verifyPin(card, '000000')).sw, 0x63c2);
  assert.equal((await verifyPin(card, '000000')).sw, 0x63c1);
  assert.equal((await verifyPin(card, '000000')).sw, 0x63c0);
  assert.equal((await verifyPin(card, '123456')).sw, 0x6983);
  assert.equal((await send(card, { ins: 0x20, p1: 0x00, p2: 0x80 })).sw, 0x6983);
});

test('VERIFY parameters and reset', async () => {
  const card = await newCard();
  assert.equal((await verifyPin(card, '123456')).sw, 0x9000);
  assert.equal((await send(card, { ins: 0x20, p1: 0xff, p2: 0x80 })).sw, 0x9000);
  assert.equal((await send(card, { ins: 0x20, p1: 0x00, p2: 0x80 })).sw, 0x63c3, 'P1 FF clears the verified state');
  assert.equal((await send(card, { ins: 0x20, p1: 0x00, p2: 0x80, data: Buffer.from('313233343536') })).sw, 0x6a80);
  assert.equal((await send(card, { ins: 0x20, p1: 0x00, p2: 0x80, data: Buffer.from('3132ff3334353637', 'hex') })).sw, 0x6a80);
  assert.equal((await send(card, { ins: 0x20, p1: 0x01, p2: 0x80, data: padded('123456') })).sw, 0x6a86);
  assert.equal((await send(card, { ins: 0x20, p1: 0x00, p2: 0x96, data: padded('123456') })).sw, 0x6a88);

  assert.equal((await verifyPin(card, '123456')).sw, 0x9000);
  card.reset();
  await selectPiv(card);
  assert.equal((await send(card, { ins: 0x20, p1: 0x00, p2: 0x80 })).sw, 0x63c3, 'a reset clears the verified state');
});

test('VERIFY PUK counts separately', async () => {
  const card = await newCard();
  assert.equal((await verifyPin(card, '00000000', 0x81)).sw, 0x63c2);
  assert.equal((await send(card, { ins: 0x20, p1: 0x00, p2: 0x80 })).sw, 0x63c3);
  assert.equal((await verifyPin(card, '12345678', 0x81)).sw, 0x9000);
  assert.equal((await send(card, { ins: 0x20, p1: 0x00, p2: 0x81 })).sw, 0x9000);
});

test('CHANGE REFERENCE DATA changes PIN and PUK', async () => {
  const card = await newCard();
  const change = (p2: number, current: string, next: string): ReturnType<typeof send> =>
    send(card, { ins: 0x24, p1: 0x00, p2, data: Buffer.concat([padded(current), padded(next)]) });

  assert.equal((await change(0x80, '000000', '654321')).sw, 0x63c2);
  assert.equal((await change(0x80, '123456', '6543')).sw, 0x6a80, 'new PIN shorter than 6');
  assert.equal((await send(card, { ins: 0x24, p1: 0x00, p2: 0x80, data: padded('123456') })).sw, 0x6a80);
  assert.equal((await send(card, { ins: 0x24, p1: 0x01, p2: 0x80, data: Buffer.alloc(16) })).sw, 0x6a86);
  assert.equal((await send(card, { ins: 0x24, p1: 0x00, p2: 0x9b, data: Buffer.alloc(16) })).sw, 0x6a88);
  assert.equal((await change(0x80, '123456', '654321')).sw, 0x9000);
  assert.equal((await verifyPin(card, '123456')).sw, 0x63c2);
  assert.equal((await verifyPin(card, '654321')).sw, 0x9000);

  assert.equal((await change(0x81, '12345678', '87654321')).sw, 0x9000);
  assert.equal((await verifyPin(card, '87654321', 0x81)).sw, 0x9000);
});

test('RESET RETRY COUNTER unblocks the PIN', async () => {
  const card = await newCard();
  for (let i = 0; i < 3; i++) await verifyPin(card, '000000');
  assert.equal((await verifyPin(card, '123456')).sw, 0x6983);

  const reset = (puk: string, pin: string, p2 = 0x80): ReturnType<typeof send> =>
    send(card, { ins: 0x2c, p1: 0x00, p2, data: Buffer.concat([padded(puk), padded(pin)]) });
  assert.equal((await reset('00000000', '654321')).sw, 0x63c2);
  assert.equal((await reset('12345678', '654321', 0x81)).sw, 0x6a88);
  assert.equal((await reset('12345678', '654')).sw, 0x6a80);
  assert.equal((await reset('12345678', '654321')).sw, 0x9000);
  assert.equal((await send(card, { ins: 0x20, p1: 0x00, p2: 0x80 })).sw, 0x63c3, 'the PIN counter is full again');
  assert.equal((await verifyPin(card, '654321')).sw, 0x9000);

  for (let i = 0; i < 3; i++) await reset('00000000', '111111');
  assert.equal((await reset('12345678', '111111')).sw, 0x6983, 'a blocked PUK stays blocked');
});

test('management key mutual authentication', async () => {
  const card = await newCard();
  assert.equal(await authenticateManagementKey(card), 0x9000);
  card.reset();
  await selectPiv(card);
  assert.equal(await authenticateManagementKey(card, Buffer.alloc(24, 0x11)), 0x6982, 'wrong key');
});

test('management key external authentication', async () => {
  const card = await newCard();
  const request = await authenticate(card, 0x03, 0x9b, [[0x81, EMPTY]]);
  assert.equal(request.sw, 0x9000);
  const challenge = dynamicAuthenticationItem(request.data, 0x81);
  const answer = encryptBlock(0x03, DEFAULT_MANAGEMENT_KEY, challenge);
  assert.equal((await authenticate(card, 0x03, 0x9b, [[0x82, answer]])).sw, 0x9000);
  assert.equal((await authenticate(card, 0x03, 0x9b, [[0x82, answer]])).sw, 0x6a80, 'a challenge serves once');
});

test('management key error status words', async () => {
  const card = await newCard();
  assert.equal((await authenticate(card, 0x08, 0x9b, [[0x80, EMPTY]])).sw, 0x6a86, 'AES while the key is 3DES');
  assert.equal((await authenticate(card, 0x03, 0x9b, [[0x80, Buffer.alloc(8)], [0x81, Buffer.alloc(8)]])).sw, 0x6a80);
  assert.equal((await send(card, { ins: 0x87, p1: 0x03, p2: 0x9b, data: Buffer.from('7d028000', 'hex') })).sw, 0x6a80);
  assert.equal((await authenticate(card, 0x00, 0x9b, [[0x80, EMPTY]])).sw, 0x9000, '00 means 3DES');
});

test('AES management key after SET MANAGEMENT KEY', async () => {
  const card = await newCard();
  const key = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
  const set = Buffer.concat([Buffer.of(0x08, 0x9b, 0x10), key]);
  assert.equal((await send(card, { ins: 0xff, p1: 0xff, p2: 0xff, data: set })).sw, 0x6982, 'needs authentication');
  assert.equal(await authenticateManagementKey(card), 0x9000);
  assert.equal((await send(card, { ins: 0xff, p1: 0xff, p2: 0xff, data: Buffer.of(0x08, 0x9b, 0x18, ...key) })).sw, 0x6a80);
  assert.equal((await send(card, { ins: 0xff, p1: 0xff, p2: 0xff, data: set })).sw, 0x9000);
  card.reset();
  await selectPiv(card);
  assert.equal(await authenticateManagementKey(card, key, 0x08), 0x9000);
});

test('GENERATE needs the management key', async () => {
  const card = await newCard();
  const template = Buffer.from('ac03800111', 'hex');
  assert.equal((await send(card, { ins: 0x47, p1: 0x00, p2: 0x9a, data: template })).sw, 0x6982);
  assert.equal(await authenticateManagementKey(card), 0x9000);
  assert.equal((await send(card, { ins: 0x47, p1: 0x00, p2: 0x9b, data: template })).sw, 0x6a86);
  assert.equal((await send(card, { ins: 0x47, p1: 0x01, p2: 0x9a, data: template })).sw, 0x6a86);
  assert.equal((await send(card, { ins: 0x47, p1: 0x00, p2: 0x9a, data: Buffer.from('ac03800106', 'hex') })).sw, 0x6a80, 'RSA-1024');
  assert.equal((await send(card, { ins: 0x47, p1: 0x00, p2: 0x9a, data: Buffer.from('ad03800111', 'hex') })).sw, 0x6a80);
  assert.equal((await send(card, { ins: 0x47, p1: 0x00, p2: 0x9a, data: Buffer.from('ac068001 11aa0109'.replace(' ', ''), 'hex') })).sw, 0x6a80);
});

test('RSA-2048 key signs and decrypts', async () => {
  const card = await newCard();
  assert.equal(await authenticateManagementKey(card), 0x9000);
  const publicKey = await generate(card, 0x9a, 0x07);
  assert.equal(publicKey.asymmetricKeyDetails?.modulusLength, 2048);
  assert.equal(publicKey.asymmetricKeyDetails?.publicExponent, 65537n);

  const message = Buffer.from('signed on the card');
  const block = pkcs1SignatureBlock(message);
  assert.equal((await authenticate(card, 0x07, 0x9a, [[0x82, EMPTY], [0x81, block]])).sw, 0x6982, 'needs the PIN');
  await verifyPin(card, '123456');
  const signed = await authenticate(card, 0x07, 0x9a, [[0x82, EMPTY], [0x81, block]]);
  assert.equal(signed.sw, 0x9000);
  const signature = dynamicAuthenticationItem(signed.data, 0x82);
  assert.ok(verify('sha256', message, publicKey, signature), 'signature does not verify');

  const secret = Buffer.from('session key');
  const ciphertext = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, secret);
  const decrypted = await authenticate(card, 0x07, 0x9a, [[0x82, EMPTY], [0x81, ciphertext]]);
  assert.equal(decrypted.sw, 0x9000);
  const plain = dynamicAuthenticationItem(decrypted.data, 0x82);
  assert.deepEqual(plain.subarray(plain.length - secret.length), secret);

  assert.equal((await authenticate(card, 0x07, 0x9a, [[0x82, EMPTY], [0x81, Buffer.alloc(255, 1)]])).sw, 0x6a80, 'short input');
  assert.equal((await authenticate(card, 0x07, 0x9a, [[0x82, EMPTY], [0x81, Buffer.alloc(256, 0xff)]])).sw, 0x6a80, 'above the modulus');
  assert.equal((await authenticate(card, 0x11, 0x9a, [[0x82, EMPTY], [0x81, block]])).sw, 0x6a86, 'wrong algorithm');
  assert.equal((await authenticate(card, 0x07, 0x9a, [[0x81, block]])).sw, 0x6a80, 'no response tag');
});

test('ECC keys sign and derive', async () => {
  const card = await newCard();
  assert.equal(await authenticateManagementKey(card), 0x9000);
  await verifyPin(card, '123456');
  for (const [algorithm, slot, hash, curve] of [
    [0x11, 0x9c, 'sha256', 'prime256v1'],
    [0x14, 0x9d, 'sha384', 'secp384r1'],
  ] as const) {
    const publicKey = await generate(card, slot, algorithm);
    const message = Buffer.from(`signed with ${curve}`);
    const digest = createHash(hash).update(message).digest();
    await verifyPin(card, '123456');
    const signed = await authenticate(card, algorithm, slot, [[0x82, EMPTY], [0x81, digest]]);
    assert.equal(signed.sw, 0x9000);
    assert.ok(verify(hash, message, publicKey, dynamicAuthenticationItem(signed.data, 0x82)), `${curve} signature does not verify`);

    const peer = createECDH(curve);
    peer.generateKeys();
    await verifyPin(card, '123456');
    const derived = await authenticate(card, algorithm, slot, [[0x82, EMPTY], [0x85, peer.getPublicKey()]]);
    assert.equal(derived.sw, 0x9000);
    const jwk = publicKey.export({ format: 'jwk' });
    const cardPoint = Buffer.concat([Buffer.of(4), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
    assert.deepEqual(dynamicAuthenticationItem(derived.data, 0x82), peer.computeSecret(cardPoint));

    const badPoint = Buffer.alloc(peer.getPublicKey().length, 0);
    badPoint[0] = 4;
    await verifyPin(card, '123456');
    assert.equal((await authenticate(card, algorithm, slot, [[0x82, EMPTY], [0x85, badPoint]])).sw, 0x6a80);
    await verifyPin(card, '123456');
    assert.equal((await authenticate(card, algorithm, slot, [[0x82, EMPTY], [0x81, Buffer.alloc(digest.length + 1)]])).sw, 0x6a80);
  }
});

test('PIN policy always needs each VERIFY', async () => {
  const card = await newCard();
  assert.equal(await authenticateManagementKey(card), 0x9000);
  await generate(card, 0x9c, 0x11);
  await generate(card, 0x9a, 0x11, 0x03);
  const digest = createHash('sha256').update('twice').digest();
  for (const slot of [0x9c, 0x9a]) {
    assert.equal((await verifyPin(card, '123456')).sw, 0x9000);
    assert.equal((await authenticate(card, 0x11, slot, [[0x82, EMPTY], [0x81, digest]])).sw, 0x9000, `first use of ${slot.toString(16)}`);
    assert.equal((await authenticate(card, 0x11, slot, [[0x82, EMPTY], [0x81, digest]])).sw, 0x6982, `second use of ${slot.toString(16)}`);
  }

  await generate(card, 0x9d, 0x11);
  assert.equal((await verifyPin(card, '123456')).sw, 0x9000);
  assert.equal((await send(card, { ins: 0x20, p1: 0xff, p2: 0x80 })).sw, 0x9000);
  assert.equal((await verifyPin(card, '123456')).sw, 0x9000);
  assert.equal((await authenticate(card, 0x11, 0x9d, [[0x82, EMPTY], [0x81, digest]])).sw, 0x9000, 'policy once');
  assert.equal((await authenticate(card, 0x11, 0x9d, [[0x82, EMPTY], [0x81, digest]])).sw, 0x9000, 'policy once again');
});

test('card authentication key needs no PIN', async () => {
  const card = await newCard();
  assert.equal(await authenticateManagementKey(card), 0x9000);
  const publicKey = await generate(card, 0x9e, 0x11);
  const digest = createHash('sha256').update('door').digest();
  const signed = await authenticate(card, 0x11, 0x9e, [[0x82, EMPTY], [0x81, digest]]);
  assert.equal(signed.sw, 0x9000);
  assert.ok(verify('sha256', Buffer.from('door'), publicKey, dynamicAuthenticationItem(signed.data, 0x82)));

  await generate(card, 0x82, 0x11, 0x01);
  assert.equal((await authenticate(card, 0x11, 0x82, [[0x82, EMPTY], [0x81, digest]])).sw, 0x9000, 'PIN policy never');
});

test('GENERAL AUTHENTICATE error status words', async () => {
  const card = await newCard();
  await verifyPin(card, '123456');
  const digest = Buffer.alloc(32, 1);
  assert.equal((await authenticate(card, 0x11, 0x9a, [[0x82, EMPTY], [0x81, digest]])).sw, 0x6a88, 'empty slot');
  assert.equal((await authenticate(card, 0x11, 0x80, [[0x82, EMPTY], [0x81, digest]])).sw, 0x6a86, 'not a key');
  assert.equal((await send(card, { ins: 0x87, p1: 0x11, p2: 0x9a, data: Buffer.from('7c0582008101', 'hex') })).sw, 0x6a80);
});

test('PUT DATA stores and deletes objects', async () => {
  const card = await newCard();
  const container = Buffer.concat([Buffer.from('708203e8', 'hex'), Buffer.alloc(1000, 0x30), Buffer.from('710100fe00', 'hex')]);
  assert.equal((await putData(card, '5fc105', container)).sw, 0x6982);
  assert.equal(await authenticateManagementKey(card), 0x9000);
  assert.equal((await putData(card, '5fc105', container, true)).sw, 0x9000);

  const read = await getData(card, '5fc105');
  assert.equal(read.sw, 0x9000);
  assert.deepEqual(read.data, Buffer.concat([Buffer.from('538203f1', 'hex'), container]));

  assert.equal((await putData(card, '5fc105', EMPTY)).sw, 0x9000);
  assert.equal((await getData(card, '5fc105')).sw, 0x6a82);

  assert.equal((await putData(card, '5fc0ff', Buffer.of(1))).sw, 0x6a80, 'not a container');
  assert.equal((await putData(card, '5fc105', Buffer.alloc(16385), true)).sw, 0x6a84);
  assert.equal((await send(card, { ins: 0xdb, p1: 0x3f, p2: 0xfe, data: Buffer.from('5c035fc1055300', 'hex') })).sw, 0x6a86);

  assert.equal((await send(card, { ins: 0xdb, p1: 0x3f, p2: 0xff, data: Buffer.from('7e024f00', 'hex') })).sw, 0x9000);
  assert.deepEqual((await getData(card, '7e')).data, Buffer.from('7e024f00', 'hex'));
});

test('retired certificates fill key history', async () => {
  const card = await newCard();
  assert.equal(await authenticateManagementKey(card), 0x9000);
  assert.equal((await putData(card, '5fc10d', Buffer.from('7001307101 00fe00'.replace(' ', ''), 'hex'))).sw, 0x9000);
  assert.deepEqual((await getData(card, '5fc10c')).data, Buffer.from('5308c10101c20100fe00', 'hex'));
});

test('command chaining collects the data', async () => {
  const card = await newCard();
  assert.equal(await authenticateManagementKey(card), 0x9000);
  const container = Buffer.concat([Buffer.from('708201f4', 'hex'), Buffer.alloc(500, 0x42), Buffer.from('fe00', 'hex')]);
  const body = Buffer.concat([Buffer.from('5c035fc10a538201fa', 'hex'), container]);
  const parts = [body.subarray(0, 255), body.subarray(255, 510), body.subarray(510)];
  assert.equal((await send(card, { cla: 0x10, ins: 0xdb, p1: 0x3f, p2: 0xff, data: parts[0] })).sw, 0x9000);
  assert.equal((await send(card, { cla: 0x10, ins: 0xdb, p1: 0x3f, p2: 0xff, data: parts[1] })).sw, 0x9000);
  assert.equal((await send(card, { ins: 0xdb, p1: 0x3f, p2: 0xff, data: parts[2] })).sw, 0x9000);
  assert.deepEqual((await getData(card, '5fc10a')).data.subarray(4), container);

  assert.equal((await send(card, { cla: 0x10, ins: 0xdb, p1: 0x3f, p2: 0xff, data: parts[0] })).sw, 0x9000);
  assert.equal((await getData(card, '5fc102')).sw, 0x6883, 'another command breaks the chain');
  assert.equal((await getData(card, '5fc102')).sw, 0x9000);
});

test('GET RESPONSE and extended Le', async () => {
  const card = await newCard();
  assert.equal(await authenticateManagementKey(card), 0x9000);
  assert.equal((await putData(card, '5fc105', Buffer.alloc(600, 0x55), true)).sw, 0x9000);

  const short = await sendRaw(card, '00cb3fff055c035fc10500');
  assert.equal(short.sw, 0x6100, 'more than 256 bytes wait for GET RESPONSE');
  assert.equal(short.data.length, 0);
  const first = await sendRaw(card, '00c0000000');
  assert.equal(first.data.length, 256);
  assert.equal(first.sw, 0x6100);
  const second = await sendRaw(card, '00c0000000');
  assert.equal(second.sw, 0x615c);
  const last = await sendRaw(card, '00c000005c');
  assert.equal(last.sw, 0x9000);
  assert.equal(first.data.length + second.data.length + last.data.length, 604);

  const extended = await sendRaw(card, '00cb3fff0000055c035fc1050000');
  assert.equal(extended.sw, 0x9000);
  assert.equal(extended.data.length, 604);
});

test('unknown instruction and class', async () => {
  const card = await newCard();
  assert.equal((await sendRaw(card, '00fd000000')).sw, 0x6d00);
  assert.equal((await sendRaw(card, '80cb3fff055c035fc102')).sw, 0x6e00);
});

/** Encodes YubiKey IMPORT ASYMMETRIC KEY data: each parameter as tag, BER length, value. */
function importData(parameters: Array<[number, Uint8Array]>): Buffer {
  return Buffer.concat(parameters.map(([tag, value]) => Buffer.concat([Buffer.of(tag), berLength(value.length), value])));
}

test('IMPORT ASYMMETRIC KEY for RSA and EC', async () => {
  const card = await newCard();
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = rsa.privateKey.export({ format: 'jwk' });
  const crt = [jwk.p, jwk.q, jwk.dp, jwk.dq, jwk.qi].map((value, index): [number, Uint8Array] => {
    const bytes = Buffer.from(value!, 'base64url');
    return [index + 1, Buffer.concat([Buffer.alloc(128 - bytes.length), bytes])];
  });
  const rsaData = importData(crt);
  assert.equal((await send(card, { ins: 0xfe, p1: 0x07, p2: 0x9a, data: rsaData })).sw, 0x6982, 'needs the management key');
  assert.equal(await authenticateManagementKey(card), 0x9000);
  assert.equal((await send(card, { ins: 0xfe, p1: 0x07, p2: 0x9a, data: rsaData })).sw, 0x9000);

  await verifyPin(card, '123456');
  const message = Buffer.from('imported RSA key');
  const signed = await authenticate(card, 0x07, 0x9a, [[0x82, EMPTY], [0x81, pkcs1SignatureBlock(message)]]);
  assert.equal(signed.sw, 0x9000);
  assert.ok(verify('sha256', message, rsa.publicKey, dynamicAuthenticationItem(signed.data, 0x82)));

  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const scalar = Buffer.from(ec.privateKey.export({ format: 'jwk' }).d!, 'base64url');
  assert.equal((await send(card, { ins: 0xfe, p1: 0x11, p2: 0x9e, data: importData([[0x06, scalar]]) })).sw, 0x9000);
  const digest = createHash('sha256').update('imported EC key').digest();
  const ecSigned = await authenticate(card, 0x11, 0x9e, [[0x82, EMPTY], [0x81, digest]]);
  assert.equal(ecSigned.sw, 0x9000);
  assert.ok(verify('sha256', Buffer.from('imported EC key'), ec.publicKey, dynamicAuthenticationItem(ecSigned.data, 0x82)));

  const broken = importData([[1, crt[1]![1]], [2, crt[0]![1]], crt[2]!, crt[3]!, crt[4]!]);
  assert.equal((await send(card, { ins: 0xfe, p1: 0x07, p2: 0x9d, data: broken })).sw, 0x6a80, 'p and q swapped');
  assert.equal((await send(card, { ins: 0xfe, p1: 0x11, p2: 0x9d, data: importData([[0x06, Buffer.alloc(32)]]) })).sw, 0x6a80);
  assert.equal((await send(card, { ins: 0xfe, p1: 0x06, p2: 0x9d, data: rsaData })).sw, 0x6a86, 'RSA-1024');
  assert.equal((await send(card, { ins: 0xfe, p1: 0x11, p2: 0x9b, data: importData([[0x06, scalar]]) })).sw, 0x6a86);
});

test('SET PIN RETRIES resets PIN and PUK', async () => {
  const card = await newCard();
  assert.equal((await send(card, { ins: 0xfa, p1: 0x05, p2: 0x04 })).sw, 0x6982);
  assert.equal(await authenticateManagementKey(card), 0x9000);
  assert.equal((await send(card, { ins: 0xfa, p1: 0x05, p2: 0x04 })).sw, 0x6982, 'needs the PIN too');
  const change = await send(card, { ins: 0x24, p1: 0x00, p2: 0x80, data: Buffer.concat([padded('123456'), padded('999999')]) });
  assert.equal(change.sw, 0x9000);
  assert.equal((await verifyPin(card, '999999')).sw, 0x9000);
  assert.equal((await send(card, { ins: 0xfa, p1: 0x10, p2: 0x04 })).sw, 0x6a86);
  assert.equal((await send(card, { ins: 0xfa, p1: 0x05, p2: 0x04 })).sw, 0x9000);

  assert.equal((await send(card, { ins: 0x20, p1: 0x00, p2: 0x80 })).sw, 0x63c5);
  assert.equal((await send(card, { ins: 0x20, p1: 0x00, p2: 0x81 })).sw, 0x63c4);
  assert.equal((await verifyPin(card, '123456')).sw, 0x9000, 'the PIN is the default again');
});

test('RESET needs blocked PIN and PUK', async () => {
  const card = await newCard();
  assert.equal(await authenticateManagementKey(card), 0x9000);
  await generate(card, 0x9a, 0x11);
  assert.equal((await send(card, { ins: 0xfb, p1: 0x00, p2: 0x00 })).sw, 0x6985);
  for (let i = 0; i < 3; i++) await verifyPin(card, '000000');
  assert.equal((await send(card, { ins: 0xfb, p1: 0x00, p2: 0x00 })).sw, 0x6985, 'the PUK is not blocked');
  for (let i = 0; i < 3; i++) await verifyPin(card, '00000000', 0x81);
  assert.equal((await send(card, { ins: 0xfb, p1: 0x00, p2: 0x00 })).sw, 0x9000);

  assert.equal((await verifyPin(card, '123456')).sw, 0x9000);
  assert.equal((await authenticate(card, 0x11, 0x9a, [[0x82, EMPTY], [0x81, Buffer.alloc(32, 1)]])).sw, 0x6a88, 'keys are erased');
  assert.equal(await authenticateManagementKey(card), 0x9000, 'the management key is the default again');
  assert.equal((await getData(card, '5fc102')).sw, 0x9000, 'a new CHUID exists');
});
