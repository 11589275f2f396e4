/**
 * The process-wide logger: pino, writing JSON lines to stderr, or one
 * human-readable line per record when stderr is a terminal or
 * VIRTCARD_LOG_FORMAT=text.
 *
 * Fields named like secrets are redacted by pino before a record is written,
 * as a second line of defence: callers must still never pass a PIN or key.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

const REDACTED_FIELDS = ['pin', 'password', 'passphrase', 'privateKey', '*.pin', '*.password', '*.passphrase'];

function wantsText(): boolean {
  const format = process.env['VIRTCARD_LOG_FORMAT'];
  if (format === 'json') return false;
  if (format === 'text') return true;
  return process.stderr.isTTY;
}

/** Formats one pino record as `HH:MM:SS.mmm LEVEL component: message key=value ...`. */
function formatText(record: Record<string, unknown>): string {
  const { time, level, msg, component, pid: _pid, hostname: _hostname, ...rest } = record;
  const clock = new Date(Number(time)).toISOString().slice(11, 23);
  const levelName = pino.levels.labels[Number(level)] ?? String(level);
  const prefix = typeof component === 'string' ? `${component}: ` : '';
  const fields = Object.entries(rest)
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join(' ');
  return `${clock} ${levelName.toUpperCase().padEnd(5)} ${prefix}${typeof msg === 'string' ? msg : ''}${fields ? ' ' + fields : ''}\n`;
}

/**
 * Weak references to the child loggers made so far. Modules make their
 * children when they are imported, before the command line is parsed, and a
 * pino child keeps the level it was created with, so `setLogLevel` must
 * reach each one.
 */
const children = new Set<WeakRef<Logger>>();

/**
 * Deletes the reference of each collected child. Servers make a child per
 * connection, so without this the set would grow by one WeakRef for every
 * connection ever accepted.
 */
const forgetCollectedChild = new FinalizationRegistry<WeakRef<Logger>>((reference) => children.delete(reference));

function createRootLogger(): Logger {
  const level = process.env['VIRTCARD_LOG_LEVEL'] ?? 'info';
  const options = {
    level,
    redact: { paths: REDACTED_FIELDS, censor: '[redacted]' },
    onChild: (child: Logger): void => {
      const reference = new WeakRef(child);
      children.add(reference);
      forgetCollectedChild.register(child, reference);
    },
  };

  if (!wantsText()) return pino(options, pino.destination({ fd: 2, sync: true }));

  const stream = {
    write(line: string): void {
      process.stderr.write(formatText(JSON.parse(line) as Record<string, unknown>));
    },
  };
  return pino(options, stream);
}

/** The root logger; use `logger.child({ component: 'vpcd' })` per module. */
export const logger: Logger = createRootLogger();

/** Sets the level of the root logger and of every child logger, made before or after. */
export function setLogLevel(level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent'): void {
  logger.level = level;

  for (const reference of children) {
    const child = reference.deref();
    if (child === undefined) children.delete(reference);
    else child.level = level;
  }
}
