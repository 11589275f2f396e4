/**
 * The VSCard server of `virtcard host` in a process of its own, for the
 * memory soak test. It puts each client's reader into a free `ReaderSlot`
 * the way `virtcard host` does, with one slot per expected client and no
 * export behind the slots. Each inserted card gets APDU_COUNT SELECT
 * commands through its slot, one after the other, as an export would send
 * them.
 *
 *   fork('host-memory-server.js', [SLOT_COUNT, APDU_COUNT], { execArgv: ['--expose-gc'] })
 *
 * It talks to the parent over the IPC channel. It sends
 * `{ type: 'listening', port }` once the server listens on 127.0.0.1, and a
 * `HostMemorySample` taken after forced garbage collection for each
 * `{ type: 'measure' }`. It exits on `{ type: 'stop' }` or when the parent
 * goes away.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ReaderSlot } from '../../src/host/reader-slot.js';
import { logger } from '../../src/log/logger.js';
import { NoCardError } from '../../src/reader/reader.js';
import { RemoteCardError, type RemoteCardReader } from '../../src/vscard/server-reader.js';
import { VscServer } from '../../src/vscard/server.js';

/** SELECT of the first CAC PKI applet. Any command would do, because the soak clients echo it. */
const SELECT_COMMAND = Uint8Array.of(0x00, 0xa4, 0x04, 0x00, 0x07, 0xa0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00, 0x00);

/** What the server process reports after forced garbage collection. */
export interface HostMemorySample {
  type: 'sample';
  /** `process.memoryUsage()` fields, in bytes. */
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  rss: number;
  /** `VscServer.connectionCount`: clients still connected. */
  connections: number;
  /** `VscServer.queuedReplyBytes`: reply bytes still queued in sockets. */
  queuedReplyBytes: number;
  /** Slots that still contain a client's reader. */
  pluggedSlots: number;
  /** Readers the server handed out so far, over the life of the process. */
  readersAccepted: number;
  /** Readers that are still reachable after garbage collection. */
  readersAlive: number;
  /** Commands sent through a slot that have neither a response nor an error yet. */
  commandsInFlight: number;
  /** Commands that got a response. */
  commandsAnswered: number;
  /** Commands that failed with NoCardError (card removed or client left while waiting). */
  commandsFailedNoCard: number;
  /** Commands for which the client returned VSC_Error instead of a response. */
  commandsFailedRemote: number;
  /** Commands that failed with any other error, which the soak test does not expect. */
  commandsFailedOther: number;
}

export type HostMemoryRequest = { type: 'measure' } | { type: 'stop' };
export type HostMemoryReport = { type: 'listening'; port: number } | HostMemorySample;

const gc = globalThis.gc;
if (gc === undefined) throw new Error('host-memory-server needs --expose-gc to force garbage collection');
if (process.send === undefined) throw new Error('host-memory-server must be started with fork(), which opens the IPC channel');
const send = process.send.bind(process);

const [slotCountText, apduCountText] = process.argv.slice(2);
const slotCount = Number(slotCountText);
const apduCount = Number(apduCountText);
if (!Number.isInteger(slotCount) || slotCount < 1 || !Number.isInteger(apduCount) || apduCount < 0) {
  throw new Error(`usage: host-memory-server SLOT_COUNT APDU_COUNT, got "${slotCountText}" "${apduCountText}"`);
}

const counters = { commandsInFlight: 0, commandsAnswered: 0, commandsFailedNoCard: 0, commandsFailedRemote: 0, commandsFailedOther: 0 };
let readersAccepted = 0;
// Weak references, so that tracking the readers does not keep them alive. Each measurement drops the dead ones.
let readerReferences: WeakRef<RemoteCardReader>[] = [];

/** Sends `apduCount` commands through `slot`, one after the other, and counts how each ended. */
async function sendCommands(slot: ReaderSlot): Promise<void> {
  for (let index = 0; index < apduCount; index++) {
    counters.commandsInFlight++;
    try {
      await slot.transmit(SELECT_COMMAND);
      counters.commandsAnswered++;
    } catch (error) {
      if (error instanceof NoCardError) counters.commandsFailedNoCard++;
      else if (error instanceof RemoteCardError) counters.commandsFailedRemote++;
      else counters.commandsFailedOther++;
      if (error instanceof NoCardError) return;
    } finally {
      counters.commandsInFlight--;
    }
  }
}

const slots = Array.from({ length: slotCount }, (_, index) => new ReaderSlot(`soak slot ${index}`));
for (const slot of slots) slot.on('insert', () => void sendCommands(slot));

const server = new VscServer({
  port: 0,
  logger: logger.child({ component: 'host-memory-server' }),
  // The same choice as `virtcard host`: the first free slot, or VSC_CANNOT_ADD_MORE_READERS.
  acceptReader: (reader) => {
    const slot = slots.find((candidate) => candidate.plugged === undefined);
    if (slot === undefined) return false;
    slot.plug(reader);
    readersAccepted++;
    readerReferences.push(new WeakRef(reader));
    return true;
  },
});

/**
 * Collects garbage until the heap stops shrinking (at most five times), with
 * a timer turn between collections so that FinalizationRegistry callbacks
 * and closed-socket handles can run.
 */
async function collectGarbage(): Promise<void> {
  let previous = Number.POSITIVE_INFINITY;
  for (let pass = 0; pass < 5; pass++) {
    await sleep(10);
    gc!();
    const heapUsed = process.memoryUsage().heapUsed;
    if (heapUsed >= previous) return;
    previous = heapUsed;
  }
}

async function measure(): Promise<HostMemorySample> {
  await collectGarbage();
  // collectGarbage() ran in later jobs than any earlier deref(), which keeps a target alive to the end of its job,
  // so every reader that nothing else references reads as undefined here.
  readerReferences = readerReferences.filter((reference) => reference.deref() !== undefined);
  await sleep(0);
  gc!();
  const memory = process.memoryUsage();
  return {
    type: 'sample',
    heapUsed: memory.heapUsed,
    external: memory.external,
    arrayBuffers: memory.arrayBuffers,
    rss: memory.rss,
    connections: server.connectionCount,
    queuedReplyBytes: server.queuedReplyBytes,
    pluggedSlots: slots.filter((slot) => slot.plugged !== undefined).length,
    readersAccepted,
    readersAlive: readerReferences.length,
    ...counters,
  };
}

process.on('message', (request: HostMemoryRequest) => {
  if (request.type === 'measure') {
    void measure().then((sample) => send(sample));
  } else if (request.type === 'stop') {
    void server.close().then(() => process.exit(0));
  }
});
process.on('disconnect', () => process.exit(0));

const address = await server.listen();
send({ type: 'listening', port: address.port } satisfies HostMemoryReport);
