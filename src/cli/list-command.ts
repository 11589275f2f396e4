/**
 * `virtcard list`: prints the host's PC/SC readers with their card state and
 * ATR, in one shot (like `pcsc_scan -r` plus the ATRs).
 */
import { Command } from 'commander';
import { PcscContext, PcscError, SCARD_E_NO_SERVICE, describeReturnCode } from '../pcsc/pcsc-lite.js';
import { describeReaderFlags, readReaderSnapshots, type ReaderSnapshot } from '../pcsc/reader-state.js';

/** Formats bytes as upper-case hex pairs separated by spaces, as pcsc_scan prints ATRs. */
function formatHex(bytes: Uint8Array): string {
  return [...bytes].map((byte) => byte.toString(16).toUpperCase().padStart(2, '0')).join(' ');
}

/** Formats the reader list: one line per reader, the ATR on the next line when a card is present. */
export function formatReaderList(readers: readonly ReaderSnapshot[]): string {
  if (readers.length === 0) return 'No PC/SC readers found.\n';
  const lines: string[] = [];
  readers.forEach((reader, index) => {
    lines.push(`${index}: ${reader.name} (${describeReaderFlags(reader.flags)})`);
    if (reader.atr.length > 0) lines.push(`   ATR: ${formatHex(reader.atr)}`);
  });
  return `${lines.join('\n')}\n`;
}

/** Lists the readers; returns the exit code (0 on success, 1 when PC/SC is unavailable). */
export async function runList(output: NodeJS.WritableStream = process.stdout, errors: NodeJS.WritableStream = process.stderr): Promise<number> {
  let context: PcscContext;
  try {
    context = await PcscContext.establish();
  } catch (error) {
    if (error instanceof PcscError && error.code === SCARD_E_NO_SERVICE) {
      errors.write(
        `virtcard list: pcscd is not running (${describeReturnCode(error.code)}).\n` +
          'Start it, e.g. with "systemctl start pcscd.socket", or point PCSCLITE_CSOCK_NAME at its socket.\n',
      );
      return 1;
    }
    errors.write(`virtcard list: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }

  try {
    output.write(formatReaderList(await readReaderSnapshots(context)));
    return 0;
  } catch (error) {
    errors.write(`virtcard list: reading the reader states failed: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  } finally {
    await context.release().catch(() => undefined);
  }
}

/** Builds the `list` subcommand. */
export function listCommand(): Command {
  return new Command('list')
    .description("print the host's PC/SC readers, whether each holds a card, and the card's ATR")
    .action(async () => {
      process.exitCode = await runList();
    });
}
