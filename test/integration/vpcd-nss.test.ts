/**
 * `virtcard vpcd` with the fixture NSS database, checked through a private
 * pcscd, vsmartcard's vpcd and OpenSC the way a user of the host would.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { privatePcscdUnavailableReason, startPrivatePcscd, type PrivatePcscd } from '../support/private-pcscd.js';
import {
  SHARED_DIR,
  describeRun,
  missingToolsReason,
  runTool,
  startVirtcardVpcd,
  waitForCard,
  type VirtcardProcess,
} from '../support/virtcard-vpcd.js';

const FIXTURE_DB = join(SHARED_DIR, 'fixtures', 'nss-db');
const PIN = readFixturePassword();
const WRONG_PIN = '00000000';

/** The ATR of libcacard's virtual card, which virtcard copies. */
const CAC_ATR = '3b:7a:18:00:00:73:66:74:65:20:63:64:31:34:34';

/** Card order of the fixture certificates, with the key ID and label OpenSC's CAC driver gives each. */
const CERTIFICATES = [
  { nickname: 'id-cert', id: '0001', label: 'CAC ID Certificate' },
  { nickname: 'signing-cert', id: '0002', label: 'CAC Email Signature Certificate' },
  { nickname: 'encryption-cert', id: '0003', label: 'CAC Email Encryption Certificate' },
] as const;

function readFixturePassword(): string {
  const file = join(SHARED_DIR, 'fixtures', 'nss-db-password.txt');
  return existsSync(file) ? (readFileSync(file, 'utf8').split(/\r?\n/, 1)[0] ?? '') : '';
}

function unavailableReason(): string | undefined {
  if (!existsSync(join(FIXTURE_DB, 'cert9.db'))) return `fixture NSS database missing at ${FIXTURE_DB}; set VIRTCARD_SHARED`;
  return privatePcscdUnavailableReason() ?? missingToolsReason();
}

// In CI every tool must be there, so a missing one fails; elsewhere it skips with its reason.
const unavailable = unavailableReason();
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

/** Counts occurrences of `pattern` in `text`. */
function count(text: string, pattern: RegExp): number {
  return [...text.matchAll(new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : pattern.flags + 'g'))].length;
}

/**
 * Returns the PIN tries left as VERIFY without data reports them: 63 Cx means
 * x tries, 69 83 means blocked (0). OpenSC's CAC driver does not show the
 * count, so the test sends the APDU itself.
 */
function triesLeft(pcscd: PrivatePcscd): number {
  const result = runTool(pcscd, 'opensc-tool', ['-s', '00 20 00 00 00']);
  assert.equal(result.status, 0, describeRun(result));
  const tries = /SW1=0x63, SW2=0xC([0-9A-F])/i.exec(result.stdout);
  if (tries) return Number.parseInt(tries[1]!, 16);
  assert.match(result.stdout, /SW1=0x69, SW2=0x83/, 'VERIFY without data returned neither 63 Cx nor 69 83');
  return 0;
}

interface Fixture {
  pcscd: PrivatePcscd;
  virtcard: VirtcardProcess;
  work: string;
}

/** Starts a private pcscd and virtcard on a copy of the fixture database. */
async function startFixture(extraArgs: readonly string[]): Promise<Fixture> {
  if (unavailable !== undefined) throw new Error(unavailable);

  const work = mkdtempSync(join(tmpdir(), 'virtcard-vpcd-nss-'));
  const database = join(work, 'nss-db');
  cpSync(FIXTURE_DB, database, { recursive: true });
  const pinFile = join(work, 'pin');
  writeFileSync(pinFile, `${PIN}\n`, { mode: 0o600 });

  const pcscd = await startPrivatePcscd();
  const certArgs = CERTIFICATES.flatMap(({ nickname }) => ['--cert', nickname]);
  const virtcard = startVirtcardVpcd(
    pcscd,
    ['--verbose', '--nss-db', `sql:${database}`, ...certArgs, '--pin-file', pinFile, ...extraArgs],
    join(work, 'virtcard.log'),
  );
  try {
    await waitForCard(pcscd, virtcard);
  } catch (error) {
    await virtcard.stop().catch(() => undefined);
    await pcscd.stop();
    throw error;
  }
  return { pcscd, virtcard, work };
}

async function stopFixture(fixture: Fixture | undefined): Promise<number | null | undefined> {
  if (fixture === undefined) return undefined;
  try {
    return await fixture.virtcard.stop();
  } finally {
    await fixture.pcscd.stop();
  }
}

describe('virtcard vpcd with NSS database', { skip }, () => {
  let fixture: Fixture;

  before(async () => {
    fixture = await startFixture([]);
  });

  after(async () => {
    // Stopping twice is harmless, so this also cleans up after a failed SIGTERM test.
    await stopFixture(fixture);
    if (fixture !== undefined) rmSync(fixture.work, { recursive: true, force: true });
  });

  test('opensc-tool -a prints CAC ATR', () => {
    const result = runTool(fixture.pcscd, 'opensc-tool', ['-a']);
    assert.equal(result.status, 0, describeRun(result));
    assert.match(result.stdout, new RegExp(`^${CAC_ATR}$`, 'm'));
  });

  test('pkcs11-tool -L shows CAC token', () => {
    const result = runTool(fixture.pcscd, 'pkcs11-tool', ['-L']);
    assert.equal(result.status, 0, describeRun(result));
    assert.match(result.stdout, /token manufacturer\s*: Common Access Card/);
    assert.match(result.stdout, /token label\s*: John Doe/);
    assert.match(result.stdout, /token model\s*: PKCS#15 emulated/);
  });

  test('pkcs11-tool -O lists certificates', () => {
    const result = runTool(fixture.pcscd, 'pkcs11-tool', ['-O']);
    assert.equal(result.status, 0, describeRun(result));
    assert.equal(count(result.stdout, /^Certificate Object; type = X\.509 cert$/m), 3, result.stdout);
    for (const { id, label } of CERTIFICATES) {
      assert.match(result.stdout, new RegExp(`Certificate Object; type = X\\.509 cert\\n\\s+label:\\s+${label}\\n(.*\\n){2}\\s+ID:\\s+${id}`), label);
    }
  });

  test('login lists three private keys', () => {
    const result = runTool(fixture.pcscd, 'pkcs11-tool', ['--login', '--pin', PIN, '-O', '--type', 'privkey']);
    assert.equal(result.status, 0, describeRun(result));
    assert.equal(count(result.stdout, /^Private Key Object; RSA/m), 3, result.stdout);
    for (const { id, label } of CERTIFICATES) {
      assert.match(result.stdout, new RegExp(`label:\\s+${label}\\n(.*\\n)*?\\s+ID:\\s+${id}`), label);
    }
  });

  test('pkcs15-tool -D succeeds', () => {
    const result = runTool(fixture.pcscd, 'pkcs15-tool', ['-D']);
    assert.equal(result.status, 0, describeRun(result));
    assert.match(result.stdout, /PKCS#15 Card \[John Doe\]/);
    assert.equal(count(result.stdout, /^Private RSA Key \[/m), 3, result.stdout);
    assert.equal(count(result.stdout, /^X\.509 Certificate \[/m), 3, result.stdout);
  });

  test('certificates match NSS database', () => {
    for (const { nickname, id } of CERTIFICATES) {
      const fromCard = join(fixture.work, `card-${id}.der`);
      const read = runTool(fixture.pcscd, 'pkcs11-tool', ['-r', '--type', 'cert', '--id', id, '-o', fromCard]);
      assert.equal(read.status, 0, describeRun(read));

      const fromDatabase = spawnSync('certutil', ['-L', '-d', `sql:${FIXTURE_DB}`, '-n', nickname, '-r']);
      assert.equal(fromDatabase.status, 0, String(fromDatabase.stderr));
      assert.ok(readFileSync(fromCard).equals(fromDatabase.stdout), `certificate ${id} (${nickname}) differs from certutil's`);
    }
  });

  test('signatures verify with openssl', () => {
    const data = join(fixture.work, 'data');
    writeFileSync(data, 'virtcard test data\n');
    for (const { id } of CERTIFICATES) {
      const certificate = join(fixture.work, `card-${id}.der`);
      const read = runTool(fixture.pcscd, 'pkcs11-tool', ['-r', '--type', 'cert', '--id', id, '-o', certificate]);
      assert.equal(read.status, 0, describeRun(read));

      const signature = join(fixture.work, `signature-${id}`);
      const sign = runTool(fixture.pcscd, 'pkcs11-tool', [
        '--login', '--pin', PIN, '--sign', '-m', 'RSA-PKCS', '--id', id, '-i', data, '-o', signature,
      ]);
      assert.equal(sign.status, 0, describeRun(sign));

      // RSA-PKCS signs the raw input, so recovering the signature must give the data back.
      const recovered = spawnSync('openssl', [
        'pkeyutl', '-verifyrecover', '-certin', '-inkey', certificate, '-keyform', 'DER', '-in', signature,
      ]);
      assert.equal(recovered.status, 0, `key ${id}: ${String(recovered.stderr)}`);
      assert.equal(recovered.stdout.toString(), 'virtcard test data\n', `key ${id}`);
    }
  });

  test('decryption returns plaintext', () => {
    const { id } = CERTIFICATES[2];
    const certificate = join(fixture.work, `card-${id}.der`);
    const read = runTool(fixture.pcscd, 'pkcs11-tool', ['-r', '--type', 'cert', '--id', id, '-o', certificate]);
    assert.equal(read.status, 0, describeRun(read));

    const plaintext = join(fixture.work, 'plaintext');
    const ciphertext = join(fixture.work, 'ciphertext');
    const decrypted = join(fixture.work, 'decrypted');
    writeFileSync(plaintext, 'secret message for the encryption key');
    const encrypt = spawnSync('openssl', [
      'pkeyutl', '-encrypt', '-certin', '-inkey', certificate, '-keyform', 'DER',
      '-pkeyopt', 'rsa_padding_mode:pkcs1', '-in', plaintext, '-out', ciphertext,
    ]);
    assert.equal(encrypt.status, 0, String(encrypt.stderr));

    const decrypt = runTool(fixture.pcscd, 'pkcs11-tool', [
      '--login', '--pin', PIN, '--decrypt', '-m', 'RSA-PKCS', '--id', id, '-i', ciphertext, '-o', decrypted,
    ]);
    assert.equal(decrypt.status, 0, describeRun(decrypt));
    assert.equal(readFileSync(decrypted, 'utf8'), 'secret message for the encryption key');
  });

  test('wrong PIN lowers tries left', () => {
    const { pcscd } = fixture;
    const login = (pin: string) => runTool(pcscd, 'pkcs11-tool', ['--login', '--pin', pin, '-O', '--type', 'privkey']);

    const first = login(WRONG_PIN);
    assert.notEqual(first.status, 0, describeRun(first));
    assert.match(first.stdout + first.stderr, /CKR_PIN_INCORRECT/);
    assert.equal(triesLeft(pcscd), 2, 'one wrong PIN after correct ones leaves 2 of 3 tries');

    const second = login(WRONG_PIN);
    assert.match(second.stdout + second.stderr, /CKR_PIN_INCORRECT/);
    assert.equal(triesLeft(pcscd), 1);

    // A correct PIN restores the full count, so the next wrong one leaves 2 again.
    const good = login(PIN);
    assert.equal(good.status, 0, describeRun(good));
    const third = login(WRONG_PIN);
    assert.match(third.stdout + third.stderr, /CKR_PIN_INCORRECT/);
    assert.equal(triesLeft(pcscd), 2);
    assert.equal(login(PIN).status, 0);
  });

  test('log contains no PIN', () => {
    const log = fixture.virtcard.stderr();
    assert.ok(log.includes('connected to vpcd'), `the log is not the expected one:\n${log}`);
    assert.ok(!log.includes(PIN), 'the PIN appears in the log');
    assert.ok(!log.includes(WRONG_PIN), 'the wrong PIN appears in the log');
    assert.ok(!log.toLowerCase().includes(Buffer.from(PIN).toString('hex')), 'the PIN appears hex-encoded in the log');
  });

  test('SIGTERM stops with exit 0', async () => {
    assert.equal(await fixture.virtcard.stop(), 0);
    const log = fixture.virtcard.stderr();
    assert.match(log, /stopped serving card to vpcd/);
    assert.ok(!log.includes(PIN), 'the PIN appears in the log written at shutdown');
  });
});

describe('virtcard vpcd PIN blocking', { skip }, () => {
  let fixture: Fixture | undefined;

  before(async () => {
    fixture = await startFixture(['--pin-retries', '2']);
  });

  after(async () => {
    await stopFixture(fixture);
    if (fixture !== undefined) rmSync(fixture.work, { recursive: true, force: true });
  });

  test('card blocks at zero tries', () => {
    const { pcscd } = fixture!;
    assert.equal(triesLeft(pcscd), 2);

    for (const expected of [1, 0]) {
      const login = runTool(pcscd, 'pkcs11-tool', ['--login', '--pin', WRONG_PIN, '-O', '--type', 'privkey']);
      assert.notEqual(login.status, 0, describeRun(login));
      assert.match(login.stdout + login.stderr, expected > 0 ? /CKR_PIN_INCORRECT/ : /CKR_PIN_(INCORRECT|LOCKED)/);
      assert.equal(triesLeft(pcscd), expected);
    }

    const correct = runTool(pcscd, 'pkcs11-tool', ['--login', '--pin', PIN, '-O', '--type', 'privkey']);
    assert.notEqual(correct.status, 0, `the correct PIN still works on a blocked card:\n${describeRun(correct)}`);
    assert.match(correct.stdout + correct.stderr, /CKR_PIN_LOCKED/);
  });
});
