/**
 * Command-line options that change how the emulated CAC card presents its
 * data, shared by the commands that build a card. The defaults keep
 * libcacard 2.8's bytes.
 */
import { Option, type Command } from 'commander';
import { CERTIFICATE_COMPRESSIONS, type CacCardOptions, type CertificateCompression } from '../cac/index.js';
import { IdentityOptionsError } from './identity-options.js';

/** The card-format options as commander stores them after parsing. */
export interface CacCardFormatOptions {
  certCompression: CertificateCompression;
}

/** Adds the card-format options to `command` and returns it. */
export function addCacCardFormatOptions(command: Command): Command {
  return command.addOption(
    new Option(
      '--cert-compression <form>',
      'how the PKI applets store certificates: none (as libcacard 2.8) or zlib (as real CAC cards; CoolKey 1.1 needs zlib)',
    )
      .choices(CERTIFICATE_COMPRESSIONS)
      .default('none'),
  );
}

/** Returns the card options that the card-format options select. */
export function cacCardFormat(options: CacCardFormatOptions): Pick<CacCardOptions, 'certificateCompression'> {
  return { certificateCompression: options.certCompression };
}

/**
 * Raises `IdentityOptionsError` when a card-format option requests a CAC-only
 * behaviour and the card is of another type (`kind`, e.g. "PIV"). Without
 * this check the option would be silently ignored.
 */
export function checkCacCardFormat(kind: string, options: CacCardFormatOptions): void {
  if (kind === 'CAC' || options.certCompression === 'none') return;
  throw new IdentityOptionsError(
    `--cert-compression ${options.certCompression} changes how a CAC card stores certificates, and this card is a ${kind} card; drop --cert-compression`,
  );
}
