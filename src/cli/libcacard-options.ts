/**
 * Parser for libcacard's emulator option string, the `-e` argument of
 * vscclient (`vcard_emul_options` in libcacard 2.8's vcard_emul_nss.c), e.g.
 *
 *     db="sql:/etc/pki/nssdb" use_hw=no soft=(,Test,CAC,,id-cert,signing-cert,encryption-cert)
 *
 * Tokens are separated by blanks or commas. Every string libcacard accepts is
 * accepted here with the same meaning, and every string it rejects is
 * rejected, with two deliberate differences that only accept more:
 * - the values of use_hw=, hw_type= and hw_params= end at a comma as well as
 *   at a blank (libcacard reads up to the next blank only, so
 *   `use_hw=no,soft=(...)` silently swallowed the soft card there);
 * - hw_type= compares only its own value (libcacard compares the rest of the
 *   whole string, so it worked only as the last token).
 * Soft card fields and certificate nicknames are also trimmed at both ends,
 * where libcacard trims only leading blanks.
 */

/** One `soft=(SLOT,READER,TYPE,PARAMS,CERT1,CERT2,...)` card. */
export interface SoftCardSpec {
  /** NSS token that contains the certificates. Empty means the database's internal key token. */
  tokenName: string;
  /** Name of the virtual reader shown to the guest. */
  readerName: string;
  /** Emulated card type: CAC as in libcacard, or PIV, which virtcard adds (keys in slots 9A, 9C, 9D). */
  cardType: 'CAC' | 'PIV';
  /** Card-type parameters, unused by the CAC card. */
  cardParams: string;
  /** NSS nicknames of the certificates, one PKI applet each, in card order. Empty names are dropped. */
  certificateNicknames: string[];
}

/** Policy for hardware tokens (`use_hw=`). */
export type HardwareUse = 'yes' | 'no' | 'removable';

/** The parsed option string. */
export interface EmulatorOptions {
  /** NSS database directory as written, e.g. "sql:/dir". Undefined means libcacard's default. */
  nssDatabase: string | undefined;
  /** Value of use_hw=, also set by `nssemul` and `passthru`. Undefined when not given, which libcacard treats as yes. */
  useHardware: HardwareUse | undefined;
  /** Card type for hardware tokens (hw_type=, default CAC). */
  hardwareCardType: 'CAC' | 'PASSTHRU';
  /** Value of hw_params=, if given. */
  hardwareParams: string | undefined;
  /** The soft= cards in the order given. */
  softCards: SoftCardSpec[];
}

/** NSS database libcacard opens when db= is absent. */
export const DEFAULT_NSS_DATABASE = '/etc/pki/nssdb';

/** Reader name vscclient gives the soft card it builds from `-c` options. */
export const VSCCLIENT_READER_NAME = 'Virtual Reader';

/** Raised for an option string libcacard would reject. The message names the token and the fix. */
export class EmulatorOptionsError extends Error {
  constructor(
    message: string,
    /** Character offset in the option string where parsing stopped. */
    readonly offset: number,
  ) {
    super(message);
    this.name = 'EmulatorOptionsError';
  }
}

const SOFT_SYNTAX = 'soft=(TOKEN,READER NAME,CAC|PIV,PARAMS,CERT1,CERT2,...)';

function isBlank(char: string | undefined): boolean {
  return char !== undefined && /\s/.test(char);
}

function parseCardType(value: string, offset: number): 'CAC' | 'PASSTHRU' {
  const upper = value.toUpperCase();
  if (upper === 'CAC' || upper === 'PASSTHRU') return upper;
  throw new EmulatorOptionsError(`invalid smartcard type "${value}": use CAC`, offset);
}

/** A cursor over the option string with the scanning steps libcacard uses. */
class Scanner {
  position = 0;

  constructor(readonly text: string) {}

  get atEnd(): boolean {
    return this.position >= this.text.length;
  }

  peek(): string | undefined {
    return this.text[this.position];
  }

  skipBlanks(): void {
    while (isBlank(this.peek())) this.position++;
  }

  startsWith(prefix: string): boolean {
    return this.text.startsWith(prefix, this.position);
  }

  /** Reads up to (not including) the next blank or comma. */
  readWord(): string {
    const start = this.position;
    while (!this.atEnd && !isBlank(this.peek()) && this.peek() !== ',') this.position++;
    return this.text.slice(start, this.position);
  }

  fail(message: string): never {
    throw new EmulatorOptionsError(`invalid emulator options at character ${this.position + 1}: ${message}`, this.position);
  }
}

/** Parses and returns the four fixed fields of soft=(, leaving the scanner at the first certificate. */
function readSoftFields(scanner: Scanner): string[] {
  const fields: string[] = [];
  for (let index = 0; index < 4; index++) {
    const start = scanner.position;
    while (!scanner.atEnd && scanner.peek() !== ',' && scanner.peek() !== ')') scanner.position++;
    if (scanner.atEnd || scanner.peek() === ')') {
      scanner.fail(`invalid soft specification: it needs four fields before the certificates, as in ${SOFT_SYNTAX}`);
    }
    fields.push(scanner.text.slice(start, scanner.position).trim());
    scanner.position++;
    scanner.skipBlanks();
  }
  return fields;
}

function parseSoftCard(scanner: Scanner): SoftCardSpec {
  scanner.position += 'soft='.length;
  scanner.skipBlanks();
  if (scanner.peek() !== '(') scanner.fail(`invalid soft specification: expected "(" after soft=, as in ${SOFT_SYNTAX}`);
  scanner.position++;
  scanner.skipBlanks();

  const typeOffset = scanner.position;
  const [tokenName, readerName, typeName, cardParams] = readSoftFields(scanner) as [string, string, string, string];
  const cardType = typeName.toUpperCase() === 'PIV' ? 'PIV' : parseCardType(typeName, typeOffset);
  if (cardType === 'PASSTHRU') scanner.fail(`invalid smartcard type "${typeName}" for a soft card: use CAC or PIV`);
  if (scanner.atEnd) scanner.fail(`missing cert specification: list the certificate nicknames, as in ${SOFT_SYNTAX}`);

  const close = scanner.text.indexOf(')', scanner.position);
  if (close < 0) scanner.fail('invalid soft specification: missing ")" after the certificate list');
  const certificateNicknames = scanner.text
    .slice(scanner.position, close)
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name.length > 0);
  scanner.position = close + 1;
  scanner.skipBlanks();
  // libcacard also skips one extra ")" here.
  if (scanner.peek() === ')') scanner.position++;

  return { tokenName, readerName, cardType, cardParams, certificateNicknames };
}

function parseDatabase(scanner: Scanner): string {
  scanner.position += 'db='.length;
  scanner.skipBlanks();
  if (scanner.peek() !== '"') scanner.fail('you must quote the file path, as in db="sql:/path/to/nssdb"');
  scanner.position++;
  const start = scanner.position;
  while (!scanner.atEnd && scanner.peek() !== '"' && scanner.peek() !== '\n') scanner.position++;
  if (scanner.atEnd) scanner.fail('invalid db argument: missing closing quote');
  const path = scanner.text.slice(start, scanner.position);
  scanner.position++;
  return path;
}

function parseHardwareUse(value: string): HardwareUse {
  const first = value[0];
  if (first === '0' || first === 'N' || first === 'n' || first === 'F') return 'no';
  if (value.startsWith('removable')) return 'removable';
  return 'yes';
}

/** Parses a libcacard emulator option string. Throws `EmulatorOptionsError` for what libcacard rejects. */
export function parseEmulatorOptions(text: string): EmulatorOptions {
  const options: EmulatorOptions = {
    nssDatabase: undefined,
    useHardware: undefined,
    hardwareCardType: 'CAC',
    hardwareParams: undefined,
    softCards: [],
  };
  const scanner = new Scanner(text);

  for (;;) {
    scanner.skipBlanks();
    if (scanner.atEnd) break;
    if (scanner.peek() === ',') {
      scanner.position++;
      continue;
    }

    if (scanner.startsWith('soft=')) {
      options.softCards.push(parseSoftCard(scanner));
    } else if (scanner.startsWith('use_hw=')) {
      scanner.position += 'use_hw='.length;
      scanner.skipBlanks();
      options.useHardware = parseHardwareUse(scanner.readWord());
    } else if (scanner.startsWith('hw_type=')) {
      scanner.position += 'hw_type='.length;
      scanner.skipBlanks();
      const offset = scanner.position;
      options.hardwareCardType = parseCardType(scanner.readWord(), offset);
    } else if (scanner.startsWith('hw_params=')) {
      if (options.hardwareParams !== undefined) scanner.fail('redefinition of hw_params= is not allowed');
      scanner.position += 'hw_params='.length;
      scanner.skipBlanks();
      options.hardwareParams = scanner.readWord();
    } else if (scanner.startsWith('db=')) {
      if (options.nssDatabase !== undefined) scanner.fail('redefinition of db= is not allowed');
      options.nssDatabase = parseDatabase(scanner);
    } else if (scanner.startsWith('nssemul')) {
      scanner.readWord();
      options.useHardware = 'yes';
      options.hardwareCardType = 'CAC';
    } else if (scanner.startsWith('passthru')) {
      scanner.readWord();
      options.useHardware = 'yes';
      options.hardwareCardType = 'PASSTHRU';
    } else {
      const word = scanner.readWord();
      scanner.position -= word.length;
      scanner.fail(
        `unknown smartcard specification "${word}": expected db="…", use_hw=, hw_type=, hw_params=, soft=(…), nssemul or passthru`,
      );
    }
  }
  return options;
}

/**
 * Builds the option string vscclient uses when `-c NAME` options are given:
 * the `-e` string (default `db="/etc/pki/nssdb"`) followed by
 * `,soft=(,Virtual Reader,CAC,,NAME1,NAME2,...,)`. Returns the `-e` string
 * unchanged when there are no names.
 */
export function appendCertificateNames(emulatorArgs: string | undefined, nicknames: readonly string[]): string | undefined {
  if (nicknames.length === 0) return emulatorArgs;
  const base = emulatorArgs ?? `db="${DEFAULT_NSS_DATABASE}"`;
  return `${base},soft=(,${VSCCLIENT_READER_NAME},CAC,,${nicknames.map((name) => `${name},`).join('')})`;
}

/** Usage text for the option string, for `--help`. */
export const EMULATOR_OPTIONS_HELP = `Emulator options (-e), libcacard syntax, separated by blanks or commas:
  db="DIR"          NSS database, e.g. db="sql:/home/me/nssdb" (default ${DEFAULT_NSS_DATABASE})
  use_hw=yes|no|removable
                    relay the host's PC/SC cards when no soft= card is given
                    (default yes; yes and removable both relay, as --pcsc does)
  hw_type=CAC       card type for hardware tokens
  hw_params=P       card parameters for hardware tokens
  soft=(TOKEN,READER,CAC,PARAMS,CERT1,CERT2,...)
                    a virtual CAC card in reader READER with the certificates of the
                    given NSS nicknames (TOKEN empty = the database's internal token);
                    PIV in place of CAC makes a PIV card with them in slots 9A, 9C, 9D
  nssemul           same as use_hw=yes hw_type=CAC
  passthru          same as use_hw=yes hw_type=PASSTHRU`;
