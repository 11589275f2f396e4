/**
 * `virtcard client`: the vscclient replacement. It connects to QEMU's
 * ccid-card-passthru socket and serves the emulated CAC (or PIV) card to the guest,
 * accepting vscclient's command line unchanged
 * (`[-c CERTNAME]... [-e EMULATOR_OPTIONS] [-d LEVEL] HOST PORT`) as well as
 * virtcard's identity options.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { createCacCard, EmulatedReader } from '../cac/index.js';
import { logger, setLogLevel } from '../log/logger.js';
import { armTcpQuickAck } from '../transports/tcp-quickack.js';
import { VscClient } from '../vscard/client-connection.js';
import { MESSAGE_TRACE_LEVEL } from '../vscard/client-session.js';
import { CONSOLE_HELP, startConsole } from './client-console.js';
import { addPcscOptions, runPcscRelay, wantsPcscRelay, type PcscCommandOptions } from './client-pcsc.js';
import { DEFAULT_CLIENT_READER_NAME, openClientIdentity, type ClientIdentityOptions } from './client-identity.js';
import { addCacCardFormatOptions, cacCardFormat, checkCacCardFormat, type CacCardFormatOptions } from './cac-card-options.js';
import {
  addCardTypeOptions,
  checkPcscRelayCardOptions,
  checkVscclientCardOptions,
  openCard,
  type CardTypeOptions,
} from './card-type-options.js';
import { addIdentityOptions } from './identity-options.js';
import { EMULATOR_OPTIONS_HELP } from './libcacard-options.js';

const log = logger.child({ component: 'client' });

interface ClientCommandOptions
  extends ClientIdentityOptions,
    CacCardFormatOptions,
    CardTypeOptions,
    Omit<PcscCommandOptions, 'e' | 'c' | 'p'> {
  d?: number;
  p?: boolean;
  trace?: boolean;
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port < 1 || port > 65535) {
    throw new InvalidArgumentError(`invalid TCP port "${value}": use a whole number from 1 to 65535.`);
  }
  return port;
}

/** Parses `-d` as vscclient does: a number, and anything else means 1. */
function parseDebugLevel(value: string): number {
  return /^\d+$/.test(value) ? Number(value) : 1;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Resolves with the first of SIGINT or SIGTERM, or when `exit` is typed. */
function stopRequest(): { promise: Promise<string>; request: (reason: string) => void } {
  let request: (reason: string) => void = () => undefined;
  const promise = new Promise<string>((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => request(signal);
    request = (reason) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(reason);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  return { promise, request };
}

/** Opens the identity, builds the card and serves it to QEMU until a stop signal or `exit`. */
export async function runClient(host: string, port: number, options: ClientCommandOptions): Promise<void> {
  if (wantsPcscRelay(options)) {
    checkPcscRelayCardOptions(options);
    await runPcscRelay(host, port, options, stopRequest().promise);
    return;
  }
  let debugLevel = options.d ?? (options.trace ? 1 : 0);
  if (debugLevel >= MESSAGE_TRACE_LEVEL) setLogLevel('debug');

  checkCacCardFormat(options.card === 'piv' ? 'PIV' : 'CAC', options);
  checkVscclientCardOptions(options);

  // Listen for signals before the slow start-up, so an early Ctrl-C still shuts down cleanly.
  const stop = stopRequest();
  let readerName = options.readerName ?? DEFAULT_CLIENT_READER_NAME;
  const opened = await openCard(
    options,
    async () => {
      const identity = await openClientIdentity(options);
      readerName = identity.readerName;
      return identity;
    },
    (store) => createCacCard(store, { pinRetries: options.pinRetries, ...cacCardFormat(options) }),
  );
  try {
    // A soft=(…,PIV,…) card of -e is known only now.
    checkCacCardFormat(opened.kind, options);
    const card = opened.card;
    card.reset();
    const reader = new EmulatedReader(readerName, card);
    log.info(
      {
        pinRetries: options.pinRetries,
        ...opened.summary,
        reader: readerName,
        ...(opened.kind === 'CAC' ? { certificateCompression: options.certCompression } : {}),
      },
      `${opened.kind} card ready`,
    );

    const client = new VscClient({
      host,
      port,
      reader,
      trace: { level: () => debugLevel, write: (line) => process.stdout.write(`${line}\n`) },
      onSocketActivity: (socket) => armTcpQuickAck(socket),
    });
    client.start();

    startConsole(
      process.stdin,
      {
        readerName,
        readerActive: () => client.currentSession?.assignedReaderId !== undefined,
        cardPresent: () => reader.insertedCard !== undefined,
        insertCard: () => {
          if (reader.insertedCard !== undefined) return false;
          reader.insert(card);
          return true;
        },
        removeCard: () => {
          if (reader.insertedCard === undefined) return false;
          reader.remove();
          return true;
        },
        debugLevel: () => debugLevel,
        setDebugLevel: (level) => {
          debugLevel = level;
          if (level >= MESSAGE_TRACE_LEVEL) setLogLevel('debug');
        },
        exit: () => {
          stop.request('exit command');
          return Promise.resolve();
        },
      },
      (text) => process.stdout.write(text),
      process.stdin.isTTY === true,
    );

    const reason = await stop.promise;
    log.info({ reason }, 'stopping: removing the card and reader from QEMU');
    await client.stop();
  } finally {
    await opened.close();
    // The console keeps stdin open; release it so the process can exit.
    process.stdin.destroy();
  }
}

/** Builds the `client` subcommand. */
export function clientCommand(): Command {
  const command = new Command('client')
    .description("connect to QEMU's ccid-card-passthru socket and serve a virtual CAC or PIV card to the guest (vscclient replacement)")
    .usage('[options] HOST PORT')
    .argument('<host>', 'host of the ccid-card-passthru socket chardev, e.g. 127.0.0.1')
    .argument('<port>', 'TCP port of the chardev', parsePort)
    .option('-e <emul_args>', 'emulator options in libcacard syntax (see below), as for vscclient')
    .option('-c <certname>', 'NSS certificate nickname for a card applet, as for vscclient; repeatable', collect, [])
    .addOption(new Option('-d <level>', 'trace level: 1 prints every APDU and status word, 11 also every VSCard message').argParser(parseDebugLevel))
    .option('--trace', 'print every APDU and status word decoded (same as -d 1); PINs and private-key results are masked')
    .option('-p', "relay the card of the host's first PC/SC reader; vscclient's -p also sends that card's answers to the guest")
    .option('--reader-name <name>', 'reader name announced to QEMU (default: the soft=(…) reader name or "virtcard CAC")');
  addIdentityOptions(command);
  addCacCardFormatOptions(command);
  addCardTypeOptions(command);
  addPcscOptions(command);
  command.addHelpText(
    'after',
    `
Without -e, -c or identity options the card uses the built-in test identity.
With -e/-c, the NSS database password is the card PIN; the client reads it
from --pin-file or VIRTCARD_PIN only to check it at start.

${EMULATOR_OPTIONS_HELP}

${CONSOLE_HELP}

The client retries until QEMU listens, reconnects when QEMU restarts, and on
SIGINT, SIGTERM or exit removes the card and the reader from the guest.

Example:
  qemu-system-x86_64 ... -device usb-ccid -device ccid-card-passthru,chardev=ccid \\
    -chardev socket,id=ccid,host=127.0.0.1,port=2001,server=on,wait=off
  virtcard client -e 'db="sql:/path/nssdb" use_hw=no soft=(,Test,CAC,,id-cert,signing-cert,encryption-cert)' 127.0.0.1 2001`,
  );
  return command.action(async (host: string, port: number, options: ClientCommandOptions) => {
    await runClient(host, port, options);
  });
}
