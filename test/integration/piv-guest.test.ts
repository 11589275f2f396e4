/**
 * The PIV card through QEMU: `virtcard client --card piv` serves it to
 * QEMU 7.2's ccid-card-passthru, and the Debian test guest's pcscd, libccid
 * and OpenSC 0.23 PIV driver use it. One guest boot has the certificates of
 * the fixture NSS database in 9A, 9C and 9D, another a card from a state
 * file with an RSA-2048 key in 9A and a P-256 key in 9C. Signatures made in
 * the guest are checked on the host with openssl. In both boots two wrong
 * PINs count the PIN's tries down, and the right PIN then still works.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NEW_CARD_PIN, provisionKeys, type ProvisionedKey } from '../support/piv-provision.js';
import {
  ClientProcess,
  FIXTURE_DATABASE,
  FIXTURE_PIN,
  SIGNED_DATA,
  base64After,
  bootGuest,
  ensureGuestBuilt,
  freePort,
  guestUnavailableReason,
  parseSections,
  section,
  type GuestRun,
} from '../support/qemu-guest.js';

/** Upper bound for one guest run, in seconds. A run took about 10 s with QEMU 7.2 TCG on a 2-core host. */
const GUEST_TIMEOUT_S = 150;

function unavailableReason(): string | undefined {
  if (!existsSync(join(FIXTURE_DATABASE, 'cert9.db'))) return `fixture NSS database missing at ${FIXTURE_DATABASE}; set VIRTCARD_SHARED`;
  if (spawnSync('which', ['certutil']).status !== 0) return 'certutil is missing: apt-get install libnss3-tools';
  return guestUnavailableReason();
}

// In CI every tool must be there, so a missing one fails. Elsewhere the test skips with the reason.
const unavailable = unavailableReason();
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

interface PivRun {
  run: GuestRun;
  client: ClientProcess;
  sections: Map<string, string>;
}

/** Serves the card of `clientArguments` to a guest that runs piv-opensc.sh with the keys of `signKeys`. */
async function runPivGuest(work: string, clientArguments: string[], pin: string, signKeys: string, clientEnv: Record<string, string> = {}): Promise<PivRun> {
  const port = await freePort();
  const client = ClientProcess.start([...clientArguments, '127.0.0.1', String(port)], clientEnv);
  let run: GuestRun;
  try {
    run = await bootGuest(work, 'piv-opensc.sh', port, { guestEnv: { PIN: pin, PIV_SIGN: signKeys }, timeoutSeconds: GUEST_TIMEOUT_S });
  } finally {
    await client.stop();
  }
  return { run, client, sections: parseSections(run.stdout) };
}

function describeRun({ run, client }: PivRun): string {
  return `run.sh exit ${run.code}\nscript output:\n${run.stdout}\nrun.sh stderr:\n${run.stderr}\n${client.describe()}`;
}

/** Returns the certificate the guest read for PKCS#11 ID `id`. */
function guestCertificate(piv: PivRun, id: string): X509Certificate {
  return new X509Certificate(base64After(section(piv.sections, `cert${id}-read`, piv.run), /^Using slot/));
}

/** Verifies the guest's SHA-256 signature with key `id` against `certificate` with openssl dgst. */
function assertOpensslVerifies(work: string, piv: PivRun, id: string, certificate: X509Certificate): void {
  const signature = base64After(section(piv.sections, `sign${id}`, piv.run), /^signature \(base64\):/);
  assert.ok(signature.length > 0, `no signature for key ${id}\n${describeRun(piv)}`);
  const files = { data: join(work, 'data'), signature: join(work, `signature-${id}`), publicKey: join(work, `public-${id}.pem`) };
  writeFileSync(files.data, SIGNED_DATA);
  writeFileSync(files.signature, signature);
  writeFileSync(files.publicKey, certificate.publicKey.export({ format: 'pem', type: 'spki' }));
  const verify = spawnSync('openssl', ['dgst', '-sha256', '-verify', files.publicKey, '-signature', files.signature, files.data], { encoding: 'utf8' });
  assert.equal(verify.status, 0, `openssl does not verify the signature of key ${id}: ${verify.stdout}${verify.stderr}`);
  assert.match(verify.stdout, /^Verified OK$/m);
}

/** Returns the status word of the last APDU in an opensc-tool section, e.g. "63 C2". */
function lastStatusWord(text: string): string {
  const words = [...text.matchAll(/Received \(SW1=0x([0-9A-F]{2}), SW2=0x([0-9A-F]{2})\)/g)].map((match) => `${match[1]} ${match[2]}`);
  assert.ok(words.length > 0, `no status word in:\n${text}`);
  return words[words.length - 1]!;
}

/** Checks the wrong-PIN steps of piv-opensc.sh on a card with 3 PIN tries. */
function assertPinCountdown(piv: PivRun): void {
  const tries = (name: string): string => lastStatusWord(section(piv.sections, name, piv.run));
  assert.equal(tries('pin-tries-start'), '63 C3', 'three tries before the wrong PINs');

  for (const [attempt, left] of [['1', '63 C2'], ['2', '63 C1']] as const) {
    const login = section(piv.sections, `wrong-pin-${attempt}`, piv.run);
    assert.match(login, /C_Login failed: rv = CKR_PIN_INCORRECT/, `wrong PIN ${attempt}`);
    assert.doesNotMatch(login, /\[exit status 0\]\n$/, `wrong PIN ${attempt} must fail`);
    assert.equal(tries(`pin-tries-after-${attempt}`), left, `tries after wrong PIN ${attempt}`);
  }
  assert.match(section(piv.sections, 'token-final-try', piv.run), /token flags\s+:[^\n]*final user PIN try/);
  assert.equal(tries('pin-tries-end'), '63 C3', 'the right PIN restores the tries');
}

describe('PIV card from NSS in QEMU guest', { skip, timeout: (GUEST_TIMEOUT_S + 60) * 1000 }, () => {
  let work: string;
  let piv: PivRun;

  before(async () => {
    if (unavailable !== undefined) throw new Error(unavailable);
    ensureGuestBuilt();
    work = mkdtempSync(join(tmpdir(), 'virtcard-piv-guest-'));
    const database = join(work, 'nss-db');
    cpSync(FIXTURE_DATABASE, database, { recursive: true });
    const emulatorOptions = `db="sql:${database}" use_hw=no soft=(,Test,PIV,,id-cert,signing-cert,encryption-cert)`;
    piv = await runPivGuest(work, ['--card', 'piv', '-e', emulatorOptions], FIXTURE_PIN, '01:SHA256-RSA-PKCS 02:SHA256-RSA-PKCS', {
      VIRTCARD_PIN: FIXTURE_PIN,
    });
  });

  after(() => {
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  test('guest script succeeds', () => {
    assert.equal(piv.run.code, 0, describeRun(piv));
  });

  test('opensc-tool -n names PIV', () => {
    assert.match(section(piv.sections, 'opensc-tool-n', piv.run), /^Personal Identity Verification Card$/m);
  });

  test('pkcs11-tool -O lists three slots', () => {
    const listing = section(piv.sections, 'pkcs11-tool-O', piv.run);
    assert.match(listing, /\[exit status 0\]\n$/, listing);
    for (const label of ['Certificate for PIV Authentication', 'Certificate for Digital Signature', 'Certificate for Key Management']) {
      assert.match(listing, new RegExp(`Certificate Object; type = X\\.509 cert\\s+label:\\s+${label}`), label);
    }
    for (const label of ['PIV AUTH pubkey', 'SIGN pubkey', 'KEY MAN pubkey']) {
      assert.match(listing, new RegExp(`Public Key Object; RSA 2048 bits\\s+label:\\s+${label}`), label);
    }
  });

  test('login lists three private keys', () => {
    const listing = section(piv.sections, 'pkcs11-tool-login-O', piv.run);
    assert.match(listing, /\[exit status 0\]\n$/, listing);
    for (const [label, id] of [['PIV AUTH key', '01'], ['SIGN key', '02'], ['KEY MAN key', '03']]) {
      assert.match(listing, new RegExp(`Private Key Object; RSA\\s+label:\\s+${label}\\s+ID:\\s+${id}`), label);
    }
  });

  test('certificates match the NSS database', () => {
    for (const [id, nickname] of [['01', 'id-cert'], ['02', 'signing-cert']] as const) {
      const exported = spawnSync('certutil', ['-L', '-d', `sql:${FIXTURE_DATABASE}`, '-n', nickname, '-r']);
      assert.equal(exported.status, 0, String(exported.stderr));
      assert.deepEqual(guestCertificate(piv, id).raw, exported.stdout, `certificate ${id} is not ${nickname}`);
    }
  });

  test('RSA signatures verify with openssl', () => {
    for (const id of ['01', '02']) assertOpensslVerifies(work, piv, id, guestCertificate(piv, id));
  });

  test('wrong PINs count down', () => {
    assertPinCountdown(piv);
  });
});

describe('PIV card from state file in QEMU guest', { skip, timeout: (GUEST_TIMEOUT_S + 90) * 1000 }, () => {
  let work: string;
  let piv: PivRun;
  let authentication: ProvisionedKey;
  let signature: ProvisionedKey;

  before(async () => {
    if (unavailable !== undefined) throw new Error(unavailable);
    ensureGuestBuilt();
    work = mkdtempSync(join(tmpdir(), 'virtcard-piv-state-guest-'));
    const statePath = join(work, 'piv-card.json');
    const passphraseFile = join(work, 'passphrase');
    const passphrase = 'state file passphrase of the guest test';
    writeFileSync(passphraseFile, `${passphrase}\n`, { mode: 0o600 });
    [authentication, signature] = (await provisionKeys(statePath, passphrase, [
      { slot: 0x9a, algorithm: 'RSA2048', subject: 'CN=virtcard guest authentication' },
      { slot: 0x9c, algorithm: 'ECCP256', subject: 'CN=virtcard guest signature' },
    ])) as [ProvisionedKey, ProvisionedKey];
    const clientArguments = ['--card', 'piv', '--piv-state', statePath, '--piv-passphrase-file', passphraseFile];
    piv = await runPivGuest(work, clientArguments, NEW_CARD_PIN, '01:SHA256-RSA-PKCS 02:ECDSA-SHA256');
  });

  after(() => {
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  test('guest script succeeds', () => {
    assert.equal(piv.run.code, 0, describeRun(piv));
  });

  test('opensc-tool -n names PIV', () => {
    assert.match(section(piv.sections, 'opensc-tool-n', piv.run), /^Personal Identity Verification Card$/m);
  });

  test('pkcs11-tool -O lists 9A and 9C', () => {
    const listing = section(piv.sections, 'pkcs11-tool-O', piv.run);
    assert.match(listing, /Certificate Object; type = X\.509 cert\s+label:\s+Certificate for PIV Authentication/);
    assert.match(listing, /Certificate Object; type = X\.509 cert\s+label:\s+Certificate for Digital Signature/);
    assert.match(listing, /Public Key Object; RSA 2048 bits\s+label:\s+PIV AUTH pubkey\s+ID:\s+01/);
    assert.match(listing, /Public Key Object; EC\s+EC_POINT 256 bits/);
    assert.match(listing, /label:\s+SIGN pubkey\s+ID:\s+02/);
    assert.doesNotMatch(listing, /Certificate Object;[^\n]*\n\s+label:\s+Certificate for Key Management/, 'slot 9D is empty on this card');
  });

  test('login lists both private keys', () => {
    const listing = section(piv.sections, 'pkcs11-tool-login-O', piv.run);
    assert.match(listing, /\[exit status 0\]\n$/, listing);
    assert.match(listing, /Private Key Object; RSA\s+label:\s+PIV AUTH key\s+ID:\s+01/);
    assert.match(listing, /Private Key Object; EC\s+label:\s+SIGN key\s+ID:\s+02/);
    assert.match(listing, /Access:[^\n]*always authenticate/, 'the 9C key needs the PIN before each use');
  });

  test('guest reads the provisioned certificates', () => {
    assert.equal(guestCertificate(piv, '01').toString(), new X509Certificate(authentication.certificatePem).toString());
    assert.equal(guestCertificate(piv, '02').toString(), new X509Certificate(signature.certificatePem).toString());
  });

  test('RSA signature verifies with openssl', () => {
    assertOpensslVerifies(work, piv, '01', new X509Certificate(authentication.certificatePem));
  });

  test('ECDSA signature verifies with openssl', () => {
    assertOpensslVerifies(work, piv, '02', new X509Certificate(signature.certificatePem));
  });

  test('wrong PINs count down', () => {
    assertPinCountdown(piv);
  });
});
