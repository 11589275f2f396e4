/**
 * A fake QEMU ccid-card-passthru on loopback for client tests. It replies to
 * Init and acknowledges ReaderAdd, ReaderRemove, ATR and CardRemove with
 * VSC_Error(success) as QEMU 7.2 does, and lets the test send APDUs.
 */
import net from 'node:net';
import { once } from 'node:events';
import { VscDecoder } from '../../src/vscard/decoder.js';
import { encodeMessage } from '../../src/vscard/encode.js';
import { UNDEFINED_READER_ID, VscErrorCode, VscMessageType, type VscMessage } from '../../src/vscard/protocol.js';

export class FakePassthru {
  readonly received: VscMessage[] = [];
  private readonly server: net.Server;
  private socket: net.Socket | undefined;
  private readonly decoder = new VscDecoder();
  private waiters: (() => void)[] = [];

  constructor() {
    this.server = net.createServer((socket) => {
      this.socket?.destroy();
      this.socket = socket;
      socket.on('data', (chunk: Buffer) => {
        for (const message of this.decoder.decode(chunk)) {
          this.received.push(message);
          this.reply(message);
        }
        this.wake();
      });
      socket.on('error', () => undefined);
      socket.on('close', () => this.wake());
    });
  }

  async listen(port: number): Promise<void> {
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
  }

  async close(): Promise<void> {
    this.socket?.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Names of the message types received so far, for assertion messages. */
  typeNames(): string[] {
    return this.received.map((message) => VscMessageType[message.type] ?? String(message.type));
  }

  /** Waits until a received message matches, or raises after `timeoutMs`; returns it. */
  async waitFor<T extends VscMessage>(predicate: (message: VscMessage) => message is T, what: string, timeoutMs?: number): Promise<T>;
  async waitFor(predicate: (message: VscMessage) => boolean, what: string, timeoutMs?: number): Promise<VscMessage>;
  async waitFor(predicate: (message: VscMessage) => boolean, what: string, timeoutMs = 10_000): Promise<VscMessage> {
    const deadline = Date.now() + timeoutMs;
    let checked = 0;
    for (;;) {
      for (; checked < this.received.length; checked++) {
        const message = this.received[checked]!;
        if (predicate(message)) {
          this.received.splice(0, checked + 1);
          return message;
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; received: ${this.typeNames().join(', ')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Sends a command APDU to the client as the guest would, through reader 0. */
  sendApdu(apdu: Uint8Array): void {
    this.send({ type: VscMessageType.Apdu, readerId: 0, apdu });
  }

  private send(message: VscMessage): void {
    this.socket?.write(encodeMessage(message));
  }

  private reply(message: VscMessage): void {
    switch (message.type) {
      case VscMessageType.Init:
        this.send({ type: VscMessageType.Init, readerId: UNDEFINED_READER_ID, version: 2, capabilities: [0] });
        break;
      case VscMessageType.ReaderAdd:
        this.send({ type: VscMessageType.Error, readerId: 0, code: VscErrorCode.Success });
        break;
      case VscMessageType.ReaderRemove:
      case VscMessageType.Atr:
      case VscMessageType.CardRemove:
        this.send({ type: VscMessageType.Error, readerId: message.readerId, code: VscErrorCode.Success });
        break;
      default:
        break;
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }
}
