/**
 * One VSCard server (the server of `virtcard host`) with COUNT clients from
 * vscard-echo-clients.js in a second process. It first measures the
 * resident set size that the idle clients' cards add. Then it sends SELECT
 * APDUs to all cards at once, one APDU at a time per card, for SECONDS
 * seconds. It prints one JSON line: APDUs per second over all cards, p50
 * and p99 latency in milliseconds, and RSS per idle card in KiB.
 *
 *   node dist/bench/host-load.js COUNT SECONDS
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { logger } from '../src/log/logger.js';
import type { RemoteCardReader } from '../src/vscard/server-reader.js';
import { VscServer } from '../src/vscard/server.js';
import { SELECT_PKI_APDU } from './apdus.js';

/** Returns the value at quantile `q` (0 to 1) of the ascending `sorted`. */
function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

async function settledRss(): Promise<number> {
  global.gc?.();
  await sleep(200);
  global.gc?.();
  return process.memoryUsage().rss;
}

async function main(): Promise<void> {
  const [countText, secondsText] = process.argv.slice(2);
  const count = Number(countText);
  const seconds = Number(secondsText);
  if (!Number.isInteger(count) || count < 1 || !(seconds > 0)) throw new Error('usage: host-load COUNT SECONDS');

  const readers: RemoteCardReader[] = [];
  const server = new VscServer({ port: 0, logger: logger.child({ component: 'bench' }, { level: 'silent' }) });
  server.on('reader', (reader) => readers.push(reader));
  const address = await server.listen();
  const rssBefore = await settledRss();

  const clientScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'vscard-echo-clients.js');
  const clients = spawn(process.execPath, [clientScript, String(address.port), String(count)], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      clients.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
      clients.once('exit', (code) => reject(new Error(`vscard-echo-clients exited with code ${code} before all clients were ready`)));
    });
    const deadline = Date.now() + 30_000;
    while (readers.filter((reader) => reader.atr() !== undefined).length < count) {
      if (Date.now() > deadline) throw new Error(`only ${readers.length} of ${count} clients inserted a card within 30 s`);
      await sleep(50);
    }
    const rssPerCardKiB = ((await settledRss()) - rssBefore) / count / 1024;

    const latencies: number[] = [];
    const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
    const started = process.hrtime.bigint();
    await Promise.all(
      readers.map(async (reader) => {
        while (process.hrtime.bigint() < end) {
          const sent = process.hrtime.bigint();
          await reader.transmit(SELECT_PKI_APDU);
          latencies.push(Number(process.hrtime.bigint() - sent) / 1e6);
        }
      }),
    );
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    const sorted = Float64Array.from(latencies).sort();
    console.log(
      JSON.stringify({
        clients: count,
        apdusPerSecond: latencies.length / elapsed,
        p50Ms: quantile(sorted, 0.5),
        p99Ms: quantile(sorted, 0.99),
        rssPerCardKiB,
      }),
    );
  } finally {
    clients.kill('SIGTERM');
    await server.close();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
