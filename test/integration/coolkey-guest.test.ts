/**
 * QEMU's documented guest setup for the CAC card, run against virtcard. A
 * Debian guest gets a `ccid-card-passthru` reader, and `virtcard client`
 * serves the card in place of vscclient. In the guest the script follows
 * QEMU's smart-card documentation (system NSS database, CA import, CoolKey
 * module, `certutil -L -h all`), then signs with each key through CoolKey.
 * The card stores its certificates zlib-compressed (`--cert-compression
 * zlib`), because CoolKey 1.1 reads nothing else (docs/coolkey.md).
 *
 * The same boot then runs the OpenSC checks of the passthru test on the
 * same card, and their transcripts are compared with those of QEMU's own
 * ccid-card-emulated, whose certificates are not compressed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  COMPARED_SECTIONS,
  ClientProcess,
  FIXTURE_DATABASE,
  FIXTURE_PIN,
  REFERENCE_DIRECTORY,
  SIGNED_DATA,
  assertSignatureVerifies,
  bootGuest,
  ensureGuestBuilt,
  freePort,
  guestUnavailableReason,
  normaliseHandles,
  parseSections,
  readReference,
  section,
  type GuestRun,
} from '../support/qemu-guest.js';
import { SHARED_DIR } from '../support/virtcard-vpcd.js';

const CA_CERTIFICATE = join(SHARED_DIR, 'fixtures', 'fake-smartcard-ca.cer');
/** Upper bound for the whole guest run, in seconds. A run took 18 s with QEMU 7.2 TCG on a 2-core host. */
const GUEST_TIMEOUT_S = 300;

/** Card order of the fixture certificates, with the ID and label CoolKey gives each PKI applet. */
const CERTIFICATES = [
  { nickname: 'id-cert', id: '0001', label: 'CAC ID Certificate' },
  { nickname: 'signing-cert', id: '0002', label: 'CAC Email Signature Certificate' },
  { nickname: 'encryption-cert', id: '0003', label: 'CAC Email Encryption Certificate' },
] as const;

/** The event the guest script writes to the console between the CoolKey and the OpenSC steps. */
const OPENSC_CHECKS_EVENT = 'VIRTCARD-TEST opensc-checks';

function unavailableReason(): string | undefined {
  if (!existsSync(join(FIXTURE_DATABASE, 'cert9.db'))) return `fixture NSS database missing at ${FIXTURE_DATABASE}; set VIRTCARD_SHARED`;
  if (!existsSync(REFERENCE_DIRECTORY)) return `reference transcripts missing at ${REFERENCE_DIRECTORY}; set VIRTCARD_SHARED`;
  if (spawnSync('which', ['certutil']).status !== 0) return 'certutil is missing: apt-get install libnss3-tools';
  return guestUnavailableReason();
}

// In CI every tool must be there, so a missing one fails. Elsewhere the test skips with the reason.
const unavailable = unavailableReason();
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

describe('CoolKey in QEMU guest', { skip, timeout: (GUEST_TIMEOUT_S + 60) * 1000 }, () => {
  let work: string;
  let run: GuestRun;
  let client: ClientProcess;
  let sections: Map<string, string>;

  function describeGuest(): string {
    return `run.sh exit ${run.code}\nscript output:\n${run.stdout}\nrun.sh stderr:\n${run.stderr}\n${client.describe()}`;
  }

  before(async () => {
    if (unavailable !== undefined) throw new Error(unavailable);
    ensureGuestBuilt();
    work = mkdtempSync(join(tmpdir(), 'virtcard-coolkey-guest-'));
    const database = join(work, 'nss-db');
    cpSync(FIXTURE_DATABASE, database, { recursive: true });
    const port = await freePort();

    // The client retries until QEMU listens.
    const emulatorOptions = `db="sql:${database}" use_hw=no soft=(,Test,CAC,,${CERTIFICATES.map(({ nickname }) => nickname).join(',')})`;
    client = ClientProcess.start(['-e', emulatorOptions, '--cert-compression', 'zlib', '127.0.0.1', String(port)], { VIRTCARD_PIN: FIXTURE_PIN });
    try {
      run = await bootGuest(work, 'coolkey-opensc.sh', port, {
        files: [CA_CERTIFICATE],
        pcscdArguments: '-a',
        timeoutSeconds: GUEST_TIMEOUT_S,
      });
    } finally {
      await client.stop();
    }
    sections = parseSections(run.stdout);
  });

  after(() => {
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  test('guest script succeeds', () => {
    assert.equal(run.code, 0, describeGuest());
  });

  test('certutil lists John Doe certificates', () => {
    const listing = section(sections, 'nss', run);
    assert.match(listing, /\[exit status 0\]\n$/, listing);
    assert.match(listing, /^fake-smartcard-ca\s+CT,C,C$/m);
    for (const { label } of CERTIFICATES) {
      assert.match(listing, new RegExp(`^John Doe:${label}\\s+u,u,u$`, 'm'), label);
    }
  });

  test('CoolKey signatures verify on host', () => {
    const data = join(work, 'data');
    writeFileSync(data, SIGNED_DATA);
    for (const { nickname, id } of CERTIFICATES) {
      const line = new RegExp(`^##### SIGNATURE ${id} rc=(\\d+) (\\S*)$`, 'm').exec(run.stdout);
      assert.ok(line, `no signature line for key ${id}\n${describeGuest()}`);
      assert.equal(line[1], '0', `pkcs11-tool --sign with key ${id} failed\n${run.stdout}`);

      const signature = join(work, `signature-${id}`);
      writeFileSync(signature, Buffer.from(line[2] ?? '', 'base64'));
      const certificate = join(work, `${nickname}.der`);
      const exported = spawnSync('certutil', ['-L', '-d', `sql:${FIXTURE_DATABASE}`, '-n', nickname, '-r']);
      assert.equal(exported.status, 0, String(exported.stderr));
      writeFileSync(certificate, exported.stdout);

      // RSA-PKCS signs the raw input, so recovering the signature must give the data back.
      const recovered = spawnSync('openssl', ['pkeyutl', '-verifyrecover', '-certin', '-inkey', certificate, '-keyform', 'DER', '-in', signature]);
      assert.equal(recovered.status, 0, `key ${id}: ${String(recovered.stderr)}`);
      assert.deepEqual(recovered.stdout, SIGNED_DATA, `key ${id}`);
    }
  });

  test('guest sent CoolKey commands', () => {
    // pcscd -a logs each command as "APDU: 00 A4 ...". Only CoolKey runs before the
    // event, and OpenSC's CAC driver selects the CCC with P2 = 0C and reads with class 00.
    const end = run.console.indexOf(OPENSC_CHECKS_EVENT);
    assert.ok(end > 0, `the guest never wrote "${OPENSC_CHECKS_EVENT}" to the console\n${describeGuest()}`);
    const coolkeyLog = run.console.slice(0, end);
    assert.match(coolkeyLog, /APDU: 00 A4 04 00 07 A0 00 00 01 16 DB 00 ?\r?$/m, 'SELECT of the CCC with P2 = 00');
    assert.match(coolkeyLog, /APDU: 80 52 00 00 02 02 02 ?\r?$/m, 'READ BUFFER with class 80');
    assert.match(coolkeyLog, /APDU: 00 A4 02 0C 02 01 02 ?\r?$/m, 'SELECT of the PKI 2 file with P2 = 0C');
    assert.match(coolkeyLog, /APDU: 00 42 80 00 F0 /, 'SIGN/DECRYPT in 240-byte blocks');
  });

  test('OpenSC transcripts match after CoolKey', () => {
    for (const name of COMPARED_SECTIONS) {
      assert.equal(normaliseHandles(section(sections, name, run)), normaliseHandles(readReference(name)), `transcript ${name} differs`);
    }
  });

  test('OpenSC wrong PIN reports tries left', () => {
    // libcacard returns 69 85 for a wrong PIN, which OpenSC maps to CKR_GENERAL_ERROR.
    // virtcard's card counts retries and returns 63 Cx, which OpenSC maps to CKR_PIN_INCORRECT.
    const reference = readReference('pkcs11-tool-wrong-pin');
    const expected = reference.replace('rv = CKR_GENERAL_ERROR (0x5)', 'rv = CKR_PIN_INCORRECT (0xa0)');
    assert.notEqual(expected, reference, 'the reference transcript changed; update this test');
    assert.equal(section(sections, 'pkcs11-tool-wrong-pin', run), expected);
  });

  test('OpenSC signatures verify on host', () => {
    const subjects = [1, 2, 3].map((index) => assertSignatureVerifies(sections, index, run).subject);
    assert.deepEqual(subjects, ['CN=John Doe', 'CN=John Doe (signing)', 'CN=John Doe (encryption)']);
  });
});
