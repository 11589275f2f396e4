import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Command } from 'commander';

import { addCacCardFormatOptions, cacCardFormat, type CacCardFormatOptions } from '../../src/cli/cac-card-options.js';

function parse(args: string[]): CacCardFormatOptions {
  const command = addCacCardFormatOptions(new Command('card').exitOverride().configureOutput({ writeErr: () => undefined }));
  command.parse(args, { from: 'user' });
  return command.opts<CacCardFormatOptions>();
}

test('--cert-compression defaults to none', () => {
  assert.deepEqual(cacCardFormat(parse([])), { certificateCompression: 'none' });
});

test('--cert-compression zlib', () => {
  assert.deepEqual(cacCardFormat(parse(['--cert-compression', 'zlib'])), { certificateCompression: 'zlib' });
});

test('--cert-compression rejects gzip', () => {
  assert.throws(() => parse(['--cert-compression', 'gzip']), /argument 'gzip' is invalid. Allowed choices are none, zlib/);
});
