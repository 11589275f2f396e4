/**
 * One VSCard server (the server of `virtcard host`) serving 10, 100 and 1000
 * concurrent clients: total APDUs per second, p50/p99 latency and resident
 * memory per idle card, each the median of the rounds (host-load.js).
 * There is no C reference here: QEMU's ccid-card-passthru takes one client.
 */
import path from 'node:path';
import { median, runCommand } from './measure.js';
import type { BenchRow } from './report.js';
import type { BenchContext } from './run.js';

interface HostLoadResult {
  apdusPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  rssPerCardKiB: number;
}

export async function runHostRows(context: BenchContext): Promise<BenchRow[]> {
  const script = path.join(context.scriptFolder, 'host-load.js');
  const rows: BenchRow[] = [];
  for (const clients of [10, 100, 1000]) {
    const results: HostLoadResult[] = [];
    for (let round = 0; round < Math.min(context.rounds, 3); round++) {
      const output = await runCommand(process.execPath, ['--expose-gc', script, String(clients), String(context.seconds)], {
        env: { ...process.env, VIRTCARD_LOG_LEVEL: 'silent' },
      });
      results.push(JSON.parse(output.stdout.trim().split('\n').at(-1) ?? '{}') as HostLoadResult);
    }
    const p50 = median(results.map((result) => result.p50Ms));
    const p99 = median(results.map((result) => result.p99Ms));
    const rss = median(results.map((result) => result.rssPerCardKiB));
    rows.push({
      name: `virtcard host, ${clients} VSCard clients: APDUs/s over all cards`,
      virtcard: median(results.map((result) => result.apdusPerSecond)),
      reference: undefined,
      ratio: undefined,
      target: '–',
      met: undefined,
      command: `node --expose-gc dist/bench-bundle/host-load.js ${clients} ${context.seconds}`,
      note: `p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, ${Math.round(rss)} KiB RSS per idle card`,
    });
  }
  return rows;
}
