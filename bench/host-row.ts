/**
 * One `virtcard host` serving many VSCard clients. The row stays marked as
 * not yet available until the VSCard server exists in src/.
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { BenchRow } from './report.js';
import type { BenchContext } from './run.js';

function vscardServerExists(repository: string): boolean {
  if (existsSync(path.join(repository, 'src/host'))) return true;
  const vscardFolder = path.join(repository, 'src/vscard');
  return existsSync(vscardFolder) && readdirSync(vscardFolder).some((name) => name.startsWith('server'));
}

export function runHostRow(_context: BenchContext, repository: string): Promise<BenchRow[]> {
  const available = vscardServerExists(repository);
  // TODO: drive N = 10, 100, 1000 concurrent VSCard clients once the server lands.
  const note = available ? 'the VSCard server exists, but this benchmark does not drive it yet' : 'not yet available: no VSCard server in src/ yet';
  return Promise.resolve(
    [10, 100, 1000].map((clients) => ({
      name: `virtcard host, ${clients} VSCard clients: APDUs/s, p50/p99 latency, RSS per idle card`,
      virtcard: undefined,
      reference: undefined,
      ratio: undefined,
      target: '–',
      met: undefined,
      command: 'virtcard host',
      note,
    })),
  );
}
