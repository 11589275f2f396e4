/**
 * Benchmarks through a private pcscd and vsmartcard's vpcd: APDU round trips
 * per second with the echo card, virtcard's CAC card, libcacard's card
 * (libcacard-driver.c in vpcd mode) and vsmartcard's vicc; the wall time of
 * `pkcs11-tool -O`; and RSA-2048 signatures per second through OpenSC's
 * PKCS#11 module. The client side of the round trips is pcsc-loop.c.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPrivatePcscd, type PrivatePcscd } from '../test/support/private-pcscd.js';
import { viccArguments, viccEnvironment } from '../test/support/vicc.js';
import { SELECT_PKI_APDU, toHex } from './apdus.js';
import { median, parseRate, runCommand } from './measure.js';
import type { BenchRow } from './report.js';
import type { BenchContext } from './run.js';

/** Name prefix of the first vpcd slot as pcscd lists it. */
const VPCD_READER = 'Virtual PCD 00 00';

/** Path of the PKCS#11 module that Debian's opensc-pkcs11 installs. */
const OPENSC_MODULE = '/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so';

/**
 * virtcard-files is virtcard's CAC card on PEM key files instead of the NSS
 * database. minimal-echo and replay run the least a Node.js card needs
 * (vpcd-minimal-card.ts): minimal-echo returns each APDU with 90 00, and
 * replay responds from a recording of virtcard's CAC card.
 */
type CardKind = 'echo' | 'virtcard' | 'virtcard-files' | 'libcacard' | 'vicc' | 'minimal-echo' | 'replay';

interface RunningCard {
  child: ChildProcess;
  /** Standard error of the card process so far. */
  stderr(): string;
  stop(): Promise<void>;
}

/** Returns the program and arguments that serve a card of `kind` to the vpcd slot on `port`. */
function cardCommand(kind: CardKind, context: BenchContext, port: string): [string, string[]] {
  const server = path.join(context.scriptFolder, 'vpcd-card-server.js');
  switch (kind) {
    case 'echo':
      return [process.execPath, [server, 'echo', port]];
    case 'virtcard':
      return [process.execPath, [server, 'cac', port, context.nssDatabase]];
    case 'virtcard-files':
      return [process.execPath, [server, 'cac-files', port, context.keyFolder]];
    case 'libcacard':
      return [context.libcacardDriver, ['vpcd', context.nssDatabase, '127.0.0.1', port]];
    case 'vicc':
      return ['vicc', viccArguments(Number(port))];
    case 'minimal-echo':
      return [process.execPath, [path.join(context.scriptFolder, 'vpcd-minimal-echo-card.js'), port]];
    case 'replay':
      return [process.execPath, [path.join(context.scriptFolder, 'vpcd-replay-card.js'), port, recordingFile(context)]];
  }
}

/** File where virtcard's responses to pkcs11-tool -O are recorded for the replay card. */
function recordingFile(context: BenchContext): string {
  return path.join(context.workFolder, 'pkcs11-tool-recording.json');
}

function startCard(kind: CardKind, context: BenchContext, pcscd: PrivatePcscd, extraEnv: NodeJS.ProcessEnv = {}): RunningCard {
  const [command, args] = cardCommand(kind, context, String(pcscd.vpcdPort));
  const baseEnv = { ...process.env, VIRTCARD_LOG_LEVEL: 'warn', VIRTCARD_BENCH_PIN: context.pin, ...extraEnv };
  // Debian 12's vicc needs PYTHONPATH additions to load its own module and PyCryptodome.
  const env = kind === 'vicc' ? viccEnvironment(baseEnv) : baseEnv;
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(3000)]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    // vpcd notices the closed connection on its next poll; give pcscd time to see the slot empty.
    await sleep(300);
  };
  return { child, stderr: () => stderr, stop };
}

/** Waits until pcscd reports a card in the vpcd slot, by exchanging one APDU. */
async function waitForCard(context: BenchContext, pcscd: PrivatePcscd, kind: CardKind, card: RunningCard): Promise<void> {
  const deadline = Date.now() + 15_000;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (card.child.exitCode !== null) {
      const lastLine = card.stderr().trim().split('\n').at(-1) ?? '';
      throw new Error(`the ${kind} card exited with code ${card.child.exitCode}: ${lastLine}`);
    }
    try {
      await runCommand(context.pcscLoop, [VPCD_READER, '0', toHex(SELECT_PKI_APDU)], { env: pcscd.env, timeoutMs: 5000 });
      return;
    } catch (error) {
      lastError = error;
      await sleep(200);
    }
  }
  throw new Error(`the ${kind} card did not appear in ${VPCD_READER} within 15 s: ${String(lastError)}`);
}

/**
 * Runs `measure` once per round for every card kind in turn, each with a
 * freshly started card. A card in `optional` that fails to start is
 * recorded in `failures` and left out of later rounds; any other failure
 * is raised.
 */
async function interleave(
  kinds: readonly CardKind[],
  context: BenchContext,
  pcscd: PrivatePcscd,
  measure: (kind: CardKind) => Promise<number>,
  optional: { kinds: readonly CardKind[]; failures: Map<CardKind, string> } = { kinds: [], failures: new Map() },
): Promise<Map<CardKind, number[]>> {
  const results = new Map<CardKind, number[]>(kinds.map((kind) => [kind, []]));
  for (let round = 0; round < context.rounds; round++) {
    for (const kind of kinds) {
      if (optional.failures.has(kind)) continue;
      const card = startCard(kind, context, pcscd);
      try {
        await waitForCard(context, pcscd, kind, card);
        results.get(kind)!.push(await measure(kind));
      } catch (error) {
        if (!optional.kinds.includes(kind)) throw error;
        optional.failures.set(kind, error instanceof Error ? error.message : String(error));
      } finally {
        await card.stop();
      }
    }
  }
  return results;
}

/** Turns a row into one without a target: shown with its ratio and `note`, never met or missed. */
function informative(row: BenchRow, note: string): BenchRow {
  return { ...row, target: 'informative', met: undefined, note };
}

function ratioRow(
  name: string,
  values: Map<CardKind, number[]>,
  subject: CardKind,
  reference: CardKind,
  target: number,
  higherIsBetter: boolean,
  command: string,
): BenchRow {
  const subjectValues = values.get(subject)!;
  const referenceValues = values.get(reference)!;
  const ratio = median(subjectValues.map((value, index) => value / referenceValues[index]!));
  return {
    name,
    virtcard: median(subjectValues),
    reference: median(referenceValues),
    ratio,
    target: `${higherIsBetter ? '≥' : '≤'} ${target.toFixed(2)}×`,
    met: higherIsBetter ? ratio >= target : ratio <= target,
    command,
  };
}

/** Groups of rows that `runPcscRows` can run on their own (`npm run bench -- --only NAME`). */
export const PCSC_ROW_GROUPS = ['vpcd', 'pkcs11-tool', 'sign'] as const;
export type PcscRowGroup = (typeof PCSC_ROW_GROUPS)[number];

/** Measures APDU round trips per second through vpcd for every card kind. */
async function roundTripRows(context: BenchContext, pcscd: PrivatePcscd): Promise<BenchRow[]> {
  const apdu = toHex(SELECT_PKI_APDU);
  const cardFailures = new Map<CardKind, string>();
  const roundTrips = await interleave(
    ['echo', 'virtcard', 'libcacard', 'minimal-echo', 'vicc'],
    context,
    pcscd,
    async () => {
      const result = await runCommand(context.pcscLoop, [VPCD_READER, String(context.seconds), apdu], { env: pcscd.env });
      return parseRate(result.stdout, 'pcsc-loop');
    },
    { kinds: ['vicc'], failures: cardFailures },
  );
  const viccProblem = cardFailures.get('vicc');
  const loopCommand = `pcsc-loop "${VPCD_READER}" ${context.seconds} ${apdu}`;

  const viccRow: BenchRow =
    viccProblem === undefined
      ? informative(
          ratioRow('vpcd round trips/s, virtcard echo card (reference: vsmartcard vicc)', roundTrips, 'echo', 'vicc', 1.0, true, loopCommand),
          'informative: vicc --type iso7816',
        )
      : {
          name: 'vpcd round trips/s, vsmartcard vicc',
          virtcard: undefined,
          reference: undefined,
          ratio: undefined,
          target: 'informative',
          met: undefined,
          command: 'vicc --type iso7816',
          note: `not measured: ${viccProblem}`,
        };
  return [
    ratioRow('vpcd round trips/s, virtcard CAC card (reference: echo card)', roundTrips, 'virtcard', 'echo', 0.95, true, loopCommand),
    ratioRow('vpcd round trips/s, virtcard CAC card (reference: libcacard card)', roundTrips, 'virtcard', 'libcacard', 1.0, true, loopCommand),
    informative(
      ratioRow('vpcd round trips/s, virtcard CAC card (reference: minimal Node.js echo card)', roundTrips, 'virtcard', 'minimal-echo', 1.0, true, loopCommand),
      'informative: the reference runs no reader and no card engine',
    ),
    informative(
      ratioRow('vpcd round trips/s, minimal Node.js echo card (reference: libcacard card)', roundTrips, 'minimal-echo', 'libcacard', 1.0, true, loopCommand),
      'informative: the floor of a Node.js card behind vpcd',
    ),
    viccRow,
  ];
}

/**
 * Times `pkcs11-tool -O` against virtcard's card and libcacard's. The first
 * run after the card starts meets cold code (V8 compiles virtcard's card
 * lazily), so each round times one cold run and then the median of three
 * warm runs. A third card replays virtcard's recorded responses on a minimal
 * Node.js transport: the time any Node.js card needs behind vpcd.
 */
async function listObjectsRows(context: BenchContext, pcscd: PrivatePcscd, clientEnv: NodeJS.ProcessEnv): Promise<BenchRow[]> {
  const listObjectsOnce = async (): Promise<number> => {
    const result = await runCommand('pkcs11-tool', ['--module', OPENSC_MODULE, '-O'], { env: clientEnv });
    const certificates = result.stdout.match(/^Certificate Object/gm)?.length ?? 0;
    if (certificates !== 3) throw new Error(`pkcs11-tool -O listed ${certificates} certificates instead of 3:\n${result.stdout}${result.stderr}`);
    return result.seconds;
  };
  // Record a cold and a warm run, so the replay card has the responses to both.
  const recorder = startCard('virtcard', context, pcscd, { VIRTCARD_BENCH_RECORD: recordingFile(context) });
  try {
    await waitForCard(context, pcscd, 'virtcard', recorder);
    await listObjectsOnce();
    await listObjectsOnce();
  } finally {
    await recorder.stop();
  }
  if (!existsSync(recordingFile(context))) {
    throw new Error(`virtcard's card wrote no recording to ${recordingFile(context)}: ${recorder.stderr().trim()}`);
  }

  const kinds: CardKind[] = ['virtcard', 'libcacard', 'replay'];
  const warmListObjects = new Map<CardKind, number[]>(kinds.map((kind) => [kind, []]));
  const coldListObjects = await interleave(kinds, context, pcscd, async (kind) => {
    const cold = await listObjectsOnce();
    const warm = [await listObjectsOnce(), await listObjectsOnce(), await listObjectsOnce()];
    warmListObjects.get(kind)!.push(median(warm));
    return cold;
  });

  return [
    ratioRow(
      'pkcs11-tool -O wall time, s, first run after the card starts (reference: libcacard card)',
      coldListObjects,
      'virtcard',
      'libcacard',
      1.0,
      false,
      'pkcs11-tool --module opensc-pkcs11.so -O',
    ),
    ratioRow(
      'pkcs11-tool -O wall time, s, later runs (reference: libcacard card)',
      warmListObjects,
      'virtcard',
      'libcacard',
      1.0,
      false,
      'pkcs11-tool --module opensc-pkcs11.so -O',
    ),
    informative(
      ratioRow(
        'pkcs11-tool -O wall time, s, first run after the card starts (reference: Node.js card replaying virtcard\'s responses)',
        coldListObjects,
        'virtcard',
        'replay',
        1.0,
        false,
        'pkcs11-tool --module opensc-pkcs11.so -O',
      ),
      'informative: the reference runs no card engine',
    ),
    informative(
      ratioRow(
        'pkcs11-tool -O wall time, s, later runs (reference: Node.js card replaying virtcard\'s responses)',
        warmListObjects,
        'virtcard',
        'replay',
        1.0,
        false,
        'pkcs11-tool --module opensc-pkcs11.so -O',
      ),
      'informative: the reference runs no card engine',
    ),
    informative(
      ratioRow(
        'pkcs11-tool -O wall time, s, later runs, Node.js replay card (reference: libcacard card)',
        warmListObjects,
        'replay',
        'libcacard',
        1.0,
        false,
        'pkcs11-tool --module opensc-pkcs11.so -O',
      ),
      'informative: the floor of a Node.js card behind vpcd',
    ),
  ];
}

/** Measures RSA-2048 signatures per second through OpenSC's PKCS#11 module. */
async function signatureRows(context: BenchContext, pcscd: PrivatePcscd, clientEnv: NodeJS.ProcessEnv): Promise<BenchRow[]> {
  const signLoop = path.join(context.scriptFolder, 'pkcs11-sign-loop.js');
  const signatures = await interleave(['virtcard-files', 'virtcard', 'libcacard'], context, pcscd, async () => {
    const result = await runCommand(process.execPath, [signLoop, String(context.seconds * 2), OPENSC_MODULE], {
      env: { ...clientEnv, VIRTCARD_BENCH_PIN: context.pin },
    });
    return parseRate(result.stdout, 'pkcs11-sign-loop');
  });

  return [
    ratioRow(
      'RSA-2048 signatures/s via OpenSC PKCS#11, virtcard on PEM key files (reference: libcacard card on NSS)',
      signatures,
      'virtcard-files',
      'libcacard',
      10,
      true,
      `node dist/bench-bundle/pkcs11-sign-loop.js ${context.seconds * 2}`,
    ),
    {
      ...ratioRow(
        'RSA-2048 signatures/s via OpenSC PKCS#11, virtcard on NSS (reference: libcacard card on NSS)',
        signatures,
        'virtcard',
        'libcacard',
        1,
        true,
        `node dist/bench-bundle/pkcs11-sign-loop.js ${context.seconds * 2}`,
      ),
      target: 'informative',
      met: undefined,
      note: 'informative: both cards sign through NSS softokn',
    },
  ];
}

/** Runs the row groups in `groups` (all by default) against one private pcscd, in table order. */
export async function runPcscRows(context: BenchContext, groups: ReadonlySet<PcscRowGroup> = new Set(PCSC_ROW_GROUPS)): Promise<BenchRow[]> {
  const pcscd = await startPrivatePcscd();
  // OpenSC's file cache would let later pkcs11-tool runs skip the card, so turn it off.
  const openscConfig = path.join(context.workFolder, 'opensc.conf');
  writeFileSync(openscConfig, 'app default {\n  framework pkcs15 {\n    use_file_caching = no;\n  }\n}\n');
  const clientEnv = { ...pcscd.env, OPENSC_CONF: openscConfig };

  try {
    const rows: BenchRow[] = [];
    if (groups.has('vpcd')) rows.push(...(await roundTripRows(context, pcscd)));
    if (groups.has('pkcs11-tool')) rows.push(...(await listObjectsRows(context, pcscd, clientEnv)));
    if (groups.has('sign')) rows.push(...(await signatureRows(context, pcscd, clientEnv)));
    return rows;
  } finally {
    await pcscd.stop();
  }
}
