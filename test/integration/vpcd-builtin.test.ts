/**
 * `virtcard vpcd` with no identity options: the built-in test identity,
 * created in a temporary data directory, seen through a private pcscd and
 * OpenSC.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

// In CI every tool must be there, so a missing one fails; elsewhere it skips with its reason.
const unavailable = privatePcscdUnavailableReason() ?? missingToolsReason();
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

const LABELS = ['CAC ID Certificate', 'CAC Email Signature Certificate', 'CAC Email Encryption Certificate'];

describe('virtcard vpcd with built-in identity', { skip }, () => {
  let pcscd: PrivatePcscd;
  let virtcard: VirtcardProcess | undefined;
  let work: string;
  let dataDir: string;

  /** Starts virtcard with no identity options and the data directory in VIRTCARD_DATA_DIR. */
  async function startVirtcard(logName: string): Promise<VirtcardProcess> {
    const started = startVirtcardVpcd(pcscd, [], join(work, logName), { VIRTCARD_DATA_DIR: dataDir, VIRTCARD_PIN: '' });
    virtcard = started;
    await waitForCard(pcscd, started);
    return started;
  }

  before(async () => {
    if (unavailable !== undefined) throw new Error(unavailable);
    work = mkdtempSync(join(tmpdir(), 'virtcard-vpcd-builtin-'));
    dataDir = join(work, 'data');
    pcscd = await startPrivatePcscd();
  });

  after(async () => {
    try {
      await virtcard?.stop();
    } finally {
      await pcscd?.stop();
      if (work !== undefined) rmSync(work, { recursive: true, force: true });
    }
  });

  test('first start creates identity', async () => {
    const first = await startVirtcard('first.log');
    const log = first.stderr();
    assert.match(log, /created the built-in test identity/);
    assert.match(log, /card PIN: \d+/, 'the generated PIN is shown once');
    assert.match(log, /CA certificate: \S+/);
  });

  test('pkcs11-tool -O lists built-in certificates', () => {
    const result = runTool(pcscd, 'pkcs11-tool', ['-O']);
    assert.equal(result.status, 0, describeRun(result));
    for (const [index, label] of LABELS.entries()) {
      const id = `000${index + 1}`;
      assert.match(result.stdout, new RegExp(`Certificate Object; type = X\\.509 cert\\n\\s+label:\\s+${label}\\n(.*\\n){2}\\s+ID:\\s+${id}`), label);
    }
    assert.match(result.stdout, /subject:\s+DN: CN=John Doe\n/);
  });

  test('signature with printed PIN verifies', () => {
    const log = virtcard!.stderr();
    const pin = /card PIN: (\d+)/.exec(log)?.[1];
    assert.ok(pin, 'the PIN line is missing');
    const caCertificate = /CA certificate: (\S+)/.exec(log)?.[1];
    assert.ok(caCertificate, 'the CA certificate line is missing');
    assert.ok(existsSync(caCertificate), `CA certificate file missing: ${caCertificate}`);

    const certificate = join(work, 'card-0001.der');
    const read = runTool(pcscd, 'pkcs11-tool', ['-r', '--type', 'cert', '--id', '0001', '-o', certificate]);
    assert.equal(read.status, 0, describeRun(read));
    const chain = spawnSync('openssl', ['verify', '-CAfile', caCertificate, certificate], { encoding: 'utf8' });
    assert.equal(chain.status, 0, `the card certificate does not chain to the printed CA:\n${chain.stdout}${chain.stderr}`);

    const data = join(work, 'data.txt');
    const signature = join(work, 'signature');
    writeFileSync(data, 'built-in identity data\n');
    const sign = runTool(pcscd, 'pkcs11-tool', ['--login', '--pin', pin, '--sign', '-m', 'RSA-PKCS', '--id', '0001', '-i', data, '-o', signature]);
    assert.equal(sign.status, 0, describeRun(sign));
    const recovered = spawnSync('openssl', ['pkeyutl', '-verifyrecover', '-certin', '-inkey', certificate, '-keyform', 'DER', '-in', signature]);
    assert.equal(recovered.status, 0, String(recovered.stderr));
    assert.equal(recovered.stdout.toString(), 'built-in identity data\n');
  });

  test('restart reuses identity silently', async () => {
    const firstLog = virtcard!.stderr();
    const pin = /card PIN: (\d+)/.exec(firstLog)?.[1];
    assert.ok(pin);
    assert.equal(await virtcard!.stop(), 0);
    await waitForNoCard(pcscd);

    const second = await startVirtcard('second.log');
    const log = second.stderr();
    assert.doesNotMatch(log, /created the built-in test identity/);
    assert.ok(!log.includes(pin), 'the PIN is shown again on a later start');

    const login = runTool(pcscd, 'pkcs11-tool', ['--login', '--pin', pin, '-O', '--type', 'privkey']);
    assert.equal(login.status, 0, describeRun(login));
    assert.ok(!readFileSync(second.stderrPath, 'utf8').includes(pin), 'the PIN appears in the log after a login');
  });
});
