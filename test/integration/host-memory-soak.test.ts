/**
 * Memory soak of the VSCard server of `virtcard host`. Rounds of many
 * clients connect, add a reader, insert a card, exchange APDUs and leave,
 * some cleanly, some in the middle of a message or with a command
 * outstanding. After each round the server's heap must be back at its
 * baseline and must not grow from round to round. The server must keep no
 * connection, plugged slot, reader or command of a client that left.
 *
 * The server runs in a child process (test/support/host-memory-server.ts)
 * started with --expose-gc, so that every measurement follows forced
 * garbage collection and measures only the server's memory. Every step waits
 * for a message or an event instead of a fixed time, so a slow machine
 * makes the test slower, not flaky.
 *
 * The child also runs with V8's optimizing and baseline compilers, lazy
 * feedback allocation and bytecode flushing off. With them on, V8 adds and
 * drops compiled code on its own schedule. Heap used after full garbage
 * collection then moved by up to 133 KiB between identical rounds of 200
 * clients (Node.js 20.20), enough to hide a leak of a few objects per
 * client. With them off it moves by about 1 KiB. The data a connection
 * leaves behind does not depend on the compiler tier.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VscDecoder } from '../../src/vscard/decoder.js';
import { encodeMessage } from '../../src/vscard/encode.js';
import {
  MINIMAL_READER_ID,
  UNDEFINED_READER_ID,
  VSCARD_VERSION,
  VscErrorCode,
  VscMessageType,
  messageTypeName,
  type VscMessage,
} from '../../src/vscard/protocol.js';
import type { HostMemoryReport, HostMemoryRequest, HostMemorySample } from '../support/host-memory-server.js';

const serverScript = path.join(path.dirname(fileURLToPath(import.meta.url)), '../support/host-memory-server.js');

const CLIENTS_PER_ROUND = 200;
/** Rounds before the baseline, so that compiled code, caches and pools reach their working size first. */
const WARM_UP_ROUNDS = 2;
const MEASURED_ROUNDS = 5;
/** SELECT commands the server sends to each inserted card. */
const APDUS_PER_CARD = 3;

/**
 * Allowed heap growth from the baseline to the last round. Between
 * identical rounds heap used moved by about 1 KiB. Leaking one WeakRef in a
 * Set per client added 61 KiB over the measured rounds, and one empty
 * object in an array per client 66 KiB.
 */
const HEAP_MARGIN_BYTES = 16 * 1024;
/** Allowed slope of heap used over the measured rounds, per client of a round. */
const HEAP_GROWTH_PER_CLIENT_LIMIT_BYTES = 8;
/** Allowed growth of ArrayBuffer and external memory from the baseline to the last round. */
const BUFFER_MARGIN_BYTES = 16 * 1024;
/** Heap used of two samples in a row may differ by this much for the server to count as settled. */
const SETTLED_HEAP_DIFFERENCE_BYTES = 4 * 1024;
/** Time one client or one wait for the server may take before the test fails. */
const STEP_TIMEOUT_MS = 20_000;

const ECHO_ATR = Uint8Array.of(0x3b, 0x02, 0x14, 0x50);

/**
 * How a soak client leaves. Each behaviour takes a different path through
 * the server's session and reader clean-up.
 */
type Behaviour =
  /** Replies to every command, sends a stray response, removes card and reader, then half-closes. */
  | 'clean'
  /** Replies to every command, then destroys the socket in the middle of a VSC_APDU message. */
  | 'drop-mid-message'
  /** Replies to the first command with VSC_Error and destroys the socket while the second waits. */
  | 'command-pending'
  /** Answers every command, then sends an unknown message type, so the server closes the connection. */
  | 'invalid-stream'
  /** Exchanges VSC_Init only and half-closes without adding a reader. */
  | 'no-reader';

const BEHAVIOURS: readonly Behaviour[] = ['clean', 'drop-mid-message', 'command-pending', 'invalid-stream', 'no-reader'];

/** A VSCard client over a real socket that reads replies by message type. */
class SoakClient {
  private readonly decoder = new VscDecoder();
  private readonly received: VscMessage[] = [];
  private wake: (() => void) | undefined;
  private isClosed = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.received.push(...this.decoder.decode(chunk));
      this.wake?.();
    });
    // The server resets some connections on purpose. 'close' follows and ends every wait.
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.wake?.();
        resolve();
      }),
    );
  }

  static async open(port: number): Promise<SoakClient> {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    return new SoakClient(socket);
  }

  send(message: VscMessage): void {
    this.socket.write(encodeMessage(message));
  }

  /** Returns the oldest received message of `type`, waiting for it. Messages of other types stay queued. */
  async nextOf(type: VscMessageType): Promise<VscMessage> {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    for (;;) {
      const index = this.received.findIndex((message) => message.type === type);
      if (index >= 0) return this.received.splice(index, 1)[0]!;
      if (this.isClosed) throw new Error(`the server closed the connection before sending ${messageTypeName(type)}`);
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`timed out after ${STEP_TIMEOUT_MS} ms waiting for ${messageTypeName(type)} from the server`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** Waits for VSC_Error with `code` and returns its reader id. */
  async expectError(code: VscErrorCode): Promise<number> {
    const message = await this.nextOf(VscMessageType.Error);
    assert.equal(message.type === VscMessageType.Error ? message.code : undefined, code, `VSC_Error code from the server`);
    return message.readerId;
  }

  /** Answers the next command with the command's bytes followed by 90 00. */
  async echoNextCommand(): Promise<void> {
    const command = await this.nextOf(VscMessageType.Apdu);
    const apdu = command.type === VscMessageType.Apdu ? command.apdu : new Uint8Array(0);
    this.send({ type: VscMessageType.Apdu, readerId: MINIMAL_READER_ID, apdu: Uint8Array.of(...apdu, 0x90, 0x00) });
  }

  async waitForClose(): Promise<void> {
    const timeout = new Promise<never>((_, reject) => {
      setTimeout(() => reject(new Error(`the connection did not close within ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS).unref();
    });
    await Promise.race([this.closed, timeout]);
  }
}

/** Runs one client with `behaviour` to its end; resolves once its socket closed. */
async function runClient(port: number, behaviour: Behaviour, name: string): Promise<void> {
  const client = await SoakClient.open(port);
  try {
    client.send({ type: VscMessageType.Init, readerId: UNDEFINED_READER_ID, version: VSCARD_VERSION, capabilities: [0] });
    await client.nextOf(VscMessageType.Init);
    if (behaviour === 'no-reader') {
      client.socket.end();
      await client.waitForClose();
      return;
    }

    client.send({ type: VscMessageType.ReaderAdd, readerId: UNDEFINED_READER_ID, name });
    assert.equal(await client.expectError(VscErrorCode.Success), MINIMAL_READER_ID, 'ReaderAdd gets reader id 0');
    // The server sends its first command while it handles the ATR, so that command may arrive before the ATR's reply.
    client.send({ type: VscMessageType.Atr, readerId: MINIMAL_READER_ID, atr: ECHO_ATR });
    await client.expectError(VscErrorCode.Success);

    if (behaviour === 'command-pending') {
      const first = await client.nextOf(VscMessageType.Apdu);
      client.send({ type: VscMessageType.Error, readerId: first.readerId, code: VscErrorCode.GeneralError });
      await client.nextOf(VscMessageType.Apdu);
      client.socket.destroy();
      await client.waitForClose();
      return;
    }

    for (let index = 0; index < APDUS_PER_CARD; index++) await client.echoNextCommand();

    switch (behaviour) {
      case 'clean':
        // A response that no command asked for: the server drops it.
        client.send({ type: VscMessageType.Apdu, readerId: MINIMAL_READER_ID, apdu: Uint8Array.of(0x90, 0x00) });
        client.send({ type: VscMessageType.CardRemove, readerId: MINIMAL_READER_ID });
        await client.expectError(VscErrorCode.Success);
        client.send({ type: VscMessageType.ReaderRemove, readerId: MINIMAL_READER_ID });
        await client.expectError(VscErrorCode.Success);
        client.socket.end();
        break;
      case 'drop-mid-message': {
        // The header announces 100 payload bytes; only the header and 20 of them arrive.
        const message = encodeMessage({ type: VscMessageType.Apdu, readerId: MINIMAL_READER_ID, apdu: new Uint8Array(100).fill(0x55) });
        client.socket.write(message.subarray(0, 32));
        client.socket.destroy();
        break;
      }
      case 'invalid-stream':
        // Type 0x2A does not exist: the server answers GENERAL_ERROR and closes the connection.
        client.socket.write(Uint8Array.of(0, 0, 0, 0x2a, 0, 0, 0, 0, 0, 0, 0, 0));
        await client.expectError(VscErrorCode.GeneralError);
        break;
    }
    await client.waitForClose();
  } finally {
    client.socket.destroy();
  }
}

/** The server process and its IPC channel. */
class ServerProcess {
  private readonly samples: ((sample: HostMemorySample) => void)[] = [];
  private stderr = '';

  private constructor(private readonly child: ChildProcess) {
    child.stderr?.setEncoding('utf8').on('data', (text: string) => (this.stderr = (this.stderr + text).slice(-4000)));
    child.on('message', (report: HostMemoryReport) => {
      if (report.type === 'sample') this.samples.shift()?.(report);
    });
  }

  /** Starts the server with one reader slot per client of a round and returns it with its port. */
  static async start(): Promise<{ server: ServerProcess; port: number }> {
    const child = fork(serverScript, [String(CLIENTS_PER_ROUND), String(APDUS_PER_CARD)], {
      execArgv: ['--expose-gc', '--no-opt', '--no-maglev', '--no-sparkplug', '--no-lazy-feedback-allocation', '--no-flush-bytecode'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: { ...process.env, VIRTCARD_LOG_LEVEL: 'warn', VIRTCARD_LOG_FORMAT: 'json' },
    });
    const server = new ServerProcess(child);
    const port = await new Promise<number>((resolve, reject) => {
      child.on('message', (report: HostMemoryReport) => report.type === 'listening' && resolve(report.port));
      child.once('exit', (code) => reject(new Error(`host-memory-server exited with code ${code} before listening:\n${server.stderr}`)));
    });
    return { server, port };
  }

  /** Returns a sample taken after forced garbage collection in the server process. */
  async measure(): Promise<HostMemorySample> {
    const sample = new Promise<HostMemorySample>((resolve, reject) => {
      this.samples.push(resolve);
      setTimeout(() => reject(new Error(`host-memory-server sent no sample within ${STEP_TIMEOUT_MS} ms:\n${this.stderr}`)), STEP_TIMEOUT_MS).unref();
    });
    this.child.send({ type: 'measure' } satisfies HostMemoryRequest);
    return sample;
  }

  /**
   * Returns a sample once the server has let go of every client and heap
   * used stopped changing between two samples, or the last sample when
   * STEP_TIMEOUT_MS passes first. The server notices a closed connection
   * in an event loop turn after the client did, and the first collection
   * after a round can leave work (finalization callbacks) for the next.
   */
  async measureSettled(): Promise<HostMemorySample> {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    let previous: HostMemorySample | undefined;
    for (;;) {
      const sample = await this.measure();
      const released = sample.connections === 0 && sample.pluggedSlots === 0 && sample.commandsInFlight === 0;
      const steady = previous !== undefined && Math.abs(sample.heapUsed - previous.heapUsed) <= SETTLED_HEAP_DIFFERENCE_BYTES;
      if ((released && steady) || Date.now() > deadline) return sample;
      previous = sample;
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.send({ type: 'stop' } satisfies HostMemoryRequest);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/** Runs CLIENTS_PER_ROUND clients at once, cycling through the behaviours. */
async function runRound(port: number, round: number): Promise<void> {
  await Promise.all(
    Array.from({ length: CLIENTS_PER_ROUND }, (_, index) =>
      runClient(port, BEHAVIOURS[index % BEHAVIOURS.length]!, `soak ${round}.${index}`),
    ),
  );
}

/** Returns the least-squares slope of `values` over their indices. */
function slope(values: readonly number[]): number {
  const meanX = (values.length - 1) / 2;
  const meanY = values.reduce((sum, value) => sum + value, 0) / values.length;
  let numerator = 0;
  let denominator = 0;
  values.forEach((value, index) => {
    numerator += (index - meanX) * (value - meanY);
    denominator += (index - meanX) ** 2;
  });
  return numerator / denominator;
}

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

function assertNothingLeftOf(sample: HostMemorySample, label: string): void {
  assert.equal(sample.connections, 0, `${label}: connections still open in the server`);
  assert.equal(sample.queuedReplyBytes, 0, `${label}: reply bytes still queued`);
  assert.equal(sample.pluggedSlots, 0, `${label}: reader slots still plugged`);
  assert.equal(sample.readersAlive, 0, `${label}: readers of departed clients still reachable after garbage collection`);
  assert.equal(sample.commandsInFlight, 0, `${label}: commands still waiting for a response`);
}

function report(t: TestContext, label: string, sample: HostMemorySample, baseline: HostMemorySample): void {
  t.diagnostic(
    `${label}: heapUsed ${kib(sample.heapUsed)} (${kib(sample.heapUsed - baseline.heapUsed)} from baseline), ` +
      `arrayBuffers ${kib(sample.arrayBuffers)}, external ${kib(sample.external)}, rss ${kib(sample.rss)}, ` +
      `readers accepted ${sample.readersAccepted}, commands answered ${sample.commandsAnswered}`,
  );
}

test('host memory returns to baseline', { timeout: 180_000 }, async (t) => {
  const { server, port } = await ServerProcess.start();
  try {
    const started = Date.now();
    for (let round = 0; round < WARM_UP_ROUNDS; round++) await runRound(port, round);
    const baseline = await server.measureSettled();
    assertNothingLeftOf(baseline, 'after warm-up');
    report(t, 'baseline', baseline, baseline);

    const samples: HostMemorySample[] = [];
    for (let round = 0; round < MEASURED_ROUNDS; round++) {
      await runRound(port, WARM_UP_ROUNDS + round);
      const sample = await server.measureSettled();
      report(t, `round ${round + 1}`, sample, baseline);
      assertNothingLeftOf(sample, `round ${round + 1}`);
      samples.push(sample);
    }
    t.diagnostic(`${MEASURED_ROUNDS + WARM_UP_ROUNDS} rounds of ${CLIENTS_PER_ROUND} clients in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    // The workload ran as planned: each behaviour with a reader took a slot, and the commands ended as expected.
    const last = samples.at(-1)!;
    const rounds = WARM_UP_ROUNDS + MEASURED_ROUNDS;
    const clientsPerBehaviour = CLIENTS_PER_ROUND / BEHAVIOURS.length;
    assert.equal(last.readersAccepted, rounds * clientsPerBehaviour * (BEHAVIOURS.length - 1), 'readers accepted');
    assert.equal(last.commandsFailedRemote, rounds * clientsPerBehaviour, 'commands answered with VSC_Error');
    assert.ok(
      last.commandsFailedNoCard >= rounds * clientsPerBehaviour,
      `${last.commandsFailedNoCard} commands failed with NoCardError; expected at least one per command-pending client`,
    );
    assert.ok(
      last.commandsAnswered >= rounds * clientsPerBehaviour * 2 * APDUS_PER_CARD,
      `${last.commandsAnswered} commands answered; expected every command of the clean and invalid-stream clients`,
    );
    assert.equal(last.commandsFailedOther, 0, 'commands that failed with an unexpected error');

    const heapGrowth = last.heapUsed - baseline.heapUsed;
    assert.ok(
      heapGrowth <= HEAP_MARGIN_BYTES,
      `heap used grew by ${kib(heapGrowth)} from the baseline after ${MEASURED_ROUNDS} rounds; allowed ${kib(HEAP_MARGIN_BYTES)}`,
    );
    const growthPerClient = slope(samples.map((sample) => sample.heapUsed)) / CLIENTS_PER_ROUND;
    assert.ok(
      growthPerClient <= HEAP_GROWTH_PER_CLIENT_LIMIT_BYTES,
      `heap used grows by ${growthPerClient.toFixed(1)} bytes per client from round to round; allowed ${HEAP_GROWTH_PER_CLIENT_LIMIT_BYTES}`,
    );
    const arrayBufferGrowth = last.arrayBuffers - baseline.arrayBuffers;
    assert.ok(
      arrayBufferGrowth <= BUFFER_MARGIN_BYTES,
      `ArrayBuffer memory grew by ${kib(arrayBufferGrowth)} from the baseline; allowed ${kib(BUFFER_MARGIN_BYTES)}`,
    );
    const externalGrowth = last.external - baseline.external;
    assert.ok(
      externalGrowth <= BUFFER_MARGIN_BYTES,
      `external memory grew by ${kib(externalGrowth)} from the baseline; allowed ${kib(BUFFER_MARGIN_BYTES)}`,
    );
  } finally {
    await server.stop();
  }
});
