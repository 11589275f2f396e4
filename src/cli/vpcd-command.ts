/**
 * `virtcard vpcd`: serves the emulated CAC card to the host's pcscd through
 * vsmartcard's vpcd reader driver until SIGINT or SIGTERM.
 */
import { Command, InvalidArgumentError } from 'commander';
import { createCacCard } from '../cac/index.js';
import { EmulatedReader } from '../card/emulated-reader.js';
import { logger, setLogLevel } from '../log/logger.js';
import { VPCD_DEFAULT_HOST, VPCD_DEFAULT_PORT, VpcdCard } from '../transports/vpcd.js';
import { addCacCardFormatOptions, cacCardFormat, checkCacCardFormat, type CacCardFormatOptions } from './cac-card-options.js';
import { addCardTypeOptions, openCard, type CardTypeOptions } from './card-type-options.js';
import { addIdentityOptions, openIdentity, type IdentityOptions } from './identity-options.js';

const log = logger.child({ component: 'cli' });

/** Reader name the card carries inside virtcard; pcscd shows vpcd's own name ("Virtual PCD 00 00"). */
const READER_NAME = 'virtcard CAC';

interface VpcdCommandOptions extends IdentityOptions, CacCardFormatOptions, CardTypeOptions {
  host: string;
  port: number;
  verbose?: boolean;
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidArgumentError(`invalid TCP port "${value}": use a whole number from 1 to 65535.`);
  }
  return port;
}

/** Resolves with the name of the first of SIGINT or SIGTERM the process receives. */
function waitForStopSignal(): Promise<NodeJS.Signals> {
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

/** Opens the identity, builds the CAC card and serves it to vpcd until a stop signal arrives. */
export async function runVpcd(options: VpcdCommandOptions): Promise<void> {
  if (options.verbose) setLogLevel('debug');

  checkCacCardFormat(options.card === 'piv' ? 'PIV' : 'CAC', options);
  // Listen for signals before the slow start-up, so an early Ctrl-C still shuts down cleanly.
  const stopSignal = waitForStopSignal();
  const opened = await openCard(
    options,
    async () => ({ store: await openIdentity(options) }),
    (store) => createCacCard(store, { pinRetries: options.pinRetries, ...cacCardFormat(options) }),
  );
  try {
    checkCacCardFormat(opened.kind, options);
    const reader = new EmulatedReader(READER_NAME, opened.card);
    log.info(
      {
        pinRetries: options.pinRetries,
        ...opened.summary,
        ...(opened.kind === 'CAC' ? { certificateCompression: options.certCompression } : {}),
      },
      `${opened.kind} card ready`,
    );

    const vpcd = new VpcdCard(reader, { host: options.host, port: options.port });
    vpcd.start();
    const signal = await stopSignal;
    log.info({ signal }, 'stopping');
    await vpcd.stop();
  } finally {
    await opened.close();
  }
}

/** Builds the `vpcd` subcommand. */
export function vpcdCommand(): Command {
  const command = new Command('vpcd')
    .description('serve a virtual CAC or PIV card to pcscd through vsmartcard vpcd until SIGINT or SIGTERM')
    .option('--host <host>', 'host where vpcd listens', VPCD_DEFAULT_HOST)
    .option('--port <port>', 'TCP port of the vpcd reader (35963 + reader number)', parsePort, VPCD_DEFAULT_PORT)
    .option('-v, --verbose', 'log connection retries and the header and status word of every APDU');
  addIdentityOptions(command);
  addCacCardFormatOptions(command);
  addCardTypeOptions(command);
  return command.action(async (options: VpcdCommandOptions) => {
    await runVpcd(options);
  });
}
