/**
 * Serves a virtcard card to a vpcd slot until SIGTERM or SIGINT: the echo
 * card (every APDU comes back with 90 00), the CAC card on the certificates
 * of an NSS database, or the CAC card on PEM key and certificate files
 * (KEY_FOLDER/<nickname>.key.pem and .cert.pem, PIN from VIRTCARD_BENCH_PIN).
 *
 *   node dist/bench/vpcd-card-server.js echo PORT
 *   node dist/bench/vpcd-card-server.js cac PORT NSS_DB
 *   node dist/bench/vpcd-card-server.js cac-files PORT KEY_FOLDER
 *
 * With VIRTCARD_BENCH_RECORD set to a file name, the card's APDU exchanges
 * are written to that file on exit, for vpcd-replay-card.js.
 */
import path from 'node:path';
import { openKeyFiles } from '../src/backends/files.js';
import type { KeyStore } from '../src/backends/key-store.js';
import { openNssDatabase } from '../src/backends/nss.js';
import { createCacReader } from '../src/cac/cac-card.js';
import { EchoReader } from '../src/reader/echo-reader.js';
import type { Reader } from '../src/reader/reader.js';
import { VpcdCard } from '../src/transports/vpcd.js';
import { BENCH_NICKNAMES } from './apdus.js';
import { recordApdus } from './apdu-recording.js';

function openBenchKeyFiles(folder: string): Promise<KeyStore> {
  const pin = process.env.VIRTCARD_BENCH_PIN;
  if (pin === undefined || pin === '') throw new Error('VIRTCARD_BENCH_PIN is not set: set it to the card PIN');
  const slots = BENCH_NICKNAMES.map((nickname) => ({
    certificate: path.join(folder, `${nickname}.cert.pem`),
    key: path.join(folder, `${nickname}.key.pem`),
  }));
  return openKeyFiles({ slots, pin });
}

async function main(): Promise<void> {
  const [kind, portText, directory] = process.argv.slice(2);
  const port = Number(portText);
  const known = kind === 'echo' || kind === 'cac' || kind === 'cac-files';
  if (!known || !Number.isInteger(port) || (kind !== 'echo' && directory === undefined)) {
    throw new Error('usage: vpcd-card-server echo PORT | cac PORT NSS_DB | cac-files PORT KEY_FOLDER');
  }

  let reader: Reader;
  let store: KeyStore | undefined;
  if (kind === 'echo') {
    reader = new EchoReader();
  } else {
    store = kind === 'cac' ? await openNssDatabase({ directory: directory!, nicknames: BENCH_NICKNAMES }) : await openBenchKeyFiles(directory!);
    reader = createCacReader('virtcard CAC', store);
  }
  const closeStore = (): Promise<void> => store?.close() ?? Promise.resolve();
  const recordFile = process.env.VIRTCARD_BENCH_RECORD;
  const recorder = recordFile === undefined || recordFile === '' ? undefined : recordApdus(reader, recordFile);

  const card = new VpcdCard(reader, { host: '127.0.0.1', port, initialRetryDelayMs: 50, maxRetryDelayMs: 200 });
  card.start();

  const shutdown = async (): Promise<void> => {
    await card.stop();
    recorder?.save();
    await closeStore();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown());
  process.once('SIGTERM', () => void shutdown());
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
