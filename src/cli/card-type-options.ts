/**
 * Command-line options that choose the card type (`--card cac|piv`) and,
 * for a PIV card, its encrypted state file. Commands that build a card add
 * them with `addCardTypeOptions` and build the card with `openCard`.
 *
 * The state file passphrase never appears on the command line: it comes from
 * `--piv-passphrase-file` or from the VIRTCARD_PIV_PASSPHRASE variable.
 */
import { Option, type Command } from 'commander';
import type { KeyStore } from '../backends/key-store.js';
import type { VirtualCard } from '../card/virtual-card.js';
import { logger } from '../log/logger.js';
import { createDefaultCardState, createPivCard, PivStateFile } from '../piv/index.js';
import { identityOptionsInUse } from './client-identity.js';
import { IdentityOptionsError, readSecretFile, type IdentityOptions } from './identity-options.js';

const log = logger.child({ component: 'cli' });

/** Environment variable that carries the PIV state file passphrase when no --piv-passphrase-file is given. */
export const PIV_PASSPHRASE_VARIABLE = 'VIRTCARD_PIV_PASSPHRASE';

export const CARD_TYPES = ['cac', 'piv'] as const;
export type CardType = (typeof CARD_TYPES)[number];

/** The card type options as commander stores them after parsing. */
export interface CardTypeOptions {
  card: CardType;
  pivState?: string;
  pivPassphraseFile?: string;
}

/** Adds the card type options to `command` and returns it. */
export function addCardTypeOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--card <type>', 'card type: cac (the virtual CAC card of libcacard) or piv (a NIST SP 800-73-4 PIV card)')
        .choices(CARD_TYPES)
        .default('cac'),
    )
    .option(
      '--piv-state <file>',
      'PIV card state file (keys, certificates, PIN, PUK), encrypted with the passphrase; created when missing; needs --card piv',
    )
    .option('--piv-passphrase-file <file>', `file whose first line is the passphrase of --piv-state (default: $${PIV_PASSPHRASE_VARIABLE})`);
}

/** A built card and what to do when the command stops. */
export interface OpenedCard {
  readonly card: VirtualCard;
  /** "CAC" or "PIV", for logs. */
  readonly kind: string;
  /** Fields for the "card ready" log line; never secrets. */
  readonly summary: Record<string, unknown>;
  /** The key store behind the card, if any. */
  readonly store?: KeyStore;
  close(): Promise<void>;
}

/** Raises `IdentityOptionsError` for card type options that do not fit together. */
export function checkCardTypeOptions(options: CardTypeOptions & IdentityOptions): void {
  if (options.card !== 'piv' && (options.pivState !== undefined || options.pivPassphraseFile !== undefined)) {
    throw new IdentityOptionsError('--piv-state and --piv-passphrase-file are for PIV cards; add --card piv');
  }
  if (options.pivState !== undefined) {
    const mixed = identityOptionsInUse(options);
    if (mixed.length > 0) {
      throw new IdentityOptionsError(
        `--piv-state keeps its own keys, so ${mixed.join(', ')} cannot fill its slots; drop them, or drop --piv-state to serve those keys in slots 9A, 9C and 9D`,
      );
    }
  }
}

/** vscclient's identity options of `virtcard client`: an NSS soft card (`-e soft=(…)`, `-c`) or the PC/SC relay (`-e use_hw=yes`). */
export interface VscclientIdentityOptions {
  e?: string;
  c: string[];
}

/**
 * Raises `IdentityOptionsError` when vscclient's -e or -c come with
 * --piv-state. The state file card has keys of its own, so the NSS
 * certificates those options name would be ignored.
 */
export function checkVscclientCardOptions(options: CardTypeOptions & VscclientIdentityOptions): void {
  if (options.pivState === undefined) return;
  const conflicting = [options.e !== undefined ? '-e' : undefined, options.c.length > 0 ? '-c' : undefined].filter(
    (name): name is string => name !== undefined,
  );
  if (conflicting.length === 0) return;
  const names = conflicting.join(' and ');
  throw new IdentityOptionsError(
    `--piv-state keeps its own keys, so the NSS identity of ${names} cannot fill its slots; ` +
      `drop ${names} to serve the state file card, or drop --piv-state and --piv-passphrase-file to serve the NSS certificates ` +
      '(soft=(,READER,PIV,,CERT1,CERT2,CERT3) in -e puts them on a PIV card)',
  );
}

/**
 * Raises `IdentityOptionsError` when the PC/SC relay (--pcsc, -p, or -e
 * requesting hardware cards) comes with --card piv or the PIV state options.
 * The relay passes the host's physical cards through and builds no card.
 */
export function checkPcscRelayCardOptions(options: CardTypeOptions): void {
  const conflicting = [
    options.card === 'piv' ? '--card piv' : undefined,
    options.pivState !== undefined ? '--piv-state' : undefined,
    options.pivPassphraseFile !== undefined ? '--piv-passphrase-file' : undefined,
  ].filter((name): name is string => name !== undefined);
  if (conflicting.length === 0) return;
  const names = conflicting.join(', ');
  throw new IdentityOptionsError(
    `the PC/SC relay (--pcsc, -p, or -e with use_hw=yes and no soft=(…) card) passes the host's physical cards through, ` +
      `so ${names} has no card to build; drop ${names}, or drop the relay options to serve an emulated card`,
  );
}

async function readPassphrase(options: CardTypeOptions): Promise<string> {
  if (options.pivPassphraseFile !== undefined) return readSecretFile(options.pivPassphraseFile, 'PIV state passphrase');
  const fromEnvironment = process.env[PIV_PASSPHRASE_VARIABLE];
  if (fromEnvironment === undefined || fromEnvironment === '') {
    throw new IdentityOptionsError(
      `--piv-state needs a passphrase: put it in a file and add --piv-passphrase-file FILE, or set ${PIV_PASSPHRASE_VARIABLE}`,
    );
  }
  return fromEnvironment;
}

/** Opens (or creates) the PIV state file and builds the card on it. */
async function openPivStateCard(path: string, options: CardTypeOptions): Promise<OpenedCard> {
  const passphrase = await readPassphrase(options);
  const { file, state, created } = await PivStateFile.open(path, passphrase, createDefaultCardState);
  if (created) {
    process.stderr.write(
      `virtcard: created PIV card state ${path} with PIN 123456, PUK 12345678 and the default management key; change them when you provision the card\n`,
    );
  }
  const card = createPivCard({ state, sink: file });
  return {
    card,
    kind: 'PIV',
    summary: {
      stateFile: path,
      slots: [...state.keys.keys()].map((reference) => reference.toString(16)),
      pinRetries: state.pin.maxRetries,
    },
    close: () => Promise.resolve(),
  };
}

/**
 * Builds the card the options choose: a PIV card on its state file, or a
 * card on the key store that `openStore` opens (CAC with `createCac`, PIV
 * with the store's keys in 9A, 9C and 9D). A `cardType` of 'piv' that
 * `openStore` returns, from `soft=(…,PIV,…)`, overrides the default
 * --card cac, and a `cardType` of 'cac' with --card piv raises
 * `IdentityOptionsError`.
 */
export async function openCard(
  options: CardTypeOptions & IdentityOptions,
  openStore: () => Promise<{ store: KeyStore; cardType?: CardType }>,
  createCac: (store: KeyStore) => VirtualCard,
): Promise<OpenedCard> {
  checkCardTypeOptions(options);
  if (options.pivState !== undefined) return openPivStateCard(options.pivState, options);

  const { store, cardType } = await openStore();
  try {
    if (cardType === 'cac' && options.card === 'piv') {
      throw new IdentityOptionsError(
        '--card piv asks for a PIV card, but soft=(…,CAC,…) in -e asks for a CAC card; write PIV in place of CAC in soft=(…), or drop --card piv',
      );
    }
    const summary = { keys: store.description, certificates: store.slots.map((slot) => slot.label) };
    if ((cardType ?? options.card) === 'piv') {
      log.info('PIV card with key store keys: the PIN is the key store PIN and card changes end with the process');
      const state = createDefaultCardState();
      state.pin.maxRetries = options.pinRetries;
      state.pin.triesLeft = options.pinRetries;
      return { card: createPivCard({ store, state }), kind: 'PIV', summary, store, close: () => store.close() };
    }
    return { card: createCac(store), kind: 'CAC', summary, store, close: () => store.close() };
  } catch (error) {
    await store.close();
    throw error;
  }
}
