/**
 * Sends one APDU in a loop into virtcard's CAC card, in-process and without
 * a reader or transport, and prints "<count> APDUs in <seconds> s". The card
 * contains the three certificates of an NSS database, like the C card of
 * libcacard-driver.c, and the loops send the same bytes as that driver.
 *
 *   node dist/bench/engine-loop.js NSS_DB SECONDS select|read-buffer
 */
import { openNssDatabase } from '../src/backends/nss.js';
import { createCacCard } from '../src/cac/cac-card.js';
import { BENCH_NICKNAMES, READ_BUFFER_APDU, SELECT_PKI_APDU } from './apdus.js';

async function main(): Promise<void> {
  const [directory, secondsText, loop] = process.argv.slice(2);
  if (directory === undefined || secondsText === undefined || (loop !== 'select' && loop !== 'read-buffer')) {
    throw new Error('usage: engine-loop NSS_DB SECONDS select|read-buffer');
  }
  const seconds = Number(secondsText);

  const store = await openNssDatabase({ directory, nicknames: BENCH_NICKNAMES });
  const card = createCacCard(store);
  card.reset();

  const select = await card.transmit(SELECT_PKI_APDU);
  if (select.at(-2) !== 0x90) throw new Error(`SELECT of the PKI applet returned SW ${Buffer.from(select.subarray(-2)).toString('hex')}`);
  const command = loop === 'select' ? SELECT_PKI_APDU : READ_BUFFER_APDU;
  const first = await card.transmit(command);
  if (first.at(-2) !== 0x90 || first.at(-1) !== 0x00) {
    throw new Error(`the ${loop} command returned SW ${Buffer.from(first.subarray(-2)).toString('hex')}, expected 9000`);
  }

  // Check the clock every 256 APDUs, as the C driver does.
  let count = 0;
  const started = process.hrtime.bigint();
  let elapsed = 0;
  do {
    for (let i = 0; i < 256; i++) await card.transmit(command);
    count += 256;
    elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  } while (elapsed < seconds);

  console.log(`${count} APDUs in ${elapsed.toFixed(3)} s`);
  await store.close();
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
