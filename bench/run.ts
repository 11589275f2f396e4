/**
 * Runs every benchmark of virtcard against its C counterpart and prints a
 * table of ratios measured in the same run; `npm run bench` calls it.
 * The results also replace the part of docs/benchmarks.md between the
 * `bench:start` and `bench:end` markers.
 *
 *   npm run bench [-- --rounds N] [--seconds S] [--no-write] [--only GROUP[,GROUP...]]
 *
 * GROUP is one of engine, vpcd, pkcs11-tool, sign, decoder, host (see
 * ROW_GROUPS). `--only` prints the rows of those groups and leaves the page
 * unchanged, because the table there lists every row.
 *
 * `npm run bench` bundles this script and the loop programs it starts with
 * esbuild into dist/bench-bundle first, so a rebuild of dist/ during the run
 * cannot change the code under test.
 *
 * Measurements alternate between virtcard and the reference in each round
 * and report medians, because one run on a shared machine drifts by about
 * 15 %. Needs root (the private pcscd), cc, Debian's libcacard-dev,
 * libpcsclite-dev, pcscd, vsmartcard-vpcd, vsmartcard-vpicc and opensc.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildReport, type BenchRow } from './report.js';
import { runEngineRows } from './engine-rows.js';
import { runHostRows } from './host-row.js';
import { PCSC_ROW_GROUPS, runPcscRows, type PcscRowGroup } from './pcsc-rows.js';
import { measureVscardDecode } from './vscard-decode.js';
import { median } from './measure.js';
import { BENCH_NICKNAMES } from './apdus.js';

/** Folder of this script and of the loop programs it starts (dist/bench or dist/bench-bundle). */
const scriptFolder = path.dirname(fileURLToPath(import.meta.url));
const repository = path.resolve(scriptFolder, '../..');

/** Folder of the shared test material: VIRTCARD_SHARED, or `shared` beside the repository. */
const sharedFolder = process.env.VIRTCARD_SHARED ?? path.resolve(repository, '../shared');

export interface BenchContext {
  /** Temporary folder for the C tools and the copy of the NSS database. */
  workFolder: string;
  /** Copy of the fixture NSS database (password 12345678, three certificates). */
  nssDatabase: string;
  /** Card PIN of both cards: the NSS database password. */
  pin: string;
  /** Folder of PEM files exported from the NSS database: <nickname>.key.pem and <nickname>.cert.pem. */
  keyFolder: string;
  /** Compiled bench/libcacard-driver.c. */
  libcacardDriver: string;
  /** Compiled bench/pcsc-loop.c. */
  pcscLoop: string;
  /** Folder of the compiled loop programs (engine-loop.js, vpcd-card-server.js, pkcs11-sign-loop.js). */
  scriptFolder: string;
  rounds: number;
  /** Length of one timed loop, in seconds. */
  seconds: number;
}

function compile(source: string, output: string, pkgConfigPackage: string): void {
  const flags = spawnSync('pkg-config', ['--cflags', '--libs', pkgConfigPackage], { encoding: 'utf8' });
  if (flags.status !== 0) throw new Error(`pkg-config found no ${pkgConfigPackage}: install its -dev package (${flags.stderr.trim()})`);
  const result = spawnSync('cc', ['-O2', '-o', output, source, ...flags.stdout.trim().split(/\s+/)], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`cc failed on ${source}:\n${result.stderr}`);
}

/**
 * Exports each benchmark key and certificate from the NSS database into PEM
 * files, through PKCS#12 (pk12util, then openssl). Passwords travel in files,
 * never on a command line.
 */
function exportKeyFiles(nssDatabase: string, pin: string, folder: string): void {
  mkdirSync(folder);
  const databasePasswordFile = path.join(folder, 'database-password');
  const exportPasswordFile = path.join(folder, 'export-password');
  writeFileSync(databasePasswordFile, `${pin}\n`, { mode: 0o600 });
  writeFileSync(exportPasswordFile, `${randomBytes(12).toString('hex')}\n`, { mode: 0o600 });

  const run = (command: string, args: string[]): void => {
    const result = spawnSync(command, args, { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`${command} failed while exporting the benchmark keys: ${result.stderr.trim()}`);
  };
  for (const nickname of BENCH_NICKNAMES) {
    const pkcs12 = path.join(folder, `${nickname}.p12`);
    run('pk12util', ['-o', pkcs12, '-n', nickname, '-d', `sql:${nssDatabase}`, '-k', databasePasswordFile, '-w', exportPasswordFile]);
    const passIn = `file:${exportPasswordFile}`;
    run('openssl', ['pkcs12', '-in', pkcs12, '-passin', passIn, '-nodes', '-nocerts', '-out', path.join(folder, `${nickname}.key.pem`)]);
    run('openssl', ['pkcs12', '-in', pkcs12, '-passin', passIn, '-clcerts', '-nokeys', '-out', path.join(folder, `${nickname}.cert.pem`)]);
  }
}

function packageVersion(name: string): string {
  const result = spawnSync('dpkg-query', ['-W', '-f', '${Version}', name], { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : 'not installed';
}

/** Describes the machine and the software versions for the report. */
function describeMachine(): string[] {
  const cpuModel = cpus()[0]?.model ?? 'unknown';
  const nproc = spawnSync('nproc', { encoding: 'utf8' }).stdout.trim();
  const virtcardVersion = (JSON.parse(readFileSync(path.join(repository, 'package.json'), 'utf8')) as { version: string }).version;
  const load = loadavg().map((value) => value.toFixed(2)).join(', ');
  return [
    `CPU: ${cpuModel}, nproc = ${nproc}, load average at the end of the run ${load} (other work on the machine shifts absolute numbers)`,
    `Node.js ${process.version}, virtcard ${virtcardVersion}`,
    `libcacard ${packageVersion('libcacard0')}, pcscd ${packageVersion('pcscd')}, vsmartcard-vpcd ${packageVersion('vsmartcard-vpcd')}, ` +
      `vsmartcard-vpicc ${packageVersion('vsmartcard-vpicc')}, OpenSC ${packageVersion('opensc')}`,
  ];
}

/** Groups of table rows, in table order. `--only` selects among them. */
const ROW_GROUPS = ['engine', ...PCSC_ROW_GROUPS, 'decoder', 'host'] as const;
type RowGroup = (typeof ROW_GROUPS)[number];

interface BenchOptions {
  rounds: number;
  seconds: number;
  write: boolean;
  groups: ReadonlySet<RowGroup>;
}

function parseGroups(text: string | undefined): Set<RowGroup> {
  if (text === undefined || text.startsWith('--')) throw new Error(`--only is missing its groups: give one or more of ${ROW_GROUPS.join(', ')}, separated by commas`);
  const groups = new Set<RowGroup>();
  for (const name of text.split(',')) {
    const group = ROW_GROUPS.find((known) => known === name);
    if (group === undefined) throw new Error(`--only got the unknown group "${name}". Use one or more of ${ROW_GROUPS.join(', ')}`);
    groups.add(group);
  }
  return groups;
}

function parseOptions(argv: readonly string[]): BenchOptions {
  const valueOf = (name: string, fallback: number): number => {
    const index = argv.indexOf(name);
    if (index < 0) return fallback;
    const value = Number(argv[index + 1]);
    if (!(value > 0)) throw new Error(`${name} needs a positive number, got "${argv[index + 1]}"`);
    return value;
  };
  const onlyIndex = argv.indexOf('--only');
  const groups = onlyIndex < 0 ? new Set(ROW_GROUPS) : parseGroups(argv[onlyIndex + 1]);
  return {
    // Nine rounds, because the median ratio of one row moved by about 15 % between five-round runs here.
    rounds: valueOf('--rounds', 9),
    seconds: valueOf('--seconds', 1.5),
    // A partial table must not replace the full one on the page.
    write: onlyIndex < 0 && !argv.includes('--no-write'),
    groups,
  };
}

/** Measures the VSCard decoder in process against two copy references. */
function decoderRows(options: BenchOptions): BenchRow[] {
  const decoderRates: number[] = [];
  const messageCopyRates: number[] = [];
  const chunkCopyRates: number[] = [];
  for (let round = 0; round < options.rounds; round++) {
    const rates = measureVscardDecode(options.seconds / 2);
    decoderRates.push(rates.decoderMBps);
    messageCopyRates.push(rates.messageCopyMBps);
    chunkCopyRates.push(rates.chunkCopyMBps);
  }
  const ratioPerRound = (references: number[]): number => median(decoderRates.map((rate, index) => rate / references[index]!));
  return [
    {
      name: 'VSCard decoder, MB/s (reference: copy of the same stream message by message)',
      virtcard: median(decoderRates),
      reference: median(messageCopyRates),
      ratio: ratioPerRound(messageCopyRates),
      target: '≥ 0.5×',
      met: ratioPerRound(messageCopyRates) >= 0.5,
      command: 'in-process: bench/vscard-decode.ts, 16 KiB chunks of APDU messages',
    },
    {
      name: 'VSCard decoder, MB/s (reference: copy of the same 16 KiB chunks, no framing)',
      virtcard: median(decoderRates),
      reference: median(chunkCopyRates),
      ratio: ratioPerRound(chunkCopyRates),
      target: 'informative',
      met: undefined,
      command: 'in-process: bench/vscard-decode.ts, 16 KiB chunks of APDU messages',
      note: 'informative: memory bandwidth, no per-message work',
    },
  ];
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const fixtureDatabase = path.join(sharedFolder, 'fixtures/nss-db');
  if (!existsSync(fixtureDatabase)) throw new Error(`NSS database not found at ${fixtureDatabase}: set VIRTCARD_SHARED`);

  const workFolder = mkdtempSync(path.join(tmpdir(), 'virtcard-bench-'));
  try {
    const nssDatabase = path.join(workFolder, 'nss-db');
    cpSync(fixtureDatabase, nssDatabase, { recursive: true });
    const pin = readFileSync(path.join(sharedFolder, 'fixtures/nss-db-password.txt'), 'utf8').trim();

    const context: BenchContext = {
      workFolder,
      nssDatabase,
      pin,
      keyFolder: path.join(workFolder, 'keys'),
      libcacardDriver: path.join(workFolder, 'libcacard-driver'),
      pcscLoop: path.join(workFolder, 'pcsc-loop'),
      scriptFolder,
      rounds: options.rounds,
      seconds: options.seconds,
    };
    exportKeyFiles(nssDatabase, pin, context.keyFolder);
    compile(path.join(repository, 'bench/libcacard-driver.c'), context.libcacardDriver, 'libcacard');
    compile(path.join(repository, 'bench/pcsc-loop.c'), context.pcscLoop, 'libpcsclite');

    const started = Date.now();
    const rows: BenchRow[] = [];
    const { groups } = options;
    if (groups.has('engine')) rows.push(...(await runEngineRows(context)));
    const pcscGroups = new Set(PCSC_ROW_GROUPS.filter((group: PcscRowGroup) => groups.has(group)));
    if (pcscGroups.size > 0) rows.push(...(await runPcscRows(context, pcscGroups)));
    if (groups.has('decoder')) rows.push(...decoderRows(options));
    if (groups.has('host')) rows.push(...(await runHostRows(context)));

    const minutes = (Date.now() - started) / 60_000;
    const report = buildReport(rows, describeMachine(), options, minutes);
    console.log(report);
    if (options.write) writeResults(path.join(repository, 'docs/benchmarks.md'), report);
  } finally {
    rmSync(workFolder, { recursive: true, force: true });
  }
}

/** Replaces the generated part of the benchmark page, keeping the text around it. */
function writeResults(page: string, report: string): void {
  const start = '<!-- bench:start -->';
  const end = '<!-- bench:end -->';
  const current = existsSync(page) ? readFileSync(page, 'utf8') : `# Benchmarks\n\n${start}\n${end}\n`;
  const from = current.indexOf(start);
  const to = current.indexOf(end);
  if (from < 0 || to < from) throw new Error(`${page} lacks the ${start} … ${end} markers; add them where the results go`);
  writeFileSync(page, `${current.slice(0, from + start.length)}\n${report}\n${current.slice(to)}`);
  console.log(`wrote the results into ${page}`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
