/**
 * `virtcard emulated --card piv --vpcd` against a private pcscd: OpenSC
 * uses the PIV card, once from a state file provisioned beforehand and once
 * with the keys of the built-in test identity.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NEW_CARD_PIN, provisionKeys, type ProvisionedKey } from '../support/piv-provision.js';
import { privatePcscdUnavailableReason, startPrivatePcscd, type PrivatePcscd } from '../support/private-pcscd.js';
import {
  describeRun,
  missingToolsReason,
  runTool,
  startVirtcard,
  waitForCard,
  waitForNoCard,
  type VirtcardProcess,
} from '../support/virtcard-vpcd.js';

// In CI every tool must be there, so a missing one fails; elsewhere it skips with its reason.
const unavailable = privatePcscdUnavailableReason() ?? missingToolsReason();
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

const PASSPHRASE = 'passphrase of the emulated PIV test';

describe('virtcard emulated --card piv', { skip }, () => {
  let pcscd: PrivatePcscd;
  let virtcard: VirtcardProcess | undefined;
  let work: string;
  let statePath: string;
  let passphraseFile: string;
  let provisioned: ProvisionedKey[];

  async function startEmulated(logName: string, args: readonly string[]): Promise<VirtcardProcess> {
    const started = startVirtcard(['emulated', '--vpcd', `127.0.0.1:${pcscd.vpcdPort}`, '--card', 'piv', ...args], join(work, logName));
    virtcard = started;
    await waitForCard(pcscd, started);
    return started;
  }

  before(async () => {
    if (unavailable !== undefined) throw new Error(unavailable);
    work = mkdtempSync(join(tmpdir(), 'virtcard-piv-emulated-'));
    statePath = join(work, 'card.json');
    passphraseFile = join(work, 'passphrase');
    writeFileSync(passphraseFile, `${PASSPHRASE}\n`, { mode: 0o600 });
    provisioned = await provisionKeys(statePath, PASSPHRASE, [
      { slot: 0x9a, algorithm: 'RSA2048', subject: 'CN=emulated piv authentication' },
      { slot: 0x9c, algorithm: 'ECCP256', subject: 'CN=emulated piv signature' },
    ]);
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

  test('state file card reaches OpenSC', async () => {
    const started = await startEmulated('state.log', ['--piv-state', statePath, '--piv-passphrase-file', passphraseFile]);
    assert.match(started.stderr(), /PIV card ready/);

    const name = runTool(pcscd, 'opensc-tool', ['-n']);
    assert.equal(name.status, 0, describeRun(name));
    assert.match(name.stdout, /^Personal Identity Verification Card$/m);

    const objects = runTool(pcscd, 'pkcs11-tool', ['-O']);
    assert.equal(objects.status, 0, describeRun(objects));
    assert.match(objects.stdout, /Certificate for PIV Authentication[\s\S]*subject:\s+DN: CN=emulated piv authentication/);
    assert.match(objects.stdout, /Certificate for Digital Signature[\s\S]*subject:\s+DN: CN=emulated piv signature/);
    assert.match(objects.stdout, /Public Key Object; RSA 2048 bits/);
    assert.match(objects.stdout, /Public Key Object; EC\s+EC_POINT 256 bits/);
  });

  test('state file keys sign', () => {
    const message = join(work, 'message.txt');
    writeFileSync(message, 'signed by virtcard emulated\n');
    const cases: Array<[id: string, mechanism: string, key: ProvisionedKey]> = [
      ['01', 'SHA256-RSA-PKCS', provisioned[0]!],
      ['02', 'ECDSA-SHA256', provisioned[1]!],
    ];
    for (const [id, mechanism, key] of cases) {
      const signature = join(work, `message.${id}.sig`);
      const publicKey = join(work, `${id}.pub`);
      writeFileSync(publicKey, key.publicKey.export({ format: 'pem', type: 'spki' }));
      const args = ['--login', '--pin', NEW_CARD_PIN, '--sign', '--id', id, '-m', mechanism, '--signature-format', 'openssl', '-i', message, '-o', signature];
      const sign = runTool(pcscd, 'pkcs11-tool', args);
      assert.equal(sign.status, 0, describeRun(sign));

      const verify = spawnSync('openssl', ['dgst', '-sha256', '-verify', publicKey, '-signature', signature, message], { encoding: 'utf8' });
      assert.equal(verify.status, 0, `${mechanism} signature of key ${id} does not verify:\n${describeRun(verify)}`);
    }
  });

  test('key store card reaches OpenSC', async () => {
    assert.equal(await virtcard?.stop(), 0);
    await waitForNoCard(pcscd);
    await startEmulated('builtin.log', ['--data-dir', join(work, 'identity')]);

    const name = runTool(pcscd, 'opensc-tool', ['-n']);
    assert.match(name.stdout, /^Personal Identity Verification Card$/m, describeRun(name));

    const objects = runTool(pcscd, 'pkcs11-tool', ['-O']);
    assert.equal(objects.status, 0, describeRun(objects));
    assert.match(objects.stdout, /Certificate for PIV Authentication[\s\S]*subject:\s+DN: CN=John Doe/);
    assert.match(objects.stdout, /Certificate for Digital Signature[\s\S]*subject:\s+DN: CN=John Doe \(signing\)/);
    assert.match(objects.stdout, /Public Key Object; RSA 2048 bits/);
  });
});
