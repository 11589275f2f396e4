import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, publicEncrypt } from 'node:crypto';
import { createCacCard, CAC_ATR } from '../../src/cac/index.js';
import { KeyStoreError, type KeyStore } from '../../src/backends/key-store.js';
import type { VirtualCard } from '../../src/card/virtual-card.js';
import { MemoryKeyStore } from '../support/memory-key-store.js';

const PIN = '3132333435363738';
const PKI0 = 'A0 00 00 00 79 01 00';
const CCC = 'A0 00 00 01 16 DB 00';
const ACA = 'A0 00 00 00 79 03 00';
const GP = 'A0 00 00 00 03 00 00';
const MSFT = 'A0 00 00 03 97 43 49 44 5F 01 00';

function bytes(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
}

function hex(data: Uint8Array): string {
  return Buffer.from(data).toString('hex').toUpperCase();
}

async function send(card: VirtualCard, command: string): Promise<string> {
  return hex(await card.transmit(bytes(command)));
}

function sw(response: string): string {
  return response.slice(-4);
}

async function select(card: VirtualCard, aid: string): Promise<void> {
  const length = bytes(aid).length.toString(16).padStart(2, '0');
  assert.equal(sw(await send(card, `00 A4 04 00 ${length} ${aid} 00`)), '9000', `SELECT ${aid}`);
}

/** Reads a whole response through 61xx/GET RESPONSE with Le = 00. */
async function readChained(card: VirtualCard, first: string): Promise<{ data: string; sw: string }> {
  let response = await send(card, first);
  let data = '';
  while (response.length >= 4 && response.slice(-4, -2) === '61') {
    data += response.slice(0, -4);
    response = await send(card, '00 C0 00 00 00');
  }
  return { data: data + response.slice(0, -4), sw: sw(response) };
}

function newCard(options: { pinRetries?: number; slots?: number } = {}): { card: VirtualCard; store: MemoryKeyStore } {
  const store = new MemoryKeyStore({ slots: options.slots ?? 2 });
  const card = createCacCard(store, options.pinRetries === undefined ? {} : { pinRetries: options.pinRetries });
  card.reset();
  return { card, store };
}

test('card has the libcacard ATR', () => {
  const { card } = newCard();
  assert.equal(hex(card.atr), hex(CAC_ATR));
});

test('SELECT answers FCI with sizing', async () => {
  const { card } = newCard();
  assert.equal(await send(card, `00 A4 04 00 07 ${PKI0}`), '610D');
  assert.equal(await send(card, '00 C0 00 00 0D'), `6F0B8407${PKI0.replace(/ /g, '')}A5009000`);
  assert.equal(await send(card, '00 A4 04 00 07 A0 00 00 00 79 01 09'), '6A82');
  assert.equal(card.selectedApplet(0), undefined, 'a failed SELECT deselects');
  assert.equal(sw(await send(card, `00 A4 04 00 07 ${GP} 00`)), '9000');
});

test('certificate read through GET RESPONSE', async () => {
  const { card, store } = newCard();
  await select(card, PKI0);
  const certificate = store.slots[0]!.certificate;
  const fileLength = certificate.length + 1;

  assert.equal(await send(card, '80 52 00 00 02 02 02 02'), hex(Uint8Array.of(fileLength & 0xff, fileLength >> 8, 0x90, 0x00)));
  let file = '';
  for (let offset = 2; offset < fileLength + 2; offset += 255) {
    const p1p2 = offset.toString(16).padStart(4, '0');
    const chunk = await readChained(card, `80 52 ${p1p2} 02 02 FF`);
    assert.equal(chunk.sw, '9000');
    file += chunk.data;
  }
  assert.equal(file, '00' + hex(certificate));
});

test('GET RESPONSE counts down and frees the buffer', async () => {
  const { card } = newCard();
  await send(card, `00 A4 04 00 07 ${CCC}`);
  assert.equal(await send(card, '00 C0 00 00'), '610D', 'no Le keeps the buffer');
  assert.equal(await send(card, '00 C0 00 00 05'), '6F0B8407A06108');
  assert.equal(await send(card, '00 C0 00 00 FF'), '00000116DB00A5009000');
  assert.equal(await send(card, '00 C0 00 00 00'), '6A88');
});

test('malformed APDU keeps pending data', async () => {
  const { card } = newCard();
  await send(card, `00 A4 04 00 07 ${CCC}`);
  assert.equal(await send(card, '00 A4'), '6700');
  assert.equal(sw(await send(card, '00 C0 00 00 0D')), '9000');
});

test('chained SIGN equals raw RSA', async () => {
  const { card, store } = newCard();
  const input = Buffer.alloc(128, 0xff);
  input[0] = 0x00;
  input[1] = 0x01;
  input[100] = 0x00;
  assert.equal(await send(card, `00 20 00 00 08 ${PIN}`), '9000');
  await select(card, PKI0);

  assert.equal(await send(card, `00 42 80 00 50 ${input.subarray(0, 80).toString('hex')}`), '9000');
  const result = await readChained(card, `00 42 00 00 30 ${input.subarray(80).toString('hex')} 00`);
  assert.equal(result.sw, '9000');
  const signature = Buffer.from(result.data, 'hex');
  assert.equal(signature.length, 128);
  const recovered = publicEncrypt({ key: store.publicKeys[0]!, padding: constants.RSA_NO_PADDING }, signature);
  assert.equal(recovered.toString('hex'), input.toString('hex'));
});

test('CLA 10 is not command chaining', async () => {
  const { card } = newCard();
  await send(card, `00 20 00 00 08 ${PIN}`);
  await select(card, PKI0);
  // CAC applets ignore CLA, so CLA 10 with P1 = 00 runs the operation on 80 bytes: wrong length.
  assert.equal(await send(card, `10 42 00 00 50 ${'AB'.repeat(80)}`), '6984');
  assert.equal(await send(card, '10 A4 04 00 07 A0 00 00 00 79 01 00'), '6900');
});

test('SIGN status words', async () => {
  const { card, store } = newCard();
  await select(card, PKI0);
  const block = 'AB'.repeat(128);
  assert.equal(await send(card, `80 42 00 00 80 ${block}`), '6985', 'before VERIFY');
  await send(card, `00 20 00 00 08 ${PIN}`);
  assert.equal(await send(card, `80 42 00 01 80 ${block}`), '6A86', 'P2 not 00');
  assert.equal(await send(card, `80 42 01 00 80 ${block}`), '6A86', 'P1 not 00 or 80');
  assert.equal(await send(card, `80 42 00 00 40 ${'AB'.repeat(64)}`), '6984', 'input shorter than the modulus');
  assert.equal(await send(card, `80 42 00 00 80 ${'FF'.repeat(128)}`), '6984', 'input not below the modulus');
  store.failWith = 'no-memory';
  assert.equal(await send(card, `80 42 00 00 80 00${'AB'.repeat(127)}`), '6581');
  store.failWith = 'failed';
  assert.equal(await send(card, `80 42 00 00 80 00${'AB'.repeat(127)}`), '6500');
  store.failWith = 'not-logged-in';
  assert.equal(await send(card, `80 42 00 00 80 00${'AB'.repeat(127)}`), '6985');
  assert.equal(await send(card, '80 58 00 00 00'), '6985', 'UPDATE BUFFER in a PKI applet');
});

test('SELECT of the PKI applet clears the sign buffer', async () => {
  const { card } = newCard();
  await send(card, `00 20 00 00 08 ${PIN}`);
  await select(card, PKI0);
  assert.equal(await send(card, `80 42 80 00 40 00${'AB'.repeat(63)}`), '9000');
  await select(card, PKI0);
  assert.equal(await send(card, `80 42 00 00 40 ${'AB'.repeat(64)}`), '6984');
});

test('GET PROPERTIES status words', async () => {
  const { card } = newCard();
  await select(card, PKI0);
  assert.equal(await send(card, '80 56 00 00 00'), '6A86');
  assert.equal(await send(card, '80 56 01 01 00'), '6A86');
  assert.equal(await send(card, '80 56 88 00 00'), '6A86');
  assert.equal(await send(card, '80 56 01 00 01 01 00'), '6984');
  assert.equal(await send(card, '80 56 02 00 00'), '6984');
  assert.equal(await send(card, '80 56 02 00 01 FF 00'), '6A88');
  assert.equal(await send(card, '80 56 01 00 00'), '6C20');
  assert.equal(sw(await send(card, '80 56 01 00 20')), '9000');
  assert.equal(await send(card, '80 56 02 00 02 01 01 00'), '6C0E');
});

test('READ BUFFER and SELECT object errors', async () => {
  const { card } = newCard();
  await select(card, CCC);
  assert.equal(await send(card, '80 52 00 00 00'), '6984', 'no data');
  assert.equal(await send(card, '80 52 00 00 04 01 02 03 04'), '6984', 'Lc 4');
  assert.equal(await send(card, '80 52 00 00 02 06 02'), '6984', 'file type 06');
  assert.equal(await send(card, '80 52 08 08 02 01 02'), '6A86', 'offset past the end');
  assert.equal(await send(card, '80 58 00 00 00'), '6900', 'UPDATE BUFFER in the CCC');
  assert.equal(await send(card, '00 A4 02 00 02 DB 00'), '9000');
  assert.equal(await send(card, '00 A4 02 00 02 DB DB'), '6A82');
  assert.equal(await send(card, '00 A4 02 00 00'), '6984');
  assert.equal(await send(card, '00 84 00 00 08'), '6D00', 'GET CHALLENGE in an applet');
  assert.equal(await send(card, '00 4C 00 00 00'), '6D00', 'GET ACR outside the ACA');
});

test('GET ACR status words', async () => {
  const { card } = newCard();
  await select(card, ACA);
  assert.equal(await send(card, '80 4C 00 FF 00'), '6A86');
  assert.equal(await send(card, '80 4C 00 00 01 00 00'), '6984');
  assert.equal(await send(card, '80 4C 01 00 02 00 01 00'), '6984');
  assert.equal(await send(card, '80 4C 01 00 01 0F 00'), '6A88');
  assert.equal(await send(card, `80 4C 11 00 07 ${ACA} 00`), '6A88');
  assert.equal(await send(card, '80 4C 12 00 02 DB DB 00'), '6A80');
  assert.equal(await send(card, '80 4C 30 00 00'), '6900');
  assert.equal(await send(card, '80 52 00 00 02 01 02 00'), '6D00', 'READ BUFFER in the ACA');
});

test('GET ACR uses GSC-IS entries', async () => {
  const { card } = newCard({ slots: 1 });
  await select(card, ACA);
  assert.equal(await send(card, '80 4C 01 00 01 08 00'), '01051002060202' + 'A007080302' + '1D011E01' + '9000');
  const services = await readChained(card, '80 4C 21 00 00');
  assert.match(services.data, /^0105100206020294010D/);
  assert.ok(services.data.includes('930A619207A0000000790100'), 'PKI 0 entry carries its AID');
  const providers = await readChained(card, '80 4C 20 00 00');
  assert.equal(
    providers.data,
    '01051002060202' + '910103' + ['1F', '1E', '1D'].map((id) => `900A${id}9207A0000000790300`).join(''),
  );
});

test('GP and Microsoft applets', async () => {
  const { card } = newCard();
  await select(card, GP);
  const cplc = await send(card, '00 CA 9F 7F 00');
  assert.equal(cplc.length, 47 * 2);
  assert.notEqual(cplc.slice(30, 42), '000000000000', 'CPLC carries the serial');
  assert.equal(await send(card, '00 CA 00 01 00'), '6A88');
  assert.equal(sw(await send(card, '00 CA 00 66 00')), '9000');

  await select(card, MSFT);
  assert.equal(card.windowsCompatible, false);
  assert.equal(sw(await send(card, '00 CA 7F 68 00')), '9000');
  assert.equal(card.windowsCompatible, true);
  card.reset();
  assert.equal(card.windowsCompatible, true, 'the flag outlives resets');
});

test('PIN counter blocks after retries', async () => {
  const { card, store } = newCard();
  assert.equal(await send(card, '00 20 00 00'), '63C3');
  assert.equal(await send(card, '00 20 00 00 08 3132333435363739'), '63C2');
  assert.equal(await send(card, '00 20 00 00 08 30303030FFFFFFFF'), '63C1');
  assert.equal(await send(card, '00 20 00 00'), '63C1');
  assert.equal(await send(card, '00 20 00 00 06 FFFFFFFFFFFF'), '63C0');
  assert.equal(await send(card, '00 20 00 00'), '6983');
  assert.equal(await send(card, `00 20 00 00 08 ${PIN}`), '6983', 'right PIN while blocked');
  assert.equal(store.pinChecks, 3, 'no store check once blocked');
  card.reset();
  assert.equal(await send(card, '00 20 00 00'), '6983', 'reset keeps the counter');
});

test('PIN verified state and reset', async () => {
  const { card, store } = newCard({ pinRetries: 5 });
  assert.equal(await send(card, '00 20 00 00'), '63C5');
  assert.equal(await send(card, '00 20 00 00 08 3132333435363739'), '63C4');
  assert.equal(await send(card, `00 20 00 00 0C ${PIN}FFFFFFFF`), '9000', 'FF padding stripped');
  assert.equal(await send(card, '00 20 00 00'), '9000');
  assert.equal(await send(card, `00 20 00 00 08 ${PIN}`), '9000');
  assert.equal(store.pinChecks, 3, 'every VERIFY with data asks the store');
  card.reset();
  assert.equal(await send(card, '00 20 00 00'), '63C5', 'reset clears the verified state, counter was reset');
  assert.equal(await send(card, '00 20 01 00 00'), '6A00');
  await send(card, `00 20 00 00 08 ${PIN}`);
  assert.equal(await send(card, '00 20 00 00 08 3030303030303030'), '63C4', 'wrong PIN logs out');
  assert.equal(await send(card, '00 20 00 00'), '63C4');
});

test('ISO handler class and instruction rules', async () => {
  const { card } = newCard();
  assert.equal(await send(card, `02 A4 04 00 07 ${CCC} 00`), '6882', 'channel 2 counts as secure messaging');
  assert.equal(await send(card, `D0 A4 04 00 07 ${CCC} 00`), '6900', 'proprietary class');
  assert.equal(sw(await send(card, `01 A4 04 00 07 ${CCC} 00`)), '9000', 'channel 1 works');
  assert.equal(await send(card, '00 A4 00 00 02 3F 00'), '6A81');
  assert.equal(await send(card, '00 CA 9F 7F 00'), '6900');
  assert.equal(await send(card, '00 B0 00 00 00'), '6900');
});

test('too many certificates rejected', () => {
  const store = new MemoryKeyStore({ slots: 1 });
  const many: KeyStore = {
    description: store.description,
    slots: Array.from({ length: 11 }, () => store.slots[0]!),
    verifyPin: (pin) => store.verifyPin(pin),
    rsaPrivateRaw: (index, input) => store.rsaPrivateRaw(index, input),
    close: () => store.close(),
  };
  assert.throws(() => createCacCard(many), /at most 10/);
  assert.throws(() => createCacCard(store, { pinRetries: 0 }), RangeError);
});

test('2048-bit SIGN through GET RESPONSE', async () => {
  const store = new MemoryKeyStore({ modulusBits: 2048 });
  const card = createCacCard(store);
  card.reset();
  await send(card, `00 20 00 00 08 ${PIN}`);
  await select(card, PKI0);
  const input = Buffer.alloc(256, 0xff);
  input[0] = 0x00;
  input[1] = 0x01;
  input[200] = 0x00;
  const command = `80 42 00 00 00 01 00 ${input.toString('hex')}`;

  assert.equal(await send(card, command), '6100', 'no Le: 256 bytes pending');
  const whole = await send(card, '00 C0 00 00 00');
  assert.equal(whole.length, 256 * 2 + 4);
  assert.equal(sw(whole), '9000');

  assert.equal(await send(card, command), '6100');
  const first = await send(card, '00 C0 00 00 FF');
  assert.equal(sw(first), '6101', 'one byte left');
  const last = await send(card, '00 C0 00 00 FF');
  assert.equal(last.length, 2 + 4);
  assert.equal(first.slice(0, -4) + last.slice(0, -4), whole.slice(0, -4));
});

test('VERIFY maps key store failures', async () => {
  const store = new MemoryKeyStore();
  store.verifyPin = (): Promise<boolean> => Promise.reject(new KeyStoreError('failed', 'token removed'));
  const card = createCacCard(store);
  card.reset();
  assert.equal(await send(card, `00 20 00 00 08 ${PIN}`), '6500');
  assert.equal(await send(card, '00 20 00 00'), '63C3', 'a store failure is not a wrong PIN');
});

test('Person Instance reads the data object', async () => {
  const store = new MemoryKeyStore();
  const objects = new Map([['Person Instance', bytes('01 05 4D 61 72 69 65 02 00 03 02 54 75 FF')]]);
  const withObjects = Object.assign(store, {
    readDataObject: (label: string): Promise<Uint8Array | undefined> => Promise.resolve(objects.get(label)),
  });
  const card = createCacCard(withObjects);
  card.reset();

  await select(card, 'A0 00 00 00 79 02 00');
  assert.equal(await send(card, '80 52 00 00 02 01 08 00'), '06000105020003029000', 'TL file, damaged tail dropped');
  assert.equal(await send(card, '80 52 00 00 02 02 09 00'), '07004D6172696554759000');

  await select(card, 'A0 00 00 00 79 02 01');
  assert.equal(await send(card, '80 52 00 00 02 01 02 00'), '00009000', 'no Personnel object');
});

test('commands keep order around async ones', async () => {
  const { card } = newCard();
  const selectCcc = bytes(`00 A4 04 00 07 ${CCC}`);
  const verify = bytes(`00 20 00 00 08 ${PIN}`);
  const getResponse = bytes('00 C0 00 00 0D');
  const status = bytes('00 20 00 00');
  const responses = await Promise.all([
    card.transmit(verify),
    card.transmit(selectCcc),
    card.transmit(getResponse),
    card.transmit(status),
  ]);
  assert.deepEqual(responses.map((response) => hex(response).slice(-4)), ['9000', '610D', '9000', '9000']);
});
