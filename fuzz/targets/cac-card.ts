/**
 * Fuzz target: the CAC card engine behind the APDU parser. Each input is a
 * sequence of command APDUs, each one a length byte followed by that many
 * bytes, sent to a new card (so no PIN counter or selected applet carries
 * over between inputs). The card contains one RSA-2048 key on key and
 * certificate files that openssl creates once per process, PIN 12345678.
 * A card-level failure is a status word; a rejected transmit is a crash.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openKeyFiles } from '../../src/backends/files.js';
import type { KeyStore } from '../../src/backends/key-store.js';
import { createCacCard } from '../../src/cac/cac-card.js';
import { guardAsync } from './guard.js';

/** Card PIN of the fuzzed card; the corpus VERIFY seeds send it. */
export const FUZZ_PIN = '12345678';

let storePromise: Promise<KeyStore> | undefined;

function openStore(): Promise<KeyStore> {
  const folder = mkdtempSync(path.join(tmpdir(), 'virtcard-fuzz-cac-'));
  const key = path.join(folder, 'key.pem');
  const certificate = path.join(folder, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', certificate, '-subj', '/CN=virtcard fuzz', '-days', '30'], {
    stdio: 'ignore',
  });
  return openKeyFiles({ slots: [{ certificate, key }], pin: FUZZ_PIN });
}

/** Rejects when the input reveals a bug. */
export async function check(data: Buffer): Promise<void> {
  storePromise ??= openStore();
  const card = createCacCard(await storePromise);
  card.reset();

  let offset = 0;
  while (offset < data.length) {
    const length = data[offset]!;
    const command = data.subarray(offset + 1, offset + 1 + length);
    offset += 1 + length;
    const response = await card.transmit(command);
    if (response.length < 2) throw new Error(`the card returned ${response.length} bytes for ${Buffer.from(command).toString('hex')}, less than a status word`);
  }
}

export const fuzz = guardAsync(check);
