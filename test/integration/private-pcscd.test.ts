import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { privatePcscdUnavailableReason, startPrivatePcscd } from '../support/private-pcscd.js';

const unavailable = privatePcscdUnavailableReason();
// In CI every tool must be there; elsewhere a missing tool skips with its reason.
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

test('private pcscd lists its vpcd readers', { skip }, async () => {
  const pcscd = await startPrivatePcscd();
  try {
    const listing = spawnSync('opensc-tool', ['-l'], { env: pcscd.env, encoding: 'utf8' });
    assert.equal(listing.status, 0, listing.stderr);
    assert.match(listing.stdout, /Virtual PCD 00 00/);
  } finally {
    await pcscd.stop();
  }
});
