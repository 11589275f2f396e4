/**
 * `virtcard emulated`: the equivalent of QEMU's ccid-card-emulated. It
 * builds a CAC card from the identity options, puts it into a CCID reader
 * and exports it with --usbredir and/or --vpcd until SIGINT or SIGTERM.
 */
import { Command } from 'commander';
import { createCacReader } from '../cac/index.js';
import { logger, setLogLevel } from '../log/logger.js';
import { addCacCardFormatOptions, cacCardFormat, type CacCardFormatOptions } from './cac-card-options.js';
import { addExportOptions, startExports, type ExportOptions } from './export-options.js';
import { addIdentityOptions, openIdentity, type IdentityOptions } from './identity-options.js';

const log = logger.child({ component: 'cli' });

const READER_NAME = 'virtcard CAC';

interface EmulatedCommandOptions extends IdentityOptions, ExportOptions, CacCardFormatOptions {
  verbose?: boolean;
}

/** Resolves with the name of the first of SIGINT or SIGTERM the process receives. */
export function waitForStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/** Opens the identity, builds the CAC card and exports it until a stop signal arrives. */
export async function runEmulated(options: EmulatedCommandOptions): Promise<void> {
  if (options.verbose) setLogLevel('debug');
  if (options.usbredir.length === 0 && (options.usbip ?? []).length === 0 && options.vpcd.length === 0) {
    throw new Error('no export given: add --usbredir ADDR:PORT for QEMU, --usbip ADDR:PORT for a USB/IP client or --vpcd ADDR:PORT for pcscd');
  }

  const stopSignal = waitForStopSignal();
  const store = await openIdentity(options);
  try {
    const reader = createCacReader(READER_NAME, store, { pinRetries: options.pinRetries, ...cacCardFormat(options) });
    log.info(
      { keys: store.description, certificates: store.slots.map((slot) => slot.label), certificateCompression: options.certCompression },
      'CAC card ready',
    );
    const exports = await startExports(reader, options);
    const signal = await stopSignal;
    log.info({ signal }, 'stopping');
    await exports.stop();
  } finally {
    await store.close();
  }
}

/** Builds the `emulated` subcommand. */
export function emulatedCommand(): Command {
  const command = new Command('emulated')
    .description('serve a virtual CAC card in a CCID reader to QEMU (usbredir) or pcscd (vpcd) until SIGINT or SIGTERM')
    .option('-v, --verbose', 'log every USB and CCID step');
  addExportOptions(command);
  addIdentityOptions(command);
  addCacCardFormatOptions(command);
  return command.action(async (options: EmulatedCommandOptions) => {
    await runEmulated(options);
  });
}
