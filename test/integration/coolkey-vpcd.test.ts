/**
 * `virtcard vpcd` with the fixture NSS database, read through Debian's
 * CoolKey PKCS#11 module (coolkey 1.1) and NSS on the host: the token's
 * objects, login, RSA-PKCS signatures and `certutil -L`. CoolKey finds the
 * certificates only when the card stores them zlib-compressed
 * (`--cert-compression zlib`); docs/coolkey.md explains why.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
const CA_CERTIFICATE = join(SHARED_DIR, 'fixtures', 'fake-smartcard-ca.cer');
/** Where Debian's coolkey package installs the module. */
const COOLKEY_MODULE = '/usr/lib/pkcs11/libcoolkeypk11.so';
const PIN = readFixturePassword();
const WRONG_PIN = '00000000';

/** Card order of the fixture certificates, with the ID and label CoolKey gives each PKI applet. */
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
  if (!existsSync(COOLKEY_MODULE)) return `${COOLKEY_MODULE} is missing: apt-get install coolkey`;
  return privatePcscdUnavailableReason() ?? missingToolsReason();
}

// In CI every tool must be there, so a missing one fails. Elsewhere the tests skip with the reason.
const unavailable = unavailableReason();
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

function count(text: string, pattern: RegExp): number {
  return text.split('\n').filter((line) => pattern.test(line)).length;
}

interface Fixture {
  pcscd: PrivatePcscd;
  virtcard: VirtcardProcess;
  work: string;
}

/** Starts a private pcscd and `virtcard vpcd` on a copy of the fixture database. */
async function startFixture(extraArgs: readonly string[]): Promise<Fixture> {
  if (unavailable !== undefined) throw new Error(unavailable);

  const work = mkdtempSync(join(tmpdir(), 'virtcard-coolkey-'));
  const database = join(work, 'nss-db');
  cpSync(FIXTURE_DB, database, { recursive: true });
  const pinFile = join(work, 'pin');
  writeFileSync(pinFile, `${PIN}\n`, { mode: 0o600 });

  const pcscd = await startPrivatePcscd();
  const certArgs = CERTIFICATES.flatMap(({ nickname }) => ['--cert', nickname]);
  const virtcard = startVirtcardVpcd(
    pcscd,
    ['--nss-db', `sql:${database}`, ...certArgs, '--pin-file', pinFile, ...extraArgs],
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

async function stopFixture(fixture: Fixture | undefined): Promise<void> {
  if (fixture === undefined) return;
  try {
    await fixture.virtcard.stop();
  } finally {
    await fixture.pcscd.stop();
    rmSync(fixture.work, { recursive: true, force: true });
  }
}

function coolKey(fixture: Fixture, args: readonly string[]): ReturnType<typeof runTool> {
  return runTool(fixture.pcscd, 'pkcs11-tool', ['--module', COOLKEY_MODULE, ...args]);
}

describe('CoolKey with zlib certificates', { skip }, () => {
  let fixture: Fixture;

  before(async () => {
    fixture = await startFixture(['--cert-compression', 'zlib']);
  });

  after(async () => {
    await stopFixture(fixture);
  });

  test('token label is John Doe', () => {
    const result = coolKey(fixture, ['-L']);
    assert.equal(result.status, 0, describeRun(result));
    assert.match(result.stdout, /token label\s*: John Doe$/m);
  });

  test('CoolKey lists three certificates', () => {
    const result = coolKey(fixture, ['-O']);
    assert.equal(result.status, 0, describeRun(result));
    assert.equal(count(result.stdout, /^Certificate Object; type = X\.509 cert$/), 3, result.stdout);
    assert.equal(count(result.stdout, /^Private Key Object; RSA/), 3, result.stdout);
    for (const { id, label } of CERTIFICATES) {
      assert.match(result.stdout, new RegExp(`Certificate Object; type = X\\.509 cert\\n\\s+label:\\s+${label}\\n(.*\\n)*?\\s+ID:\\s+${id}`), label);
    }
  });

  test('certificates match NSS database', () => {
    for (const { nickname, id } of CERTIFICATES) {
      const fromCard = join(fixture.work, `card-${id}.der`);
      const read = coolKey(fixture, ['-r', '--type', 'cert', '--id', id, '-o', fromCard]);
      assert.equal(read.status, 0, describeRun(read));

      const fromDatabase = spawnSync('certutil', ['-L', '-d', `sql:${FIXTURE_DB}`, '-n', nickname, '-r']);
      assert.equal(fromDatabase.status, 0, String(fromDatabase.stderr));
      assert.ok(readFileSync(fromCard).equals(fromDatabase.stdout), `certificate ${id} (${nickname}) differs from certutil's`);
    }
  });

  test('CoolKey signatures verify', () => {
    const data = join(fixture.work, 'data');
    writeFileSync(data, 'virtcard test data\n');
    for (const { nickname, id } of CERTIFICATES) {
      const certificate = join(fixture.work, `${nickname}.der`);
      const exported = spawnSync('certutil', ['-L', '-d', `sql:${FIXTURE_DB}`, '-n', nickname, '-r']);
      assert.equal(exported.status, 0, String(exported.stderr));
      writeFileSync(certificate, exported.stdout);

      const signature = join(fixture.work, `signature-${id}`);
      const sign = coolKey(fixture, ['--login', '--pin', PIN, '--sign', '-m', 'RSA-PKCS', '--id', id, '-i', data, '-o', signature]);
      assert.equal(sign.status, 0, describeRun(sign));

      // RSA-PKCS signs the raw input, so recovering the signature must give the data back.
      const recovered = spawnSync('openssl', ['pkeyutl', '-verifyrecover', '-certin', '-inkey', certificate, '-keyform', 'DER', '-in', signature]);
      assert.equal(recovered.status, 0, `key ${id}: ${String(recovered.stderr)}`);
      assert.equal(recovered.stdout.toString(), 'virtcard test data\n', `key ${id}`);
    }
  });

  test('wrong PIN is CKR_PIN_INCORRECT', () => {
    const result = coolKey(fixture, ['--login', '--pin', WRONG_PIN, '-O']);
    assert.notEqual(result.status, 0, describeRun(result));
    assert.match(result.stderr, /CKR_PIN_INCORRECT/);

    // Reset the retry counter, so the other tests in this file keep working in any order.
    const login = coolKey(fixture, ['--login', '--pin', PIN, '-O']);
    assert.equal(login.status, 0, describeRun(login));
  });

  test('NSS lists John Doe certificates', () => {
    const database = join(fixture.work, 'guest-nssdb');
    mkdirSync(database);
    const pinFile = join(fixture.work, 'pin');
    const steps: string[][] = [
      ['certutil', '-N', '-d', `sql:${database}`, '--empty-password'],
      ['certutil', '-A', '-d', `sql:${database}`, '-n', 'fake-smartcard-ca', '-t', 'CT,C,C', '-i', CA_CERTIFICATE],
      ['modutil', '-force', '-add', 'CoolKey', '-libfile', COOLKEY_MODULE, '-dbdir', `sql:${database}`],
    ];
    for (const [tool, ...args] of steps) {
      const result = runTool(fixture.pcscd, tool ?? '', args);
      assert.equal(result.status, 0, describeRun(result));
    }

    const list = runTool(fixture.pcscd, 'certutil', ['-L', '-h', 'all', '-d', `sql:${database}`, '-f', pinFile]);
    assert.equal(list.status, 0, describeRun(list));
    assert.match(list.stdout, /^fake-smartcard-ca\s+CT,C,C$/m);
    for (const { label } of CERTIFICATES) {
      assert.match(list.stdout, new RegExp(`^John Doe:${label}\\s+u,u,u$`, 'm'), label);
    }
  });
});

describe('CoolKey with libcacard certificates', { skip }, () => {
  let fixture: Fixture;

  before(async () => {
    fixture = await startFixture([]);
  });

  after(async () => {
    await stopFixture(fixture);
  });

  test('CoolKey finds no objects', () => {
    // The default keeps libcacard 2.8's uncompressed certificates, which CoolKey 1.1 fails to decompress.
    const result = coolKey(fixture, ['-O']);
    assert.equal(result.status, 0, describeRun(result));
    assert.equal(count(result.stdout, /Object;/), 0, result.stdout);
  });
});
