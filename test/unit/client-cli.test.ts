import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientConsole, type ConsoleTarget } from '../../src/cli/client-console.js';
import { identityOptionsInUse, softCardFromEmulatorOptions } from '../../src/cli/client-identity.js';
import type { IdentityOptions } from '../../src/cli/identity-options.js';
import { parseEmulatorOptions } from '../../src/cli/libcacard-options.js';

test('soft card from the QEMU example', () => {
  const soft = softCardFromEmulatorOptions(
    parseEmulatorOptions('db="sql:/d" use_hw=no soft=(,Test,CAC,,id-cert,signing-cert,encryption-cert)'),
  );
  assert.deepEqual(soft, {
    database: 'sql:/d',
    nicknames: ['id-cert', 'signing-cert', 'encryption-cert'],
    readerName: 'Test',
    cardType: 'CAC',
  });
});

test('soft PIV card from the option string', () => {
  const soft = softCardFromEmulatorOptions(parseEmulatorOptions('db="sql:/d" use_hw=no soft=(,Test,PIV,,id-cert)'));
  assert.equal(soft.cardType, 'PIV');
  assert.deepEqual(soft.nicknames, ['id-cert']);
});

test('soft card from vscclient -c defaults', () => {
  // vscclient -c id-cert with no -e: use_hw keeps its default, which is accepted with a soft card.
  const soft = softCardFromEmulatorOptions(parseEmulatorOptions('db="/etc/pki/nssdb",soft=(,Virtual Reader,CAC,,id-cert,)'));
  assert.deepEqual(soft, { database: '/etc/pki/nssdb', nicknames: ['id-cert'], readerName: 'Virtual Reader', cardType: 'CAC' });
  assert.equal(softCardFromEmulatorOptions(parseEmulatorOptions('soft=(,R,CAC,,a)')).database, '/etc/pki/nssdb');
});

test('soft card rejects unsupported setups', () => {
  const cases: [string, RegExp][] = [
    ['use_hw=yes soft=(,R,CAC,,a)', /use_hw=yes .* not supported yet; use use_hw=no/],
    ['use_hw=removable soft=(,R,CAC,,a)', /use_hw=removable/],
    ['nssemul', /use_hw=yes/],
    ['use_hw=no', /no soft=\(…\) card/],
    ['db="/d"', /no soft=\(…\) card/],
    ['use_hw=no soft=(,R1,CAC,,a) soft=(,R2,CAC,,b)', /2 soft=\(…\) cards/],
    ['use_hw=no soft=(My Token,R,CAC,,a)', /NSS token "My Token"/],
    ['use_hw=no soft=(,R,CAC,,)', /lists no certificate nicknames/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => softCardFromEmulatorOptions(parseEmulatorOptions(text)), { name: 'IdentityOptionsError', message }, text);
  }
});

test('identity options in use', () => {
  const none: IdentityOptions = { cert: [], certFile: [], keyFile: [], pkcs12: [], pinRetries: 3 };
  assert.deepEqual(identityOptionsInUse(none), []);
  assert.deepEqual(identityOptionsInUse({ ...none, nssDb: '/d', cert: ['a'] }), ['--nss-db', '--cert']);
  assert.deepEqual(identityOptionsInUse({ ...none, pinFile: '/p' }), [], 'the PIN file is shared by both kinds');
});

class FakeTarget implements ConsoleTarget {
  readonly readerName = 'Test';
  active = true;
  present = true;
  level = 0;
  exited = false;
  readerActive(): boolean {
    return this.active;
  }
  cardPresent(): boolean {
    return this.present;
  }
  insertCard(): boolean {
    if (this.present) return false;
    this.present = true;
    return true;
  }
  removeCard(): boolean {
    if (!this.present) return false;
    this.present = false;
    return true;
  }
  debugLevel(): number {
    return this.level;
  }
  setDebugLevel(level: number): void {
    this.level = level;
  }
  exit(): Promise<void> {
    this.exited = true;
    return Promise.resolve();
  }
}

async function runLines(target: FakeTarget, lines: string[]): Promise<string> {
  let output = '';
  const console = new ClientConsole(target, (text) => (output += text));
  for (const line of lines) await console.run(line);
  return output;
}

test('console remove and insert', async () => {
  const target = new FakeTarget();
  const output = await runLines(target, ['remove', 'remove', 'insert 0', 'insert']);
  assert.equal(
    output,
    'remove Test: card removed\nremove Test: no card to remove\ninsert Test: card inserted\ninsert Test: a card is already present\n',
  );
  assert.equal(target.present, true);
});

test('console rejects other reader ids', async () => {
  const target = new FakeTarget();
  const output = await runLines(target, ['remove 1', 'insert x', 'select 3', 'select', 'select 0']);
  assert.match(output, /no reader by id 1 found/);
  assert.match(output, /invalid reader id "x"/);
  assert.match(output, /no reader by id 3 found/);
  assert.match(output, /select needs a reader id/);
  assert.match(output, /Selecting reader 0, Test\n$/);
  assert.equal(target.present, true, 'nothing was removed');
});

test('console list', async () => {
  const target = new FakeTarget();
  assert.equal(await runLines(target, ['list']), 'Active Readers:\n  0 CARD_PRESENT Test\nInactive Readers:\n');
  target.active = false;
  target.present = false;
  assert.equal(await runLines(target, ['list']), 'Active Readers:\nInactive Readers:\nINA              Test\n');
});

test('console debug and exit', async () => {
  const target = new FakeTarget();
  assert.equal(await runLines(target, ['debug 11', 'debug']), 'debug level = 11\ndebug level = 11\n');
  assert.match(await runLines(target, ['debug x']), /invalid debug level "x"/);
  assert.equal(target.level, 11);

  let output = '';
  const console = new ClientConsole(target, (text) => (output += text));
  assert.equal(await console.run(''), true);
  assert.equal(await console.run('frobnicate'), true);
  assert.match(output, /unknown command "frobnicate"/);
  assert.match(output, /insert \[READER_ID\]/);
  assert.equal(await console.run('quit'), false);
  assert.equal(target.exited, true);
});
