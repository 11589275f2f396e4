/**
 * `virtcard vpcd --card piv` with a state file, provisioned with Debian's
 * yubico-piv-tool and used through a private pcscd with OpenSC, following
 * the steps of OpenSC's CI for PIV applets: RSA-2048 in 9A, P-256 in 9C
 * (signing) and 9D (ECDH), self-signed certificates, PIN and PUK counters,
 * and a restart that keeps everything.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assembleCertificate, buildTbsCertificate, type CertificateSignature } from '../support/piv-certificate.js';
import { privatePcscdUnavailableReason, startPrivatePcscd, type PrivatePcscd } from '../support/private-pcscd.js';
import {
  describeRun,
  missingToolsReason,
  runTool,
  startVirtcardVpcd,
  waitForCard,
  waitForNoCard,
  type VirtcardProcess,
} from '../support/virtcard-vpcd.js';

function yubicoPivToolMissing(): string | undefined {
  return spawnSync('which', ['yubico-piv-tool']).status === 0 ? undefined : 'yubico-piv-tool is missing: apt-get install yubico-piv-tool';
}

// In CI every tool must be there, so a missing one fails; elsewhere it skips with its reason.
const unavailable = privatePcscdUnavailableReason() ?? missingToolsReason() ?? yubicoPivToolMissing();
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

/** vpcd's reader name in pcscd; yubico-piv-tool matches it as a substring. */
const READER = 'Virtual PCD 00 00';
const PASSPHRASE = 'correct horse battery staple';
const PIN = '123456';
const PUK = '12345678';
const NEW_PIN = '654321';

describe('PIV card provisioned with yubico-piv-tool', { skip }, () => {
  let pcscd: PrivatePcscd;
  let virtcard: VirtcardProcess | undefined;
  let work: string;
  let statePath: string;
  let passphraseFile: string;

  function startPiv(logName: string, passphrase = passphraseFile): VirtcardProcess {
    const started = startVirtcardVpcd(
      pcscd,
      ['--card', 'piv', '--piv-state', statePath, '--piv-passphrase-file', passphrase],
      join(work, logName),
    );
    virtcard = started;
    return started;
  }

  function yubico(args: readonly string[]): SpawnSyncReturns<string> {
    return runTool(pcscd, 'yubico-piv-tool', ['-r', READER, ...args]);
  }

  function path(name: string): string {
    return join(work, name);
  }

  function assertSuccess(result: SpawnSyncReturns<string>): void {
    assert.equal(result.status, 0, describeRun(result));
  }

  /** Generates a key in `slot` and returns the public key file. */
  function generate(slot: string, algorithm: string): string {
    const publicKey = path(`${slot}.pub`);
    assertSuccess(yubico(['-a', 'generate', '-s', slot, '-A', algorithm, '-o', publicKey]));
    return publicKey;
  }

  /**
   * Self-signs the key in `slot`. yubico-piv-tool 2.2.0 built with OpenSSL 3
   * (Debian 12) fails in its selfsign-certificate action before it sends
   * anything to the card, because it installs its card-signing RSA_METHOD or
   * EC_KEY_METHOD on the legacy copy that EVP_PKEY_get0_RSA() returns, which
   * OpenSSL 3's X509_sign() does not use (fixed in 2.3.0). When that action
   * fails, the test builds the certificate itself and lets the card sign it
   * through the --sign flag, which does not go through that code.
   */
  function selfSign(slot: string, algorithm: string, subject: string, kind: CertificateSignature): string {
    const certificate = path(`${slot}.crt`);
    const publicKey = path(`${slot}.pub`);
    const selfsign = yubico(['-a', 'verify-pin', '-P', PIN, '-a', 'selfsign-certificate', '-s', slot, '-S', `/${subject}/`, '-i', publicKey, '-o', certificate]);
    if (selfsign.status === 0) return certificate;

    const tbs = path(`${slot}.tbs`);
    const signature = path(`${slot}.sig`);
    writeFileSync(tbs, buildTbsCertificate(readFileSync(publicKey, 'utf8'), subject, kind));
    assertSuccess(yubico(['-a', 'verify-pin', '-P', PIN, '--sign', '-s', slot, '-A', algorithm, '-H', 'SHA256', '-i', tbs, '-o', signature]));
    writeFileSync(certificate, assembleCertificate(readFileSync(tbs), readFileSync(signature), kind));
    return certificate;
  }

  function openssl(args: readonly string[]): SpawnSyncReturns<string> {
    return spawnSync('openssl', args, { encoding: 'utf8' });
  }

  before(async () => {
    if (unavailable !== undefined) throw new Error(unavailable);
    work = mkdtempSync(join(tmpdir(), 'virtcard-piv-'));
    statePath = path('card.json');
    passphraseFile = path('passphrase');
    writeFileSync(passphraseFile, `${PASSPHRASE}\n`, { mode: 0o600 });
    pcscd = await startPrivatePcscd();
    const started = startPiv('first.log');
    await waitForCard(pcscd, started);
  });

  after(async () => {
    try {
      await virtcard?.stop();
    } finally {
      await pcscd?.stop();
      if (work !== undefined) rmSync(work, { recursive: true, force: true });
    }
  });

  test('new card starts with default objects', () => {
    const status = yubico(['-a', 'status']);
    assertSuccess(status);
    assert.match(status.stdout, /CHUID:\s+3019/);
    assert.match(status.stdout, /CCC:\s+f015/);
    assert.match(status.stdout, /PIN tries left:\s+3/);
  });

  test('yubico-piv-tool provisions 9A, 9C and 9D', () => {
    generate('9a', 'RSA2048');
    generate('9c', 'ECCP256');
    generate('9d', 'ECCP256');
    const subjects = { '9a': 'CN=piv-auth', '9c': 'CN=piv-sign', '9d': 'CN=piv-key-management' };
    const kinds: Record<string, [string, CertificateSignature]> = {
      '9a': ['RSA2048', 'sha256WithRSAEncryption'],
      '9c': ['ECCP256', 'ecdsaWithSHA256'],
      '9d': ['ECCP256', 'ecdsaWithSHA256'],
    };
    for (const [slot, subject] of Object.entries(subjects)) {
      const [algorithm, kind] = kinds[slot]!;
      const certificate = selfSign(slot, algorithm, subject, kind);
      const check = openssl(['verify', '-CAfile', certificate, certificate]);
      assert.equal(check.status, 0, `the card's self-signature of ${slot} does not verify:\n${describeRun(check)}`);
      assertSuccess(yubico(['-a', 'import-certificate', '-s', slot, '-i', certificate]));
    }

    const status = yubico(['-a', 'status']);
    assertSuccess(status);
    assert.match(status.stdout, /Slot 9a:\s+Algorithm:\s+RSA2048\s+Subject DN:\s+CN=piv-auth/);
    assert.match(status.stdout, /Slot 9c:\s+Algorithm:\s+ECCP256\s+Subject DN:\s+CN=piv-sign/);
    assert.match(status.stdout, /Slot 9d:\s+Algorithm:\s+ECCP256/);
  });

  test('yubico-piv-tool verifies the PIN', () => {
    const result = yubico(['-a', 'verify-pin', '-P', PIN]);
    assertSuccess(result);
    assert.match(result.stdout + result.stderr, /Successfully verified PIN/);
  });

  test('opensc-tool -n names PIV', () => {
    const result = runTool(pcscd, 'opensc-tool', ['-n']);
    assertSuccess(result);
    assert.match(result.stdout, /Personal Identity Verification Card/);
  });

  test('pkcs11-tool -O lists the objects', () => {
    const result = runTool(pcscd, 'pkcs11-tool', ['-O']);
    assertSuccess(result);
    assert.match(result.stdout, /Certificate for PIV Authentication[\s\S]*subject:\s+DN: CN=piv-auth/);
    assert.match(result.stdout, /Certificate for Digital Signature[\s\S]*subject:\s+DN: CN=piv-sign/);
    assert.match(result.stdout, /Certificate for Key Management/);
    assert.match(result.stdout, /Public Key Object; RSA 2048 bits/);
    assert.match(result.stdout, /Public Key Object; EC\s+EC_POINT 256 bits/);
  });

  test('RSA and ECDSA signatures verify', () => {
    const message = path('message.txt');
    writeFileSync(message, 'signed by a virtual PIV card\n');
    const cases: Array<[id: string, mechanism: string, slot: string, extra: string[]]> = [
      ['01', 'SHA256-RSA-PKCS', '9a', []],
      ['02', 'ECDSA-SHA256', '9c', ['--signature-format', 'openssl']],
    ];
    for (const [id, mechanism, slot, extra] of cases) {
      const signature = path(`message.${slot}.sig`);
      const sign = runTool(pcscd, 'pkcs11-tool', ['--login', '--pin', PIN, '--sign', '--id', id, '-m', mechanism, ...extra, '-i', message, '-o', signature]);
      assertSuccess(sign);
      const publicKey = path(`${slot}.pub`);
      const verify = openssl(['dgst', '-sha256', '-verify', publicKey, '-signature', signature, message]);
      assert.equal(verify.status, 0, `${mechanism} signature of ${slot} does not verify:\n${describeRun(verify)}`);
    }
  });

  test('pkcs11-tool --derive agrees with openssl', () => {
    const peerKey = path('peer.key');
    const peerPublic = path('peer.der');
    assertSuccess(openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', peerKey]));
    assertSuccess(openssl(['ec', '-in', peerKey, '-pubout', '-outform', 'DER', '-out', peerPublic]));

    const cardSecret = path('secret.card');
    const derive = runTool(pcscd, 'pkcs11-tool', ['--login', '--pin', PIN, '--derive', '-m', 'ECDH1-DERIVE', '--id', '03', '-i', peerPublic, '-o', cardSecret]);
    assertSuccess(derive);
    const hostSecret = path('secret.host');
    assertSuccess(openssl(['pkeyutl', '-derive', '-inkey', peerKey, '-peerkey', path('9d.pub'), '-out', hostSecret]));

    const secret = readFileSync(cardSecret);
    assert.equal(secret.length, 32);
    assert.deepEqual(secret, readFileSync(hostSecret));
  });

  test('import-key fills retired slot 82', () => {
    const key = path('82.key');
    const certificate = path('82.crt');
    assertSuccess(openssl(['ecparam', '-name', 'secp384r1', '-genkey', '-noout', '-out', key]));
    assertSuccess(openssl(['req', '-new', '-x509', '-key', key, '-subj', '/CN=piv-retired', '-days', '30', '-out', certificate]));
    assertSuccess(yubico(['-a', 'import-key', '-s', '82', '-A', 'ECCP384', '-i', key]));
    assertSuccess(yubico(['-a', 'import-certificate', '-s', '82', '-i', certificate]));

    const objects = runTool(pcscd, 'pkcs11-tool', ['-O']);
    assertSuccess(objects);
    assert.match(objects.stdout, /Retired Certificate for Key Management 1[\s\S]*subject:\s+DN: CN=piv-retired/);

    const peerKey = path('peer384.key');
    const peerPublic = path('peer384.der');
    assertSuccess(openssl(['ecparam', '-name', 'secp384r1', '-genkey', '-noout', '-out', peerKey]));
    assertSuccess(openssl(['ec', '-in', peerKey, '-pubout', '-outform', 'DER', '-out', peerPublic]));
    const cardSecret = path('secret384.card');
    assertSuccess(runTool(pcscd, 'pkcs11-tool', ['--login', '--pin', PIN, '--derive', '-m', 'ECDH1-DERIVE', '--id', '05', '-i', peerPublic, '-o', cardSecret]));
    const hostSecret = path('secret384.host');
    const peerPem = path('peer384.pub');
    assertSuccess(openssl(['ec', '-in', peerKey, '-pubout', '-out', peerPem]));
    assertSuccess(openssl(['pkeyutl', '-derive', '-inkey', key, '-peerkey', peerPem, '-out', hostSecret]));
    assert.equal(readFileSync(cardSecret).length, 48);
    assert.deepEqual(readFileSync(cardSecret), readFileSync(hostSecret));
  });

  test('wrong PINs count down and block', () => {
    const first = yubico(['-a', 'verify-pin', '-P', '000000']);
    assert.notEqual(first.status, 0);
    assert.match(first.stderr, /2 tries left/);
    const second = yubico(['-a', 'verify-pin', '-P', '000000']);
    assert.match(second.stderr, /1 tries left/);
    const third = yubico(['-a', 'verify-pin', '-P', '000000']);
    assert.match(third.stderr, /blocked/);

    const right = yubico(['-a', 'verify-pin', '-P', PIN]);
    assert.notEqual(right.status, 0, 'a blocked PIN must stay blocked for the right value');
    assert.match(right.stderr, /blocked/);
    const login = runTool(pcscd, 'pkcs11-tool', ['--login', '--pin', PIN, '-O']);
    assert.notEqual(login.status, 0, describeRun(login));
  });

  test('wrong PUK counts down', () => {
    const result = yubico(['-a', 'unblock-pin', '-P', '87654321', '-N', NEW_PIN]);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /2 tries left/);
  });

  test('PUK unblocks the PIN', () => {
    assertSuccess(yubico(['-a', 'unblock-pin', '-P', PUK, '-N', NEW_PIN]));
    const verify = yubico(['-a', 'verify-pin', '-P', NEW_PIN]);
    assertSuccess(verify);
  });

  test('restart keeps keys and PIN', async () => {
    assert.equal(await virtcard?.stop(), 0);
    await waitForNoCard(pcscd);
    const state = readFileSync(statePath, 'utf8');
    assert.doesNotMatch(state, /BEGIN|piv-auth|123456|654321/, 'the state file must be encrypted');

    const restarted = startPiv('second.log');
    await waitForCard(pcscd, restarted);
    const status = yubico(['-a', 'status']);
    assertSuccess(status);
    assert.match(status.stdout, /Subject DN:\s+CN=piv-auth/);

    const message = path('message.txt');
    const signature = path('restart.sig');
    assertSuccess(runTool(pcscd, 'pkcs11-tool', ['--login', '--pin', NEW_PIN, '--sign', '--id', '01', '-m', 'SHA256-RSA-PKCS', '-i', message, '-o', signature]));
    const verify = openssl(['dgst', '-sha256', '-verify', path('9a.pub'), '-signature', signature, message]);
    assert.equal(verify.status, 0, describeRun(verify));
  });

  test('wrong passphrase stops virtcard', async () => {
    assert.equal(await virtcard?.stop(), 0);
    await waitForNoCard(pcscd);
    const wrong = path('wrong-passphrase');
    writeFileSync(wrong, 'not the passphrase\n', { mode: 0o600 });
    const started = startPiv('wrong.log', wrong);
    const code =
      started.child.exitCode ?? (await new Promise<number | null>((resolve) => started.child.once('exit', resolve)));
    assert.notEqual(code, 0);
    assert.match(started.stderr(), /cannot decrypt the PIV state file .*passphrase is wrong/);
    assert.doesNotMatch(started.stderr(), /not the passphrase/);
    virtcard = undefined;
  });
});
