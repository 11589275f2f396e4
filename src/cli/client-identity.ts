/**
 * Chooses the card identity of `virtcard client` from vscclient's options
 * (`-e` and `-c`) or from virtcard's identity options, which must not be
 * mixed. vscclient's soft card maps to an NSS database key store whose
 * password is the card PIN, as in libcacard.
 */
import type { KeyStore } from '../backends/key-store.js';
import { openNssDatabase } from '../backends/nss.js';
import { IdentityOptionsError, openIdentity, readPin, type IdentityOptions } from './identity-options.js';
import {
  DEFAULT_NSS_DATABASE,
  appendCertificateNames,
  parseEmulatorOptions,
  type EmulatorOptions,
} from './libcacard-options.js';

/** Reader name announced when neither soft=(…) nor --reader-name gives one. */
export const DEFAULT_CLIENT_READER_NAME = 'virtcard CAC';

/** The NSS-backed soft card an `-e` string describes. */
export interface SoftCardIdentity {
  /** NSS database directory, `sql:DIR` or `DIR`. */
  database: string;
  /** Certificate nicknames in card order. */
  nicknames: string[];
  /** Reader name from soft=(…), possibly empty. */
  readerName: string;
  /** Card type from soft=(…). */
  cardType: 'CAC' | 'PIV';
}

/**
 * Checks that the parsed `-e` options describe what virtcard supports (one
 * soft CAC card from an NSS database, no hardware tokens) and returns it.
 * Throws `IdentityOptionsError` with the fix otherwise.
 */
export function softCardFromEmulatorOptions(options: EmulatorOptions): SoftCardIdentity {
  if (options.useHardware === 'yes' || options.useHardware === 'removable') {
    throw new IdentityOptionsError(
      `use_hw=${options.useHardware} (physical cards and tokens) is not supported yet; use use_hw=no with a soft=(…) card`,
    );
  }
  if (options.softCards.length === 0) {
    throw new IdentityOptionsError(
      'the emulator options define no soft=(…) card, and physical cards (use_hw=yes, the default) are not supported yet; ' +
        'add use_hw=no soft=(,READER,CAC,,CERT1,CERT2,CERT3) or use -c CERTNAME',
    );
  }
  if (options.softCards.length > 1) {
    throw new IdentityOptionsError(
      `the emulator options define ${options.softCards.length} soft=(…) cards, but QEMU's ccid-card-passthru serves one reader; keep one`,
    );
  }

  const card = options.softCards[0]!;
  if (card.tokenName !== '') {
    throw new IdentityOptionsError(
      `soft=(${card.tokenName},…) names NSS token "${card.tokenName}"; only the database's own token is supported yet, so leave the first field empty`,
    );
  }
  if (card.certificateNicknames.length === 0) {
    throw new IdentityOptionsError(
      `soft=(,${card.readerName},CAC,,…) lists no certificate nicknames; add them after the fourth comma, e.g. soft=(,${card.readerName},CAC,,id-cert)`,
    );
  }
  return {
    database: options.nssDatabase ?? DEFAULT_NSS_DATABASE,
    nicknames: card.certificateNicknames,
    readerName: card.readerName,
    cardType: card.cardType,
  };
}

/** Returns the names of the identity options that are set, for the "do not mix" error. */
export function identityOptionsInUse(options: IdentityOptions): string[] {
  const names: string[] = [];
  if (options.nssDb !== undefined) names.push('--nss-db');
  if (options.cert.length > 0) names.push('--cert');
  if (options.pkcs11Module !== undefined) names.push('--pkcs11-module');
  if (options.token !== undefined) names.push('--token');
  if (options.certFile.length > 0) names.push('--cert-file');
  if (options.keyFile.length > 0) names.push('--key-file');
  if (options.pkcs12.length > 0) names.push('--pkcs12');
  if (options.pkcs12PasswordFile !== undefined) names.push('--pkcs12-password-file');
  if (options.dataDir !== undefined) names.push('--data-dir');
  return names;
}

export interface ClientIdentityOptions extends IdentityOptions {
  /** vscclient's `-e` emulator option string. */
  e?: string;
  /** vscclient's `-c` certificate nicknames. */
  c: string[];
  readerName?: string;
}

/** The opened key store and the reader name to announce. */
export interface ClientIdentity {
  store: KeyStore;
  readerName: string;
  /**
   * Card type that soft=(…) in -e names. Undefined without -e/-c, and with
   * -c, whose soft=(…) card is vscclient's CAC default, so --card decides.
   */
  cardType?: 'cac' | 'piv';
}

/** Opens the key store the client's options name. */
export async function openClientIdentity(options: ClientIdentityOptions): Promise<ClientIdentity> {
  const emulatorArgs = appendCertificateNames(options.e, options.c);
  if (emulatorArgs === undefined) {
    return { store: await openIdentity(options), readerName: options.readerName ?? DEFAULT_CLIENT_READER_NAME };
  }

  const mixed = identityOptionsInUse(options);
  if (mixed.length > 0) {
    throw new IdentityOptionsError(
      `-e/-c (vscclient's NSS options) and ${mixed.join(', ')} choose different identities; give only one kind`,
    );
  }
  const soft = softCardFromEmulatorOptions(parseEmulatorOptions(emulatorArgs));
  const pin = await readPin(options);
  const store = await openNssDatabase({
    directory: soft.database,
    nicknames: soft.nicknames,
    ...(pin === undefined ? {} : { password: pin }),
  });
  const readerName = options.readerName ?? (soft.readerName === '' ? DEFAULT_CLIENT_READER_NAME : soft.readerName);
  if (soft.cardType === 'PIV') return { store, readerName, cardType: 'piv' };
  return options.c.length > 0 ? { store, readerName } : { store, readerName, cardType: 'cac' };
}
