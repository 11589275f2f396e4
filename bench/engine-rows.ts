/**
 * Card engine alone: APDUs per second of virtcard's CAC card in-process
 * (engine-loop.ts) against libcacard driven in-process by
 * libcacard-driver.c, for a SELECT loop and a READ BUFFER loop.
 */
import path from 'node:path';
import type { BenchRow } from './report.js';
import { median, parseRate, runCommand } from './measure.js';
import type { BenchContext } from './run.js';

export async function runEngineRows(context: BenchContext): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const loop of ['select', 'read-buffer'] as const) {
    const virtcardArgs = [path.join(context.scriptFolder, 'engine-loop.js'), context.nssDatabase, String(context.seconds), loop];
    const referenceArgs = ['engine', context.nssDatabase, String(context.seconds), loop];
    const virtcardRates: number[] = [];
    const referenceRates: number[] = [];
    const ratios: number[] = [];
    for (let round = 0; round < context.rounds; round++) {
      const virtcard = parseRate((await runCommand(process.execPath, virtcardArgs)).stdout, 'engine-loop');
      const reference = parseRate((await runCommand(context.libcacardDriver, referenceArgs)).stdout, 'libcacard-driver');
      virtcardRates.push(virtcard);
      referenceRates.push(reference);
      ratios.push(virtcard / reference);
    }
    const ratio = median(ratios);
    rows.push({
      name: `Card engine, ${loop === 'select' ? 'SELECT' : 'READ BUFFER (240 bytes)'} APDUs/s (reference: libcacard in-process)`,
      virtcard: median(virtcardRates),
      reference: median(referenceRates),
      ratio,
      target: '≥ 1.0×',
      met: ratio >= 1.0,
      command: `node dist/bench-bundle/engine-loop.js DB ${context.seconds} ${loop}  vs  libcacard-driver engine DB ${context.seconds} ${loop}`,
    });
  }
  return rows;
}
