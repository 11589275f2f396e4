/**
 * `virtcard client` end to end: QEMU 7.2 with usb-ccid and
 * ccid-card-passthru boots the Debian test guest (test/guest), and the
 * guest's pcscd, libccid and OpenSC use the card the client serves.
 *
 * The guest transcripts are compared with those of QEMU's own
 * ccid-card-emulated (libcacard) on the same NSS database, read from
 * $VIRTCARD_SHARED/reference/qemu-emulated (default: `shared` beside the
 * repository). Three guest boots cover: the NSS card, removal and insertion
 * from the client's stdin, the client stopping, the built-in identity with
 * the client started before QEMU, and QEMU killed and restarted under a
 * running client.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  COMPARED_SECTIONS,
  ClientProcess,
  FIXTURE_DATABASE,
  FIXTURE_PIN,
  REFERENCE_DIRECTORY,
  assertSignatureVerifies,
  base64After,
  bootGuest,
  ensureGuestBuilt,
  freePort,
  guestUnavailableReason,
  normaliseHandles,
  normaliseKeyMaterial,
  parseSections,
  readReference,
  section,
  type GuestRun,
} from '../support/qemu-guest.js';

const unavailable = guestUnavailableReason();
// In CI every tool must be there, so a missing one fails; elsewhere it skips with its reason.
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

/** Kills the QEMU process that run.sh (PID `runPid`) started. */
function killQemuOf(runPid: number): void {
  const children = spawnSync('pgrep', ['-P', String(runPid)], { encoding: 'utf8' }).stdout.trim().split(/\s+/).filter(Boolean);
  assert.ok(children.length > 0, `no child process of run.sh (PID ${runPid}) found to kill`);
  for (const pid of children) process.kill(Number(pid), 'SIGKILL');
}

describe('virtcard client with QEMU passthru', { skip }, () => {
  let work: string;

  before(() => {
    if (unavailable !== undefined) throw new Error(unavailable);
    assert.ok(existsSync(path.join(FIXTURE_DATABASE, 'cert9.db')), `fixture NSS database missing at ${FIXTURE_DATABASE}; set VIRTCARD_SHARED`);
    assert.ok(existsSync(REFERENCE_DIRECTORY), `reference transcripts missing at ${REFERENCE_DIRECTORY}; set VIRTCARD_SHARED`);
    ensureGuestBuilt();
    work = mkdtempSync(path.join(tmpdir(), 'virtcard-client-qemu-'));
  });

  after(() => {
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  test('NSS card matches ccid-card-emulated', async (t) => {
    const port = await freePort();
    const emulatorOptions = `db="sql:${FIXTURE_DATABASE}" use_hw=no soft=(,Test,CAC,,id-cert,signing-cert,encryption-cert)`;
    const client = ClientProcess.start(['-e', emulatorOptions, '-d', '1', '127.0.0.1', String(port)]);
    let stopCode: Promise<number | null> | undefined;

    let run: GuestRun;
    try {
      run = await bootGuest(work, 'client-nss.sh', port, {
        onEvent: (event) => {
          if (event === 'remove-card') client.command('remove');
          if (event === 'insert-card') client.command('insert');
          if (event === 'stop-client') stopCode = client.stop();
        },
      });
    } finally {
      await client.stop();
    }
    const context = `\n--- guest stdout:\n${run.stdout}\n--- guest stderr:\n${run.stderr}\n${client.describe()}`;
    assert.equal(run.code, 0, `guest run failed${context}`);
    const sections = parseSections(run.stdout);

    await t.test('transcripts match', () => {
      for (const name of COMPARED_SECTIONS) {
        const reference = readReference(name);
        assert.equal(normaliseHandles(section(sections, name, run)), normaliseHandles(reference), `transcript ${name} differs`);
      }
    });

    await t.test('wrong PIN reports tries left', () => {
      // libcacard returns 69 85 for a wrong PIN, which OpenSC maps to CKR_GENERAL_ERROR.
      // virtcard's card counts retries and returns 63 Cx, which OpenSC maps to CKR_PIN_INCORRECT.
      const reference = readReference('pkcs11-tool-wrong-pin');
      const expected = reference.replace('rv = CKR_GENERAL_ERROR (0x5)', 'rv = CKR_PIN_INCORRECT (0xa0)');
      assert.notEqual(expected, reference, 'the reference transcript changed; update this test');
      assert.equal(section(sections, 'pkcs11-tool-wrong-pin', run), expected);
    });

    await t.test('signatures verify on the host', () => {
      const subjects = [1, 2, 3].map((index) => assertSignatureVerifies(sections, index, run).subject);
      assert.deepEqual(subjects, ['CN=John Doe', 'CN=John Doe (signing)', 'CN=John Doe (encryption)']);
    });

    await t.test('remove and insert from stdin', () => {
      assert.match(run.stdout, /^card removed: rc=0$/m, `the guest did not see the card go${context}`);
      assert.match(section(sections, 'removed-l', run), /^0 {4}No /m);
      assert.match(run.stdout, /^card inserted: rc=0$/m, `the guest did not see the card come back${context}`);
      assert.match(section(sections, 'inserted-l', run), /^0 {4}Yes /m);
      assert.match(section(sections, 'inserted-L', run), /token label\s+: John Doe/);
      assert.match(client.stdout, /remove Test: card removed/);
      assert.match(client.stdout, /insert Test: card inserted/);
    });

    await t.test('trace masks PIN and key results', () => {
      assert.match(client.stdout, /^APDU > 00 A4 04 00 07 A0 00 00 00 79 01 00 {2}SELECT CAC PKI applet 0/m);
      assert.match(client.stdout, /^APDU > 00 20 00 00 08 <8 bytes masked> {2}VERIFY/m);
      assert.match(client.stdout, /SIGN\/DECRYPT \(CAC\)/);
      assert.match(client.stdout, /^APDU < <256 bytes masked> 90 00 {2}success/m);
      // The PIN as OpenSC sends it ("12345678"), in the trace's hex format.
      assert.doesNotMatch(client.stdout, /31 32 33 34 35 36 37 38/);
    });

    await t.test('stopped client leaves an empty reader', async () => {
      // ReaderRemove makes passthru report the slot empty; the USB reader itself stays.
      assert.match(run.stdout, /^client stopped: rc=0$/m, `the guest still sees a card after the client stopped${context}`);
      assert.match(section(sections, 'stopped-l', run), /^0 {4}No .*Gemalto/m);
      assert.match(section(sections, 'stopped-a', run), /\[exit status 1\]/);
      assert.ok(stopCode !== undefined, 'the guest never asked to stop the client');
      assert.equal(await stopCode, 0, `client exit status after SIGTERM${context}`);
      assert.match(client.stderr, /reader removed from QEMU/);
    });
  });

  test('built-in identity survives a QEMU restart', async (t) => {
    const port = await freePort();
    const dataDir = path.join(work, 'builtin');
    // Started before QEMU listens, so the client has to retry.
    const client = ClientProcess.start(['127.0.0.1', String(port)], { VIRTCARD_DATA_DIR: dataDir, VIRTCARD_PIN: FIXTURE_PIN });

    let first: GuestRun;
    let second: GuestRun;
    try {
      await client.waitForLog(/cannot connect to QEMU yet/);
      first = await bootGuest(work, 'client-builtin.sh', port, {
        onEvent: (event, runPid) => {
          if (event === 'kill-qemu') killQemuOf(runPid);
        },
      });
      second = await bootGuest(work, 'client-restarted.sh', port);
    } finally {
      await client.stop();
    }
    const context = `\n--- first guest:\n${first.stdout}\n${first.stderr}\n--- second guest:\n${second.stdout}\n${second.stderr}\n${client.describe()}`;

    await t.test('token and signatures', () => {
      // run.sh reports 125 when QEMU dies before the script ends, which is what killing it does.
      assert.equal(first.code, 125, `first guest run${context}`);
      assert.match(first.stdout, /^##### DONE$/m, `the first guest did not finish its checks${context}`);
      const sections = parseSections(first.stdout);
      assert.match(section(sections, 'opensc-tool-a', first), /3b:7a:18:00:00:73:66:74:65:20:63:64:31:34:34/);
      for (const name of ['pkcs11-tool-L', 'pkcs11-tool-O']) {
        const reference = readReference(name);
        assert.equal(normaliseKeyMaterial(section(sections, name, first)), normaliseKeyMaterial(reference), `transcript ${name} differs`);
      }
      // The third built-in key is for encryption only (keyUsage), so OpenSC signs with the first two.
      for (const index of [1, 2]) assertSignatureVerifies(sections, index, first);
      assert.ok(new X509Certificate(base64After(section(sections, 'cert3-read', first), /^Using slot/)).subject.length > 0);
    });

    await t.test('client reconnects to a new QEMU', () => {
      assert.equal(second.code, 0, `second guest run${context}`);
      assert.match(second.stdout, /^card present: rc=0$/m, `the new guest sees no card${context}`);
      assert.match(second.stdout, /token manufacturer : Common Access Card/);
      assert.ok((client.stderr.match(/connected to QEMU/g) ?? []).length >= 2, `the client did not connect twice${context}`);
      assert.match(client.stderr, /connection to QEMU lost/);
    });
  });
});
