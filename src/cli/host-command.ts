/**
 * `virtcard host`: the QEMU ccid-card-passthru side as a server. VSCard
 * clients (virtcard client, vscclient) connect to --listen; each client's
 * reader goes into the next free export (--usbredir for a QEMU guest,
 * --vpcd for the host's pcscd), one client per export. A client that finds
 * no free export gets VSC_CANNOT_ADD_MORE_READERS. Runs until SIGINT or SIGTERM.
 */
import { Command } from 'commander';
import { PASSTHRU_DEFAULT_ATR } from '../ccid/constants.js';
import { ReaderSlot } from '../host/reader-slot.js';
import { logger, setLogLevel } from '../log/logger.js';
import { VscServer } from '../vscard/server.js';
import { waitForStopSignal } from './emulated-command.js';
import { addExportOptions, isLoopback, parseEndpoint, startExports, type Endpoint, type ExportOptions, type RunningExports } from './export-options.js';

const log = logger.child({ component: 'cli' });

interface HostCommandOptions extends ExportOptions {
  listen: Endpoint;
  verbose?: boolean;
}

/** Starts the VSCard server and the exports, and runs until a stop signal arrives. */
export async function runHost(options: HostCommandOptions): Promise<void> {
  if (options.verbose) setLogLevel('debug');
  const stopSignal = waitForStopSignal();

  if (!isLoopback(options.listen.host)) {
    log.warn(
      { address: options.listen.host },
      'VSCard has no authentication: anyone who can reach this address can insert a card into the exported readers',
    );
  }

  // One slot per export, so each client's reader goes to exactly one guest or pcscd.
  const slots: ReaderSlot[] = [];
  const running: RunningExports[] = [];
  try {
    for (const endpoint of options.usbredir) {
      const slot = new ReaderSlot(`usbredir ${endpoint.host}:${endpoint.port}`);
      running.push(await startExports(slot, { usbredir: [endpoint], vpcd: [] }, { initialAtr: PASSTHRU_DEFAULT_ATR }));
      slots.push(slot);
    }
    for (const endpoint of options.usbip ?? []) {
      const slot = new ReaderSlot(`usbip ${endpoint.host}:${endpoint.port}`);
      running.push(await startExports(slot, { usbredir: [], usbip: [endpoint], vpcd: [] }, { initialAtr: PASSTHRU_DEFAULT_ATR }));
      slots.push(slot);
    }
    for (const endpoint of options.vpcd) {
      const slot = new ReaderSlot(`vpcd ${endpoint.host}:${endpoint.port}`);
      running.push(await startExports(slot, { usbredir: [], vpcd: [endpoint] }));
      slots.push(slot);
    }
    if (slots.length === 0) log.warn('no --usbredir, --usbip or --vpcd given: client readers are accepted but not exported anywhere');

    const server = new VscServer({
      host: options.listen.host,
      port: options.listen.port,
      acceptReader: (reader) => {
        if (slots.length === 0) return true;
        const slot = slots.find((candidate) => candidate.plugged === undefined);
        if (slot === undefined) return false;
        slot.plug(reader);
        log.info({ reader: reader.name, export: slot.name }, 'client reader exported');
        return true;
      },
    });
    await server.listen();

    const signal = await stopSignal;
    log.info({ signal }, 'stopping');
    await server.close();
  } finally {
    for (const exports of running) await exports.stop();
  }
}

/** Builds the `host` subcommand. */
export function hostCommand(): Command {
  const command = new Command('host')
    .description('accept VSCard clients like QEMU ccid-card-passthru and export their cards with --usbredir or --vpcd')
    .requiredOption('--listen <addr:port>', 'address for VSCard clients: ADDR:PORT, [IPv6]:PORT, or PORT on 127.0.0.1', parseEndpoint)
    .option('-v, --verbose', 'log every VSCard message and USB step');
  addExportOptions(command);
  return command.action(async (options: HostCommandOptions) => {
    await runHost(options);
  });
}
