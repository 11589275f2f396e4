/**
 * Replays the APDU transcripts recorded from libcacard 2.8's CAC card
 * against virtcard's CAC card, in process, with the certificates and keys of
 * the fixture NSS database. Every exchange must match the recording, except
 * where virtcard differs by design (VERIFY retry counter, GSC-IS GET ACR
 * tables). Those are checked against the response the documented rule gives.
 *
 * The transcripts and the database are read from $VIRTCARD_SHARED, by
 * default the `shared` directory beside the repository.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KeyStore } from '../../src/backends/key-store.js';
import { findSoftokn, openNssDatabase } from '../../src/backends/nss.js';
import { createCacReader, type EmulatedReader } from '../../src/cac/index.js';
import { CacExpectationModel } from '../support/cac-expectations.js';
import { parseTranscript, type ExpectedResponse } from '../support/transcript.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const shared = process.env['VIRTCARD_SHARED'] ?? path.resolve(repoRoot, '../shared');
const corpus = path.join(shared, 'reference', 'libcacard-apdu');
const database = path.join(shared, 'fixtures', 'nss-db');
const passwordFile = path.join(shared, 'fixtures', 'nss-db-password.txt');
const NICKNAMES = ['id-cert', 'signing-cert', 'encryption-cert'];

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1 ');
}

function short(bytes: Uint8Array): string {
  const text = hex(bytes);
  return text.length > 120 ? `${text.slice(0, 120)}... (${bytes.length} bytes)` : text;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Returns why `actual` does not match the recording, or undefined when it matches. */
function mismatch(actual: Uint8Array, expected: ExpectedResponse): string | undefined {
  const data = actual.subarray(0, Math.max(actual.length - 2, 0));
  const sw = actual.length >= 2 ? (actual[actual.length - 2]! << 8) | actual[actual.length - 1]! : -1;
  switch (expected.kind) {
    case 'exact':
      return hex(actual) === hex(expected.bytes) ? undefined : `expected ${short(expected.bytes)}`;
    case 'key-dependent':
      if (data.length !== expected.length) return `expected ${expected.length} data bytes, got ${data.length}`;
      if (sw !== expected.sw) return `expected SW ${expected.sw.toString(16)}, got ${sw.toString(16)}`;
      return sha256(data) === expected.sha256 ? undefined : 'data sha256 differs from the recording';
    case 'masked': {
      if (actual.length !== expected.bytes.length) return `expected ${expected.bytes.length} bytes, got ${actual.length}`;
      const differs = expected.bytes.findIndex((byte, i) => byte !== undefined && byte !== actual[i]);
      if (differs >= 0) return `unmasked byte ${differs} differs`;
      return sha256(data) === expected.sha256 ? undefined : 'data sha256 differs from the recording';
    }
    case 'transport-error':
      return `the recording has a transport error (${expected.error})`;
  }
}

const counts = { exact: 0, deliberate: 0, transport: 0 };
let store: KeyStore | undefined;
let skipReason: string | undefined;

before(async () => {
  try {
    findSoftokn();
  } catch (error) {
    if (process.env['CI'] !== undefined) throw error;
    skipReason = `NSS softokn is not installed: ${(error as Error).message}`;
    return;
  }
  const password = readFileSync(passwordFile, 'utf8').trim();
  store = await openNssDatabase({ directory: `sql:${database}`, nicknames: NICKNAMES, password });
});

after(async () => {
  await store?.close();
  const total = counts.exact + counts.deliberate + counts.transport;
  console.log(
    `CAC conformance: ${total} exchanges, ${counts.exact} identical to libcacard, ` +
      `${counts.deliberate} deliberately different and checked against the documented rule, ` +
      `${counts.transport} refused by the recording's transport`,
  );
});

assert.ok(existsSync(corpus), `transcript directory ${corpus} not found: set VIRTCARD_SHARED to the shared directory`);
const files = readdirSync(corpus)
  .filter((name) => name.endsWith('.transcript'))
  .sort();

for (const file of files) {
  const cases = parseTranscript(readFileSync(path.join(corpus, file), 'utf8'));
  const stem = file.replace(/\.transcript$/, '');
  // One card per file, reset before every case, as the recording ran one card process per replay.
  let reader: EmulatedReader | undefined;
  let model: CacExpectationModel | undefined;

  for (const transcriptCase of cases) {
    test(`/cac/${stem}/${transcriptCase.name}`, async (t) => {
      if (store === undefined) {
        t.skip(skipReason ?? 'key store not opened');
        return;
      }
      reader ??= createCacReader('virtcard conformance', store);
      model ??= new CacExpectationModel(store.slots.length);

      const atr = await reader.reset('cold');
      model.reset();
      if (transcriptCase.atr !== undefined) assert.equal(hex(atr), hex(transcriptCase.atr), 'ATR after cold reset');

      for (const exchange of transcriptCase.exchanges) {
        const where = `${file} line ${exchange.line}: C: ${short(exchange.command)}`;
        const recorded = exchange.expected.kind === 'exact' ? exchange.expected.bytes : undefined;
        const designed = model.expect(exchange.command, recorded);
        const actual: Uint8Array = await reader.transmit(exchange.command);

        if (exchange.expected.kind === 'transport-error') {
          // pcscd refused the zero-length APDU, so libcacard never saw it; its rule for fewer than 4 bytes is 67 00.
          assert.equal(hex(actual), '67 00', `${where}: short APDU`);
          counts.transport += 1;
          continue;
        }

        if (designed !== undefined) {
          assert.equal(hex(actual), hex(designed), `${where}: deliberate difference, answer from the documented rule`);
          if (mismatch(actual, exchange.expected) === undefined) counts.exact += 1;
          else counts.deliberate += 1;
          continue;
        }

        const problem = mismatch(actual, exchange.expected);
        assert.equal(problem, undefined, `${where}: got ${short(actual)}, ${problem ?? ''}`);
        counts.exact += 1;
      }
    });
  }
}
