/**
 * The interactive commands of `virtcard client` on stdin, the ones
 * vscclient offers: insert, remove, select, list, debug and exit (plus
 * quit and help). Output goes to stdout in vscclient's wording where it
 * has one.
 */
import readline from 'node:readline';
import type { Readable } from 'node:stream';

/** The client operations the console drives. The client has one reader, id 0, the only id QEMU assigns. */
export interface ConsoleTarget {
  readonly readerName: string;
  /** Whether QEMU accepted the reader on the current connection. */
  readerActive(): boolean;
  cardPresent(): boolean;
  /** Inserts the card; returns false when one is present already. */
  insertCard(): boolean;
  /** Removes the card; returns false when the slot is empty. */
  removeCard(): boolean;
  debugLevel(): number;
  setDebugLevel(level: number): void;
  /** Removes card and reader from QEMU and ends the program. */
  exit(): Promise<void>;
}

/** The only reader id: ccid-card-passthru supports one reader, id 0. */
const READER_ID = 0;

export const CONSOLE_HELP = `Commands on stdin (one per line):
  insert [READER_ID]   insert the card again (READER_ID is 0, the only reader)
  remove [READER_ID]   remove the card; the guest sees an empty reader
  select READER_ID     choose the reader for insert and remove (only 0 exists)
  list                 show the reader and whether a card is present
  debug [LEVEL]        show or set the trace level (1: APDUs, 11: every VSCard message)
  exit, quit           remove card and reader from QEMU and exit`;

/** Parses a reader id argument; returns undefined when absent, NaN when not a number. */
function parseId(argument: string | undefined): number | undefined {
  if (argument === undefined) return undefined;
  return /^\d+$/.test(argument) ? Number(argument) : Number.NaN;
}

/** Keeps the state of one console: the selected reader id. */
export class ClientConsole {
  private selectedId = READER_ID;

  constructor(
    private readonly target: ConsoleTarget,
    private readonly write: (text: string) => void,
  ) {}

  /** Runs one command line. Returns false after `exit`. */
  async run(line: string): Promise<boolean> {
    const [command, argument] = line.trim().split(/\s+/);
    if (command === undefined || command === '') return true;

    switch (command) {
      case 'insert':
      case 'remove':
        this.changeCard(command, argument);
        return true;
      case 'select':
        this.select(argument);
        return true;
      case 'list':
        this.list();
        return true;
      case 'debug':
        this.debug(argument);
        return true;
      case 'exit':
      case 'quit':
        await this.target.exit();
        return false;
      case 'help':
        this.write(`${CONSOLE_HELP}\n`);
        return true;
      default:
        this.write(`unknown command "${command}"\n${CONSOLE_HELP}\n`);
        return true;
    }
  }

  private readerFor(argument: string | undefined): boolean {
    const id = parseId(argument) ?? this.selectedId;
    if (Number.isNaN(id)) {
      this.write(`invalid reader id "${argument}": use a number; the only reader is ${READER_ID}\n`);
      return false;
    }
    if (id !== READER_ID) {
      this.write(`no reader by id ${id} found; the only reader is ${READER_ID}\n`);
      return false;
    }
    return true;
  }

  private changeCard(command: 'insert' | 'remove', argument: string | undefined): void {
    if (!this.readerFor(argument)) return;
    const name = this.target.readerName;
    if (command === 'insert') {
      this.write(this.target.insertCard() ? `insert ${name}: card inserted\n` : `insert ${name}: a card is already present\n`);
    } else {
      this.write(this.target.removeCard() ? `remove ${name}: card removed\n` : `remove ${name}: no card to remove\n`);
    }
  }

  private select(argument: string | undefined): void {
    if (argument === undefined) {
      this.write(`select needs a reader id; the only reader is ${READER_ID}\n`);
      return;
    }
    if (!this.readerFor(argument)) return;
    this.selectedId = READER_ID;
    this.write(`Selecting reader ${READER_ID}, ${this.target.readerName}\n`);
  }

  private list(): void {
    const card = this.target.cardPresent() ? 'CARD_PRESENT' : '            ';
    const line = `${card} ${this.target.readerName}`;
    const active = this.target.readerActive();
    this.write(`Active Readers:\n${active ? `${String(READER_ID).padStart(3)} ${line}\n` : ''}`);
    this.write(`Inactive Readers:\n${active ? '' : `INA ${line}\n`}`);
  }

  private debug(argument: string | undefined): void {
    if (argument !== undefined) {
      if (!/^\d+$/.test(argument)) {
        this.write(`invalid debug level "${argument}": use a number (0 off, 1 APDUs, 11 every VSCard message)\n`);
        return;
      }
      this.target.setDebugLevel(Number(argument));
    }
    this.write(`debug level = ${this.target.debugLevel()}\n`);
  }
}

/**
 * Reads commands from `input` line by line until `exit` or the end of
 * input. At the end of input the client keeps running, so it also works
 * with stdin closed or redirected from /dev/null.
 */
export function startConsole(input: Readable, target: ConsoleTarget, write: (text: string) => void, prompt: boolean): void {
  const commands = new ClientConsole(target, write);
  const lines = readline.createInterface({ input, terminal: false });
  let queue = Promise.resolve(true);
  if (prompt) write('> ');
  lines.on('line', (line) => {
    queue = queue.then(async (running) => {
      if (!running) return false;
      const keepRunning = await commands.run(line);
      if (keepRunning && prompt) write('> ');
      if (!keepRunning) lines.close();
      return keepRunning;
    });
  });
}
