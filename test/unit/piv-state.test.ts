import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, publicEncrypt } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDefaultCardState, parseCardState, serializeCardState, CardStateFormatError } from '../../src/piv/card-state.js';
import { createPivCard, PivCardOptionsError } from '../../src/piv/piv-card.js';
import { generateSlotKey } from '../../src/piv/slot-keys.js';
import { PivStateFile, StateFileError } from '../../src/piv/state-file.js';
import { MemoryKeyStore } from '../support/memory-key-store.js';
import { dynamicAuthentication, dynamicAuthenticationItem, padded, selectPiv, send, verifyPin } from '../support/piv-session.js';

/** Cheap scrypt parameters so the tests stay fast; the CLI uses the defaults. */
const FAST_SCRYPT = { N: 1024, r: 8, p: 1 };

function withDirectory(run: (directory: string) => Promise<void>): Promise<void> {
  const directory = mkdtempSync(join(tmpdir(), 'virtcard-piv-state-'));
  return run(directory).finally(() => rmSync(directory, { recursive: true, force: true }));
}

test('card state JSON round trip', async () => {
  const state = createDefaultCardState();
  state.pin.triesLeft = 1;
  state.keys.set(0x9c, await generateSlotKey('eccp384', 'always'));
  state.objects.set(0x5fc105, Uint8Array.of(1, 2, 3));

  const copy = parseCardState(serializeCardState(state));
  assert.equal(copy.pin.triesLeft, 1);
  assert.deepEqual(Buffer.from(copy.pin.value), Buffer.from('123456'));
  assert.deepEqual(Buffer.from(copy.puk.value), Buffer.from('12345678'));
  assert.deepEqual(copy.managementKey, state.managementKey);
  assert.deepEqual(copy.objects.get(0x5fc105), Uint8Array.of(1, 2, 3));
  const key = copy.keys.get(0x9c);
  assert.equal(key?.algorithm, 'eccp384');
  assert.equal(key?.pinPolicy, 'always');
  assert.deepEqual(key?.privateKey.export({ format: 'jwk' }), state.keys.get(0x9c)?.privateKey.export({ format: 'jwk' }));
});

test('card state rejects bad fields', () => {
  const good = JSON.parse(serializeCardState(createDefaultCardState())) as Record<string, unknown>;
  assert.throws(() => parseCardState('{'), CardStateFormatError);
  assert.throws(() => parseCardState(JSON.stringify({ ...good, pin: { value: '31', maxRetries: 3, triesLeft: 4 } })), /field pin of the PIV card state has invalid retry counters/);
  assert.throws(() => parseCardState(JSON.stringify({ ...good, puk: { value: 'zz', maxRetries: 3, triesLeft: 3 } })), /puk.value/);
  assert.throws(() => parseCardState(JSON.stringify({ ...good, keys: { '9a': { algorithm: 'dsa', pinPolicy: 'once', pkcs8: '' } } })), /unknown algorithm/);
});

test('state file encrypts and reopens', () =>
  withDirectory(async (directory) => {
    const path = join(directory, 'card.json');
    const opened = await PivStateFile.open(path, 'passphrase one', createDefaultCardState, FAST_SCRYPT);
    assert.equal(opened.created, true);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    opened.state.keys.set(0x9a, await generateSlotKey('rsa2048', 'once'));
    await opened.file.save(opened.state);

    const text = readFileSync(path, 'utf8');
    assert.doesNotMatch(text, /123456|PRIVATE|pkcs8/);
    const envelope = JSON.parse(text) as { kdf: { N: number } };
    assert.equal(envelope.kdf.N, 1024);

    const reopened = await PivStateFile.open(path, 'passphrase one', () => assert.fail('must not create'), FAST_SCRYPT);
    assert.equal(reopened.created, false);
    assert.equal(reopened.state.keys.get(0x9a)?.algorithm, 'rsa2048');
    assert.deepEqual(reopened.state.objects, opened.state.objects);
  }));

test('state file rejects wrong passphrase', () =>
  withDirectory(async (directory) => {
    const path = join(directory, 'card.json');
    await PivStateFile.open(path, 'right', createDefaultCardState, FAST_SCRYPT);
    await assert.rejects(PivStateFile.open(path, 'wrong', createDefaultCardState, FAST_SCRYPT), (error: unknown) => {
      assert.ok(error instanceof StateFileError);
      assert.match(error.message, /passphrase is wrong or the file is damaged/);
      assert.doesNotMatch(error.message, /wrong$/);
      return true;
    });
  }));

test('state file rejects changed header', () =>
  withDirectory(async (directory) => {
    const path = join(directory, 'card.json');
    await PivStateFile.open(path, 'right', createDefaultCardState, FAST_SCRYPT);
    const envelope = JSON.parse(readFileSync(path, 'utf8')) as { kdf: { r: number } };
    envelope.kdf.r = 9;
    writeFileSync(path, JSON.stringify(envelope));
    await assert.rejects(PivStateFile.open(path, 'right', createDefaultCardState, FAST_SCRYPT), /cannot decrypt/);

    writeFileSync(path, '{"format":"other"}');
    await assert.rejects(PivStateFile.open(path, 'right', createDefaultCardState, FAST_SCRYPT), /is not a virtcard-piv-state version 1 file/);
    writeFileSync(path, 'not json');
    await assert.rejects(PivStateFile.open(path, 'right', createDefaultCardState, FAST_SCRYPT), /is not JSON/);
  }));

test('card saves the PIN counter', () =>
  withDirectory(async (directory) => {
    const path = join(directory, 'card.json');
    const { file, state } = await PivStateFile.open(path, 'pass', createDefaultCardState, FAST_SCRYPT);
    const card = createPivCard({ state, sink: file });
    await selectPiv(card);
    assert.equal((await verifyPin(card, '000000')).sw, 0x63c2);

    const reopened = await PivStateFile.open(path, 'pass', createDefaultCardState, FAST_SCRYPT);
    assert.equal(reopened.state.pin.triesLeft, 2);
    const again = createPivCard({ state: reopened.state, sink: reopened.file });
    await selectPiv(again);
    assert.equal((await send(again, { ins: 0x20, p1: 0x00, p2: 0x80 })).sw, 0x63c2);
  }));

test('key store fills 9A and 9C', async () => {
  const store = new MemoryKeyStore({ slots: 2, modulusBits: 2048, pin: '24682468' });
  const card = createPivCard({ store });
  await selectPiv(card);

  const certificate = await send(card, { ins: 0xcb, p1: 0x3f, p2: 0xff, data: Buffer.from('5c035fc105', 'hex'), le: 256 });
  assert.equal(certificate.sw, 0x9000);
  assert.ok(certificate.data.includes(Buffer.from(store.slots[0]!.certificate)), '9A holds the first certificate');
  const signing = await send(card, { ins: 0xcb, p1: 0x3f, p2: 0xff, data: Buffer.from('5c035fc10a', 'hex'), le: 256 });
  assert.ok(signing.data.includes(Buffer.from(store.slots[1]!.certificate)), '9C holds the second certificate');
  assert.equal((await send(card, { ins: 0xcb, p1: 0x3f, p2: 0xff, data: Buffer.from('5c035fc10b', 'hex') })).sw, 0x6a82);

  assert.equal((await verifyPin(card, '123456')).sw, 0x63c2, 'the default PIN is not the store PIN');
  assert.equal((await verifyPin(card, '24682468')).sw, 0x9000);
  const change = await send(card, { ins: 0x24, p1: 0x00, p2: 0x80, data: Buffer.concat([padded('24682468'), padded('11111111')]) });
  assert.equal(change.sw, 0x6985);

  const secret = Buffer.from('wrapped key');
  const ciphertext = publicEncrypt({ key: store.publicKeys[0]!, padding: constants.RSA_PKCS1_PADDING }, secret);
  const decrypted = await send(card, { ins: 0x87, p1: 0x07, p2: 0x9a, data: dynamicAuthentication([0x82, new Uint8Array(0)], [0x81, ciphertext]) });
  assert.equal(decrypted.sw, 0x9000);
  const plain = dynamicAuthenticationItem(decrypted.data, 0x82);
  assert.deepEqual(plain.subarray(plain.length - secret.length), secret);

  store.failWith = 'not-logged-in';
  const failed = await send(card, { ins: 0x87, p1: 0x07, p2: 0x9a, data: dynamicAuthentication([0x82, new Uint8Array(0)], [0x81, ciphertext]) });
  assert.equal(failed.sw, 0x6985);
});

test('key store slots must fit PIV', () => {
  assert.throws(() => createPivCard({ store: new MemoryKeyStore({ slots: 4, modulusBits: 2048 }) }), PivCardOptionsError);
  assert.throws(() => createPivCard({ store: new MemoryKeyStore({ slots: 1, modulusBits: 1024 }) }), /must be RSA-2048/);
});
