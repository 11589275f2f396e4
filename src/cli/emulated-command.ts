/**
 * `virtcard emulated`: the equivalent of QEMU's ccid-card-emulated. It
 * builds a CAC card from the identity options (or a PIV card with
 * `--card piv`), puts it into a CCID reader and exports it with --usbredir,
 * --usbip and/or --vpcd until SIGINT or SIGTERM.
 * The commands `remove` and `insert` on stdin take the card out of the
 * reader and put it back.
 */
import readline from 'node:readline';
import type { Readable } from 'node:stream';
import { Command } from 'commander';
import { createCacCard, EmulatedReader, warmUpCacCard } from '../cac/index.js';
import { logger, setLogLevel } from '../log/logger.js';
import { addCacCardFormatOptions, cacCardFormat, checkCacCardFormat, type CacCardFormatOptions } from './cac-card-options.js';
import { addCardTypeOptions, openCard, type CardTypeOptions } from './card-type-options.js';
import { addExportOptions, startExports, type ExportOptions } from './export-options.js';
import { addIdentityOptions, openIdentity, type IdentityOptions } from './identity-options.js';

const log = logger.child({ component: 'cli' });

/** Reader name of the card inside virtcard, followed by the card kind: "virtcard CAC" or "virtcard PIV". */
const READER_NAME_PREFIX = 'virtcard';

const STDIN_HELP = `Commands on stdin (one per line):
  remove   take the card out of the reader; the guest sees an empty slot
  insert   put the card back (it restarts in its power-on state, PIN not verified)`;

interface EmulatedCommandOptions extends IdentityOptions, ExportOptions, CacCardFormatOptions, CardTypeOptions {
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

/**
 * Reads `remove` and `insert` lines from `input` and applies them to
 * `reader`, writing the outcome to `write`. The end of input leaves the card
 * as it is, so stdin may be closed or /dev/null.
 */
export function startCardConsole(input: Readable, reader: EmulatedReader, write: (text: string) => void): readline.Interface {
  const card = reader.insertedCard;
  const lines = readline.createInterface({ input, terminal: false });
  lines.on('line', (line) => {
    const command = line.trim();
    if (command === '') return;
    if (command === 'remove') {
      const present = reader.insertedCard !== undefined;
      reader.remove();
      write(present ? `remove ${reader.name}: card removed\n` : `remove ${reader.name}: no card to remove\n`);
    } else if (command === 'insert') {
      if (reader.insertedCard !== undefined || card === undefined) {
        write(`insert ${reader.name}: a card is already present\n`);
        return;
      }
      reader.insert(card);
      write(`insert ${reader.name}: card inserted\n`);
    } else if (command === 'help') {
      write(`${STDIN_HELP}\n`);
    } else {
      write(`unknown command "${command}"\n${STDIN_HELP}\n`);
    }
  });
  return lines;
}

/** Opens the identity or PIV state file, builds the card and exports it until a stop signal arrives. */
export async function runEmulated(options: EmulatedCommandOptions): Promise<void> {
  if (options.verbose) setLogLevel('debug');
  if (options.usbredir.length === 0 && (options.usbip ?? []).length === 0 && options.vpcd.length === 0) {
    throw new Error('no export given: add --usbredir ADDR:PORT for QEMU, --usbip ADDR:PORT for a USB/IP client or --vpcd ADDR:PORT for pcscd');
  }

  checkCacCardFormat(options.card === 'piv' ? 'PIV' : 'CAC', options);
  const stopSignal = waitForStopSignal();
  const cacOptions = { pinRetries: options.pinRetries, ...cacCardFormat(options) };
  const opened = await openCard(
    options,
    async () => ({ store: await openIdentity(options) }),
    (store) => {
      // A throwaway card runs the commands OpenSC reads a CAC card with, so the first client meets compiled code.
      void warmUpCacCard(createCacCard(store, cacOptions), store.slots.length);
      return createCacCard(store, cacOptions);
    },
  );
  try {
    checkCacCardFormat(opened.kind, options);
    opened.card.reset();
    const reader = new EmulatedReader(`${READER_NAME_PREFIX} ${opened.kind}`, opened.card);
    log.info(
      {
        pinRetries: options.pinRetries,
        ...opened.summary,
        ...(opened.kind === 'CAC' ? { certificateCompression: options.certCompression } : {}),
      },
      `${opened.kind} card ready`,
    );
    const exports = await startExports(reader, options);
    const cardConsole = startCardConsole(process.stdin, reader, (text) => process.stdout.write(text));
    const signal = await stopSignal;
    log.info({ signal }, 'stopping');
    cardConsole.close();
    await exports.stop();
  } finally {
    // Reading stdin keeps the event loop alive; release it so the process can exit.
    process.stdin.destroy();
    await opened.close();
  }
}

/** Builds the `emulated` subcommand. */
export function emulatedCommand(): Command {
  const command = new Command('emulated')
    .description('serve a virtual CAC or PIV card in a CCID reader to QEMU (usbredir), a USB/IP client or pcscd (vpcd) until SIGINT or SIGTERM')
    .option('-v, --verbose', 'log every USB and CCID step')
    .addHelpText('after', `\n${STDIN_HELP}`);
  addExportOptions(command);
  addIdentityOptions(command);
  addCacCardFormatOptions(command);
  addCardTypeOptions(command);
  return command.action(async (options: EmulatedCommandOptions) => {
    await runEmulated(options);
  });
}
