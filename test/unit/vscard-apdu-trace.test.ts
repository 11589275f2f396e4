import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApduTracer, appletName, instructionName } from '../../src/vscard/apdu-trace.js';

function hex(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
}

test('applet names by AID', () => {
  assert.equal(appletName(hex('A0 00 00 00 79 01 00')), 'CAC PKI applet 0');
  assert.equal(appletName(hex('A0 00 00 00 79 01 02')), 'CAC PKI applet 2');
  assert.equal(appletName(hex('A0 00 00 01 16 DB 00')), 'CAC CCC');
  assert.equal(appletName(hex('A0 00 00 00 79 03 00')), 'CAC ACA');
  assert.equal(appletName(hex('A0 00 00 03 97 43 49 44 5F 01 00')), 'Microsoft PnP');
  assert.equal(appletName(hex('62 76 01 FF 00 00 00')), undefined);
});

test('instruction names', () => {
  assert.equal(instructionName(0xa4), 'SELECT');
  assert.equal(instructionName(0x56), 'GET PROPERTIES (CAC)');
  assert.equal(instructionName(0x3c), 'INS 3C');
});

test('tracer follows the selected applet', () => {
  const tracer = new ApduTracer();
  assert.equal(
    tracer.command(hex('00 A4 04 00 07 A0 00 00 00 79 01 00')),
    '00 A4 04 00 07 A0 00 00 00 79 01 00  SELECT CAC PKI applet 0 (A0000000790100)',
  );
  assert.equal(tracer.response(hex('61 0D')), '61 0D  13 bytes available with GET RESPONSE');
  assert.equal(tracer.command(hex('80 56 01 00 00')), '80 56 01 00 00  GET PROPERTIES (CAC) [CAC PKI applet 0]');
  assert.equal(tracer.response(hex('01 02 90 00')), '01 02 90 00  success (2 data bytes)');

  // A failed SELECT deselects, as libcacard does.
  assert.match(tracer.command(hex('00 A4 04 00 07 62 76 01 FF 00 00 00')), /SELECT AID 627601FF000000$/);
  assert.equal(tracer.response(hex('6A 82')), '6A 82  file or application not found');
  assert.equal(tracer.command(hex('80 52 00 00 02 01 02')), '80 52 00 00 02 01 02  READ BUFFER (CAC)');

  tracer.command(hex('00 A4 04 00 07 A0 00 00 01 16 DB 00'));
  tracer.response(hex('90 00'));
  tracer.reset();
  assert.equal(tracer.command(hex('80 56 01 00 00')), '80 56 01 00 00  GET PROPERTIES (CAC)');
});

test('tracer masks PIN data', () => {
  const tracer = new ApduTracer();
  const cases = [
    ['00 20 00 80 08 31 32 33 34 35 36 37 38', '00 20 00 80 08 <8 bytes masked>  VERIFY'],
    ['00 24 00 80 10 31 32 33 34 35 36 37 38 38 37 36 35 34 33 32 31', '00 24 00 80 10 <16 bytes masked>  CHANGE REFERENCE DATA'],
    ['00 2C 00 80 10 31 32 33 34 35 36 37 38 38 37 36 35 34 33 32 31', '00 2C 00 80 10 <16 bytes masked>  RESET RETRY COUNTER'],
    ['00 20 00 80 00 00 08 31 32 33 34 35 36 37 38', '00 20 00 80 00 00 08 <8 bytes masked>  VERIFY'],
  ];
  for (const [command, expected] of cases) {
    assert.equal(tracer.command(hex(command!)), expected);
  }
  // VERIFY without data (a PIN status query) has nothing to mask.
  assert.equal(tracer.command(hex('00 20 00 80')), '00 20 00 80  VERIFY');
  assert.equal(tracer.response(hex('63 C3')), '63 C3  verification failed, 3 tries left');
});

test('tracer masks private-key results', () => {
  const tracer = new ApduTracer();
  const input = 'AB'.repeat(255);
  assert.match(tracer.command(hex(`80 42 00 00 FF ${input}`)), /SIGN\/DECRYPT \(CAC\)$/);
  assert.equal(tracer.response(hex('61 00')), '61 00  256 or more bytes available with GET RESPONSE');
  tracer.command(hex('00 C0 00 00 00'));
  const secret = '5A'.repeat(256);
  const line = tracer.response(hex(`${secret} 90 00`));
  assert.equal(line, '<256 bytes masked> 90 00  success (256 data bytes)');

  // The next command that is not GET RESPONSE ends the masking.
  tracer.command(hex('80 52 00 00 02 01 02'));
  assert.equal(tracer.response(hex('0A 00 90 00')), '0A 00 90 00  success (2 data bytes)');
});

test('tracer reports malformed APDUs', () => {
  const tracer = new ApduTracer();
  assert.match(tracer.command(hex('00 A4 04')), /^00 A4 04 {2}malformed command: /);
  assert.match(tracer.response(hex('90')), /malformed response/);
});
