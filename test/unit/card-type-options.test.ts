import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { addCardTypeOptions, checkCardTypeOptions, openCard, PIV_PASSPHRASE_VARIABLE, type CardTypeOptions } from '../../src/cli/card-type-options.js';
import { addIdentityOptions, type IdentityOptions } from '../../src/cli/identity-options.js';
import { PivCard } from '../../src/piv/piv-card.js';
import { MemoryKeyStore } from '../support/memory-key-store.js';
import { selectPiv, send } from '../support/piv-session.js';

function parse(args: string[]): CardTypeOptions & IdentityOptions {
  const command = addCardTypeOptions(addIdentityOptions(new Command('test').exitOverride().configureOutput({ writeErr: () => undefined })));
  command.parse(args, { from: 'user' });
  return command.opts<CardTypeOptions & IdentityOptions>();
}

test('card option defaults to CAC', () => {
  assert.equal(parse([]).card, 'cac');
  assert.equal(parse(['--card', 'piv']).card, 'piv');
  assert.throws(() => parse(['--card', 'openpgp']), /Allowed choices are cac, piv/);
});

test('PIV state options need --card piv', () => {
  assert.throws(() => checkCardTypeOptions(parse(['--piv-state', 'x.json'])), /are for PIV cards; add --card piv/);
  assert.throws(
    () => checkCardTypeOptions(parse(['--card', 'piv', '--piv-state', 'x.json', '--nss-db', 'sql:/d', '--cert', 'a'])),
    /--piv-state keeps its own keys, so --nss-db, --cert cannot fill its slots/,
  );
  assert.doesNotThrow(() => checkCardTypeOptions(parse(['--card', 'piv', '--piv-state', 'x.json'])));
});

test('PIV state needs a passphrase', async () => {
  const saved = process.env[PIV_PASSPHRASE_VARIABLE];
  delete process.env[PIV_PASSPHRASE_VARIABLE];
  try {
    const options = parse(['--card', 'piv', '--piv-state', join(tmpdir(), 'never-created.json')]);
    await assert.rejects(
      openCard(options, () => assert.fail('no key store for a state file'), () => assert.fail('no CAC card')),
      /--piv-state needs a passphrase: put it in a file and add --piv-passphrase-file FILE, or set VIRTCARD_PIV_PASSPHRASE/,
    );
  } finally {
    if (saved !== undefined) process.env[PIV_PASSPHRASE_VARIABLE] = saved;
  }
});

test('PIV state file card opens', async () => {
  const directory = mkdtempSync(join(tmpdir(), 'virtcard-card-options-'));
  try {
    const passphraseFile = join(directory, 'pass');
    writeFileSync(passphraseFile, 'passphrase\n');
    const options = parse(['--card', 'piv', '--piv-state', join(directory, 'card.json'), '--piv-passphrase-file', passphraseFile]);
    const opened = await openCard(options, () => assert.fail('no key store for a state file'), () => assert.fail('no CAC card'));
    assert.equal(opened.kind, 'PIV');
    assert.ok(opened.card instanceof PivCard);
    assert.equal(opened.summary['pinRetries'], 3);
    await opened.close();
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
});

test('PIV card on a key store', async () => {
  const store = new MemoryKeyStore({ slots: 1, modulusBits: 2048 });
  const options = parse(['--card', 'piv', '--pin-retries', '5']);
  const opened = await openCard(options, () => Promise.resolve({ store }), () => assert.fail('no CAC card'));
  assert.equal(opened.kind, 'PIV');
  assert.equal(opened.store, store);
  await selectPiv(opened.card);
  assert.equal((await send(opened.card, { ins: 0x20, p1: 0x00, p2: 0x80 })).sw, 0x63c5);
});

test('soft PIV type overrides --card', async () => {
  const store = new MemoryKeyStore({ slots: 1, modulusBits: 2048 });
  const opened = await openCard(parse([]), () => Promise.resolve({ store, cardType: 'piv' }), () => assert.fail('no CAC card'));
  assert.equal(opened.kind, 'PIV');
});
