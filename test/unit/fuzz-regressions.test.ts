/**
 * Replays the fuzzing inputs through the same checks the Jazzer.js targets
 * run: the committed seed corpora (fuzz/corpus/<target>/) and every input
 * that once made a target fail (fuzz/regressions/<target>/). A check throws
 * or rejects only on a bug; the typed errors the modules raise by contract
 * are accepted.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as apdu from '../../fuzz/targets/apdu.js';
import * as berTlv from '../../fuzz/targets/ber-tlv.js';
import * as cacCard from '../../fuzz/targets/cac-card.js';
import * as ccidDevice from '../../fuzz/targets/ccid-device.js';
import * as libcacardOptions from '../../fuzz/targets/libcacard-options.js';
import * as simpleTlv from '../../fuzz/targets/simple-tlv.js';
import * as vscardDecoder from '../../fuzz/targets/vscard-decoder.js';
import { decodeSimpleTlv } from '../../src/iso7816/simple-tlv.js';

const repository = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

interface FuzzTarget {
  check(data: Buffer): void | Promise<void>;
  isExpectedError?(error: unknown): boolean;
}

const targets: Record<string, FuzzTarget> = {
  apdu,
  'simple-tlv': simpleTlv,
  'ber-tlv': berTlv,
  'vscard-decoder': vscardDecoder,
  'libcacard-options': libcacardOptions,
  'cac-card': cacCard,
  'ccid-device': ccidDevice,
};

function inputsOf(folder: string): { name: string; data: Buffer }[] {
  if (!existsSync(folder)) return [];
  return readdirSync(folder)
    .sort()
    .map((name) => ({ name, data: readFileSync(path.join(folder, name)) }));
}

async function runCheck(target: FuzzTarget, data: Buffer): Promise<void> {
  try {
    await target.check(data);
  } catch (error) {
    if (target.isExpectedError?.(error)) return;
    throw error;
  }
}

describe('fuzz inputs', () => {
  for (const [name, target] of Object.entries(targets)) {
    it(`${name} seed corpus passes`, async () => {
      const seeds = inputsOf(path.join(repository, 'fuzz/corpus', name));
      assert.ok(seeds.length > 0, `fuzz/corpus/${name} has no seeds: run fuzz/make-corpus.ts`);
      for (const seed of seeds) await runCheck(target, seed.data);
    });

    it(`${name} regressions pass`, async () => {
      for (const input of inputsOf(path.join(repository, 'fuzz/regressions', name))) {
        await assert.doesNotReject(runCheck(target, input.data), `fuzz/regressions/${name}/${input.name}`);
      }
    });
  }
});

describe('fuzz findings', () => {
  it('SimpleTLV decodes tag FF', () => {
    // The decoder accepts the tags 00 and FF that ISO 7816-4 reserves, as
    // libcacard does, while encodeSimpleTlv rejects them.
    const decoded = decodeSimpleTlv(Uint8Array.of(0x01, 0x01, 0x00, 0xff, 0x00));
    assert.equal(decoded.ok, true);
    assert.ok(decoded.ok);
    assert.equal(decoded.objects.length, 2);
    assert.equal(decoded.objects[1]?.tag, 0xff);
    assert.equal(decoded.objects[1]?.value.length, 0);
  });
});
