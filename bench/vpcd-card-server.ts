/**
 * Serves a virtcard card to a vpcd slot until SIGTERM or SIGINT: the echo
 * card (every APDU comes back with 90 00) or the CAC card on the
 * certificates of an NSS database.
 *
 *   node dist/bench/vpcd-card-server.js echo PORT
 *   node dist/bench/vpcd-card-server.js cac PORT NSS_DB
 */
import { openNssDatabase } from '../src/backends/nss.js';
import { createCacReader } from '../src/cac/cac-card.js';
import { EchoReader } from '../src/reader/echo-reader.js';
import type { Reader } from '../src/reader/reader.js';
import { VpcdCard } from '../src/transports/vpcd.js';
import { BENCH_NICKNAMES } from './apdus.js';

async function main(): Promise<void> {
  const [kind, portText, directory] = process.argv.slice(2);
  const port = Number(portText);
  if ((kind !== 'echo' && kind !== 'cac') || !Number.isInteger(port) || (kind === 'cac' && directory === undefined)) {
    throw new Error('usage: vpcd-card-server echo PORT | cac PORT NSS_DB');
  }

  let reader: Reader;
  let closeStore = (): Promise<void> => Promise.resolve();
  if (kind === 'echo') {
    reader = new EchoReader();
  } else {
    const store = await openNssDatabase({ directory: directory!, nicknames: BENCH_NICKNAMES });
    closeStore = () => store.close();
    reader = createCacReader('virtcard CAC', store);
  }

  const card = new VpcdCard(reader, { host: '127.0.0.1', port, initialRetryDelayMs: 50, maxRetryDelayMs: 200 });
  card.start();

  const shutdown = async (): Promise<void> => {
    await card.stop();
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
