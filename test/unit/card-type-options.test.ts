import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { createCacCard } from '../../src/cac/index.js';
import {
  addCardTypeOptions,
  checkCardTypeOptions,
  checkPcscRelayCardOptions,
  checkVscclientCardOptions,
  openCard,
  PIV_PASSPHRASE_VARIABLE,
  type CardTypeOptions,
} from '../../src/cli/card-type-options.js';
import { checkCacCardFormat } from '../../src/cli/cac-card-options.js';
import { clientCommand } from '../../src/cli/client-command.js';
import { emulatedCommand } from '../../src/cli/emulated-command.js';
import { addIdentityOptions, type IdentityOptions } from '../../src/cli/identity-options.js';
import { vpcdCommand } from '../../src/cli/vpcd-command.js';
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

/** Parses `args` with the real `client` subcommand and returns its options, without running it. */
function parseClient(args: string[]): CardTypeOptions & { e?: string; c: string[] } {
  const command = clientCommand().exitOverride().configureOutput({ writeErr: () => undefined });
  command.action(() => undefined);
  command.parse([...args, '127.0.0.1', '2001'], { from: 'user' });
  return command.opts<CardTypeOptions & { e?: string; c: string[] }>();
}

test('client rejects -e or -c with --piv-state', () => {
  const cases: [string[], RegExp][] = [
    [['-e', 'use_hw=no soft=(,T,PIV,,id-cert)'], /--piv-state keeps its own keys, so the NSS identity of -e cannot fill its slots; drop -e/],
    [['-c', 'id-cert'], /the NSS identity of -c cannot fill its slots; drop -c to serve the state file card/],
    [['-e', 'db="sql:/d"', '-c', 'id-cert'], /the NSS identity of -e and -c cannot fill/],
  ];
  for (const [extra, message] of cases) {
    const options = parseClient(['--card', 'piv', '--piv-state', 'card.json', ...extra]);
    assert.throws(() => checkVscclientCardOptions(options), { name: 'IdentityOptionsError', message }, extra.join(' '));
    assert.throws(() => checkVscclientCardOptions(options), /or drop --piv-state and --piv-passphrase-file to serve the NSS certificates/);
  }
  assert.doesNotThrow(() => checkVscclientCardOptions(parseClient(['--card', 'piv', '--piv-state', 'card.json'])));
  assert.doesNotThrow(() => checkVscclientCardOptions(parseClient(['-e', 'use_hw=no soft=(,T,PIV,,id-cert)'])));
});

test('client -e with --piv-state fails at start', async () => {
  // The action must reject before it opens the state file, the NSS database or a connection.
  const command = clientCommand().exitOverride().configureOutput({ writeErr: () => undefined });
  const stateFile = join(tmpdir(), 'never-created.json');
  const args = ['--card', 'piv', '--piv-state', stateFile, '-e', 'use_hw=no soft=(,T,PIV,,a)', '127.0.0.1', '2001'];
  await assert.rejects(command.parseAsync(args, { from: 'user' }), { name: 'IdentityOptionsError', message: /--piv-state keeps its own keys/ });
  assert.equal(existsSync(stateFile), false, 'the state file must not be created');
});

test('client PC/SC relay with --piv-state fails at start', async () => {
  const command = clientCommand().exitOverride().configureOutput({ writeErr: () => undefined });
  const args = ['--card', 'piv', '--piv-state', 'card.json', '-e', 'use_hw=yes', '127.0.0.1', '2001'];
  await assert.rejects(command.parseAsync(args, { from: 'user' }), { name: 'IdentityOptionsError', message: /the PC\/SC relay .* passes the host's physical cards through/ });
});

test('PC/SC relay rejects PIV options', () => {
  const cases: [string[], RegExp][] = [
    [['--card', 'piv'], /so --card piv has no card to build; drop --card piv, or drop the relay options/],
    [['--card', 'piv', '--piv-state', 'card.json'], /so --card piv, --piv-state has no card to build/],
    [['--piv-passphrase-file', 'pass'], /so --piv-passphrase-file has no card to build/],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => checkPcscRelayCardOptions(parseClient(['--pcsc', ...args, '--'])), { name: 'IdentityOptionsError', message }, args.join(' '));
  }
  assert.doesNotThrow(() => checkPcscRelayCardOptions(parseClient(['-p'])));
});

test('vpcd and emulated reject -e and -c', () => {
  for (const command of [vpcdCommand(), emulatedCommand()]) {
    command.exitOverride().configureOutput({ writeErr: () => undefined });
    command.action(() => undefined);
    for (const option of ['-e', '-c']) {
      assert.throws(
        () => command.parse(['--card', 'piv', '--piv-state', 'card.json', option, 'id-cert'], { from: 'user' }),
        { code: 'commander.unknownOption' },
        `${command.name()} ${option}`,
      );
    }
  }
});

test('soft CAC card conflicts with --card piv', async () => {
  const store = new MemoryKeyStore({ slots: 1, modulusBits: 2048 });
  await assert.rejects(
    openCard(parse(['--card', 'piv']), () => Promise.resolve({ store, cardType: 'cac' }), () => assert.fail('no CAC card')),
    /--card piv asks for a PIV card, but soft=\(…,CAC,…\) in -e asks for a CAC card; write PIV in place of CAC/,
  );
  const opened = await openCard(parse([]), () => Promise.resolve({ store, cardType: 'cac' }), (cacStore) => createCacCard(cacStore));
  assert.equal(opened.kind, 'CAC');
});

test('cert compression is for CAC cards', () => {
  assert.throws(() => checkCacCardFormat('PIV', { certCompression: 'zlib' }), { name: 'IdentityOptionsError', message: /--cert-compression zlib .* PIV card; drop --cert-compression/ });
  assert.doesNotThrow(() => checkCacCardFormat('CAC', { certCompression: 'zlib' }));
  assert.doesNotThrow(() => checkCacCardFormat('PIV', { certCompression: 'none' }));
});

test('commands reject zlib with --card piv', async () => {
  // Each command must stop before it creates the state file.
  const stateFile = join(tmpdir(), 'never-created-zlib.json');
  const runs: Array<[Command, string[]]> = [
    [vpcdCommand(), ['--card', 'piv', '--piv-state', stateFile, '--cert-compression', 'zlib']],
    [emulatedCommand(), ['--card', 'piv', '--piv-state', stateFile, '--cert-compression', 'zlib', '--vpcd', '127.0.0.1:1']],
    [clientCommand(), ['--card', 'piv', '--piv-state', stateFile, '--cert-compression', 'zlib', '127.0.0.1', '2001']],
  ];
  for (const [command, args] of runs) {
    command.exitOverride().configureOutput({ writeErr: () => undefined });
    await assert.rejects(command.parseAsync(args, { from: 'user' }), { name: 'IdentityOptionsError', message: /--cert-compression zlib/ }, command.name());
    assert.equal(existsSync(stateFile), false, `${command.name()} must not create the state file`);
  }
});
