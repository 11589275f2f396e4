import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Applet, AppletResult, CardContext } from '../../src/card/applet.js';
import { decodeClass } from '../../src/card/class-byte.js';
import { PinState, stripPinPadding } from '../../src/card/pin.js';
import { ResponseBuffer } from '../../src/card/response-buffer.js';
import { genericFci, VirtualCard } from '../../src/card/virtual-card.js';
import type { CommandApdu } from '../../src/iso7816/apdu.js';
import { encodeResponseApdu } from '../../src/iso7816/response.js';

const hex = (data: Uint8Array): string => Buffer.from(data).toString('hex').toUpperCase();
const bytes = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));

/** An applet that handles INS 01 (sync), 02 (async), 03 (throws) and passes everything else on. */
class TestApplet implements Applet {
  readonly aid = bytes('F0 01 02 03 04');
  readonly name = 'test';
  selections = 0;

  onSelect(): void {
    this.selections += 1;
  }

  process(apdu: CommandApdu, card: CardContext): AppletResult | Promise<AppletResult> {
    switch (apdu.ins) {
      case 0x01:
        return card.respond(new Uint8Array(300).fill(0x11), apdu.le);
      case 0x02:
        return Promise.resolve(encodeResponseApdu(Uint8Array.of(0x22), 0x9000));
      case 0x03:
        throw new Error('applet bug');
      default:
        return undefined;
    }
  }
}

function newCard(): { card: VirtualCard; applet: TestApplet } {
  const applet = new TestApplet();
  const pin = new PinState((candidate) => Promise.resolve(Buffer.from(candidate).toString() === '1234'), 2);
  const card = new VirtualCard({ atr: bytes('3B 00'), applets: [applet], pin });
  card.reset();
  return { card, applet };
}

async function send(card: VirtualCard, command: string): Promise<string> {
  return hex(await card.transmit(bytes(command)));
}

test('engine dispatches to the selected applet', async () => {
  const { card, applet } = newCard();
  assert.equal(await send(card, '00 01 00 00'), '6900', 'no applet selected');
  assert.equal(await send(card, '00 A4 04 00 05 F0 01 02 03 04 00'), hex(genericFci(applet.aid)) + '9000');
  assert.equal(applet.selections, 1);
  assert.equal(await send(card, '00 01 00 00'), '6100', '300 bytes pending');
  assert.equal(await send(card, '00 02 00 00'), '229000', 'async applet result');
  assert.equal(await send(card, '00 C0 00 00 00'), '6A88', 'the async command dropped the pending data');
  assert.equal(await send(card, '00 CA 00 00 00'), '6900', 'passed on to the ISO handler');
});

test('engine answers 6F 00 for applet errors', async () => {
  const { card } = newCard();
  await send(card, '00 A4 04 00 05 F0 01 02 03 04');
  assert.equal(await send(card, '00 03 00 00'), '6F00');
  assert.equal(await send(card, '00 02 00 00'), '229000', 'the card keeps working');
});

test('engine reset deselects and drops data', async () => {
  const { card } = newCard();
  await send(card, '00 A4 04 00 05 F0 01 02 03 04');
  card.reset();
  assert.equal(card.selectedApplet(0), undefined);
  assert.equal(await send(card, '00 C0 00 00 00'), '6A88');
});

test('class byte decoding', () => {
  assert.deepEqual(decodeClass(0x81), { kind: 'interindustry', channel: 1, secureMessaging: 0 });
  assert.equal(decodeClass(0x03).secureMessaging, 0x02);
  assert.deepEqual(decodeClass(0xb3), { kind: 'interindustry', channel: 0, secureMessaging: 0 });
  assert.equal(decodeClass(0x10).kind, 'reserved');
  assert.equal(decodeClass(0xff).kind, 'proprietary');
});

test('response buffer sizing', () => {
  const buffer = new ResponseBuffer();
  const data = new Uint8Array(300).fill(7);
  assert.equal(hex(buffer.respond(data.subarray(0, 5), 5)), '07070707079000');
  assert.equal(hex(buffer.respond(data, 0)), '6100');
  assert.equal(hex(buffer.getResponse(0)), '6100');
  assert.equal(buffer.getResponse(44).length, 46);
  assert.equal(hex(buffer.getResponse(200).subarray(200)), '6138');
  assert.equal(hex(buffer.getResponse(256).subarray(56)), '9000');
  assert.equal(buffer.hasPending, false);
});

test('PIN padding and retry bounds', async () => {
  assert.equal(hex(stripPinPadding(bytes('31 32 FF FF'))), '3132');
  assert.equal(hex(stripPinPadding(bytes('FF FF'))), '');
  assert.throws(() => new PinState(() => Promise.resolve(true), 16), RangeError);

  const pin = new PinState((candidate) => Promise.resolve(Buffer.from(candidate).toString() === '1234'), 2);
  assert.equal(await pin.verify(bytes('30 30 30 30')), 0x63c1);
  assert.equal(await pin.verify(bytes('31 32 33 34 FF')), 0x9000);
  assert.equal(pin.remainingTries, 2);
});
