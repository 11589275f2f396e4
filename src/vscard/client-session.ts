/**
 * The client side of one VSCard connection (what vscclient does between
 * connect and disconnect): it offers one `Reader` to QEMU's
 * ccid-card-passthru and responds to the guest's APDUs with it.
 *
 * Sequence, as QEMU 7.2 and vscclient run it:
 *   client Init → host Init → client ReaderRemove (clears a reader left over
 *   by a previous client) → client ReaderAdd → host Error(SUCCESS, reader id)
 *   → client ATR if a card is present → host APDUs, each followed by one
 *   client APDU (or an Error when there is no card).
 * QEMU acknowledges ReaderAdd, ReaderRemove, ATR and CardRemove with one VSC_Error
 * each, in order, so the acknowledgements are matched first in, first out.
 *
 * The session does no I/O itself: it writes encoded messages through `send`
 * and the connection feeds it decoded messages.
 */
import type { Logger } from '../log/logger.js';
import { NoCardError, type Reader } from '../reader/reader.js';
import { ApduTracer } from './apdu-trace.js';
import { encodeMessage } from './encode.js';
import {
  MAX_PAYLOAD_LENGTH,
  MINIMAL_READER_ID,
  UNDEFINED_READER_ID,
  VSCARD_VERSION,
  VscErrorCode,
  VscMessageType,
  errorCodeName,
  messageTypeName,
  type VscMessage,
} from './protocol.js';

/** The client message a VSC_Error from QEMU acknowledges. */
type Acknowledged = VscMessageType.ReaderAdd | VscMessageType.ReaderRemove | VscMessageType.Atr | VscMessageType.CardRemove;

/** Session state as logged and shown by the `list` command. */
export type SessionState =
  /** Init sent, waiting for QEMU's Init. */
  | 'handshake'
  /** ReaderAdd sent, waiting for QEMU to accept the reader. */
  | 'adding-reader'
  /** QEMU accepted the reader; APDUs are served. */
  | 'ready'
  /** QEMU rejected the reader; the session waits for the connection to end. */
  | 'rejected'
  /** The reader was removed or the connection ended. */
  | 'closed';

/** Output sinks for `-d`: APDU lines from level 1, every VSCard message above level 10. */
export interface SessionTrace {
  level(): number;
  write(line: string): void;
}

export interface ClientSessionOptions {
  reader: Reader;
  /** Writes encoded bytes to the connection. */
  send: (bytes: Uint8Array) => void;
  log: Logger;
  trace?: SessionTrace;
}

/** VSC_SUCCESS as a plain number, for comparing the raw code of a received VSC_Error. */
const SUCCESS: number = VscErrorCode.Success;

/** Trace level from which every VSCard message is printed, as vscclient's `-d 11`. */
export const MESSAGE_TRACE_LEVEL = 11;

/**
 * Quiet time, in milliseconds, that must follow the last reply to an APDU
 * (a response or a VSC_Error) before CardRemove is sent. QEMU 7.2's usb-ccid
 * clears its queue of unread bulk-IN messages when the card is removed
 * (ccid_card_card_removed calls ccid_reset), so a response sent just before
 * CardRemove is lost and the guest's command never ends. The guest reads a
 * response within milliseconds, but the same reset also drops the responses to
 * the guest's own CCID commands (Escape, GetSlotStatus), so CardRemove must
 * not wait so long that it falls into the guest's next burst of activity.
 * 250 ms passed every guest test, also on a host with both cores busy, and
 * a quiet time of one second lost a guest response there.
 */
export const CARD_REMOVE_GRACE_MS = 250;

/**
 * Maximum time CardRemove is held back, in milliseconds, so that a guest
 * that keeps sending APDUs to a removed card still learns of the removal.
 */
export const CARD_REMOVE_MAX_HOLD_MS = 10_000;

export class VscClientSession {
  private state: SessionState = 'handshake';
  private readerId = UNDEFINED_READER_ID;
  private cardAnnounced = false;
  private readonly acknowledgements: Acknowledged[] = [];
  /** When the last reply to an APDU (response or VSC_Error) was sent, from performance.now(). */
  private lastReplyAt = Number.NEGATIVE_INFINITY;
  /** CardRemove held back until the guest has read the last reply. */
  private delayedCardRemove: NodeJS.Timeout | undefined;
  /** When the held CardRemove must go out at the latest, from performance.now(). */
  private cardRemoveDeadline = 0;
  /** APDUs received from QEMU and not yet replied to. */
  private apdusInProgress = 0;
  /** Serialises APDU responses and Flush replies so they leave in arrival order. */
  private work: Promise<void> = Promise.resolve();
  private readonly tracer = new ApduTracer();
  private readonly reader: Reader;
  private readonly log: Logger;

  private readonly onInsert = (atr: Uint8Array): void => {
    this.log.info({ atr: hex(atr) }, 'card inserted');
    this.sendDelayedCardRemove();
    if (this.state === 'ready') this.announceCard();
  };

  private readonly onRemove = (): void => {
    this.log.info('card removed');
    if (this.state !== 'ready' || !this.cardAnnounced) return;
    this.cardAnnounced = false;

    if (this.canSendCardRemove()) {
      this.sendMessage({ type: VscMessageType.CardRemove, readerId: this.readerId });
      return;
    }
    this.log.debug({ apdusInProgress: this.apdusInProgress }, 'holding CardRemove back until the guest has read the last reply');
    this.cardRemoveDeadline = performance.now() + CARD_REMOVE_MAX_HOLD_MS;
    this.scheduleCardRemove();
  };

  private readonly onClose = (): void => {
    this.log.info('reader closed');
    this.removeReader();
  };

  constructor(private readonly options: ClientSessionOptions) {
    this.reader = options.reader;
    this.log = options.log;
    this.reader.on('insert', this.onInsert);
    this.reader.on('remove', this.onRemove);
    this.reader.on('close', this.onClose);
  }

  /** Current state of the session. */
  get currentState(): SessionState {
    return this.state;
  }

  /** The reader id QEMU assigned, or undefined before QEMU accepted the reader. */
  get assignedReaderId(): number | undefined {
    return this.state === 'ready' ? this.readerId : undefined;
  }

  /** Sends the client's Init, which starts the handshake. */
  start(): void {
    this.sendMessage({ type: VscMessageType.Init, readerId: 0, version: VSCARD_VERSION, capabilities: [0] });
  }

  /** Handles one message from QEMU. */
  receive(message: VscMessage): void {
    this.traceMessage('received', message);
    switch (message.type) {
      case VscMessageType.Init:
        this.onHostInit(message.version);
        break;
      case VscMessageType.Error:
        this.onHostError(message.readerId, message.code);
        break;
      case VscMessageType.Apdu: {
        const apdu = message.apdu;
        this.apdusInProgress += 1;
        this.work = this.work.then(() => this.respondToApdu(apdu)).finally(() => (this.apdusInProgress -= 1));
        break;
      }
      case VscMessageType.Flush:
        this.work = this.work.then(() => this.sendMessage({ type: VscMessageType.FlushComplete, readerId: message.readerId }));
        break;
      default:
        this.log.warn({ type: messageTypeName(message.type) }, 'ignoring a message only a client sends; is the peer QEMU?');
    }
  }

  /**
   * Says goodbye the way vscclient's `exit` command does: CardRemove if a
   * card was announced, then ReaderRemove. The connection may close after.
   */
  shutdown(): void {
    this.removeReader();
  }

  /** Detaches from the reader. Later events and responses are not sent. */
  dispose(): void {
    clearTimeout(this.delayedCardRemove);
    this.delayedCardRemove = undefined;
    this.reader.off('insert', this.onInsert);
    this.reader.off('remove', this.onRemove);
    this.reader.off('close', this.onClose);
    this.state = 'closed';
  }

  /** Resolves when every APDU received so far has a response. */
  idle(): Promise<void> {
    return this.work;
  }

  private onHostInit(version: number): void {
    if (this.state !== 'handshake') {
      // QEMU as a socket client sends one Init at realize and one in reply to ours.
      this.log.debug('ignoring a repeated Init from QEMU');
      return;
    }
    if (version !== VSCARD_VERSION) {
      this.log.warn({ version, expected: VSCARD_VERSION }, 'QEMU speaks another VSCard version; continuing');
    }
    this.log.info('handshake complete; announcing the reader');
    this.state = 'adding-reader';
    this.sendMessage({ type: VscMessageType.ReaderRemove, readerId: MINIMAL_READER_ID });
    this.sendMessage({ type: VscMessageType.ReaderAdd, readerId: UNDEFINED_READER_ID, name: this.reader.name });
  }

  private onHostError(readerId: number, code: number): void {
    const acknowledged = this.acknowledgements.shift();
    if (acknowledged === undefined) {
      // QEMU sends no unsolicited errors, so this is a protocol slip worth a line but no reaction.
      this.log.warn({ code: errorCodeName(code), readerId }, 'unexpected VSC_Error from QEMU');
      return;
    }

    if (acknowledged === VscMessageType.ReaderAdd) {
      if (this.state !== 'adding-reader') return;
      if (code !== SUCCESS) {
        this.state = 'rejected';
        this.log.error({ code: errorCodeName(code) }, 'QEMU rejected the reader; is another client attached to this ccid-card-passthru?');
        return;
      }
      this.readerId = readerId;
      this.state = 'ready';
      this.log.info({ readerId, reader: this.reader.name }, 'reader added');
      if (this.reader.atr() !== undefined) this.announceCard();
      else this.log.info('no card in the reader; waiting for an insert');
      return;
    }

    if (code === SUCCESS) {
      this.log.debug({ message: messageTypeName(acknowledged) }, 'QEMU acknowledged');
    } else if (acknowledged === VscMessageType.Atr) {
      this.log.error(
        { code: errorCodeName(code) },
        'QEMU rejected the ATR (longer than 40 bytes or inconsistent); the guest sees no card',
      );
    } else {
      this.log.warn({ message: messageTypeName(acknowledged), code: errorCodeName(code) }, 'QEMU reported an error');
    }
  }

  /** Powers the card on (a cold reset, as vscclient does on insertion) and sends its ATR. */
  private announceCard(): void {
    this.work = this.work.then(async () => {
      if (this.state !== 'ready') return;
      let atr: Uint8Array;
      try {
        atr = await this.reader.reset('cold');
      } catch (error) {
        if (error instanceof NoCardError) return;
        this.log.error({ err: error }, 'powering on the card failed; the guest sees no card');
        return;
      }
      if (this.state !== 'ready') return;
      this.cardAnnounced = true;
      this.tracer.reset();
      this.sendMessage({ type: VscMessageType.Atr, readerId: this.readerId, atr });
      this.log.info({ atr: hex(atr) }, 'card announced to QEMU');
    });
  }

  /**
   * Returns whether CardRemove can go out without losing a reply: no APDU is
   * waiting for the card, and the last reply is older than the quiet time.
   * An APDU that was in flight when the card went away still gets its reply
   * (6F 00 from a relayed card, or VSC_Error), and QEMU would drop that reply
   * if CardRemove came first.
   */
  private canSendCardRemove(): boolean {
    return this.apdusInProgress === 0 && performance.now() - this.lastReplyAt >= CARD_REMOVE_GRACE_MS;
  }

  /**
   * Arms the timer of the held CardRemove for the end of the quiet time
   * after the last reply, or for one quiet time later while an APDU is still
   * in progress. APDUs that arrive meanwhile get VSC_Error, and each of those
   * replies restarts the quiet time, up to the deadline.
   */
  private scheduleCardRemove(): void {
    const now = performance.now();
    const quietEnd = this.apdusInProgress > 0 ? now + CARD_REMOVE_GRACE_MS : this.lastReplyAt + CARD_REMOVE_GRACE_MS;
    const wait = Math.min(quietEnd, this.cardRemoveDeadline) - now;
    this.delayedCardRemove = setTimeout(() => {
      if (!this.canSendCardRemove() && performance.now() < this.cardRemoveDeadline) {
        this.scheduleCardRemove();
        return;
      }
      this.sendDelayedCardRemove();
    }, Math.max(0, wait));
  }

  /** Sends a CardRemove that `onRemove` held back, if one is waiting. */
  private sendDelayedCardRemove(): void {
    if (this.delayedCardRemove === undefined) return;
    clearTimeout(this.delayedCardRemove);
    this.delayedCardRemove = undefined;
    if (this.state === 'ready') this.sendMessage({ type: VscMessageType.CardRemove, readerId: this.readerId });
  }

  private removeReader(): void {
    if (this.state !== 'ready' && this.state !== 'adding-reader') return;
    this.sendDelayedCardRemove();
    if (this.cardAnnounced) {
      this.cardAnnounced = false;
      this.sendMessage({ type: VscMessageType.CardRemove, readerId: this.readerId });
    }
    this.sendMessage({ type: VscMessageType.ReaderRemove, readerId: this.readerId === UNDEFINED_READER_ID ? MINIMAL_READER_ID : this.readerId });
    this.state = 'closed';
    this.log.info('reader removed from QEMU');
  }

  private async respondToApdu(apdu: Uint8Array): Promise<void> {
    if (this.state === 'closed') return;
    const traceApdus = (this.options.trace?.level() ?? 0) > 0;
    if (traceApdus) this.options.trace?.write(`APDU > ${this.tracer.command(apdu)}`);

    if (this.state !== 'ready' || !this.cardAnnounced) {
      this.log.warn({ state: this.state }, 'APDU received while no card is announced; sending VSC_Error instead of a response');
      this.sendApduError();
      return;
    }

    let response: Uint8Array;
    try {
      response = await this.reader.transmit(apdu);
    } catch (error) {
      if (error instanceof NoCardError) {
        this.log.warn('APDU received after the card was removed; sending VSC_Error instead of a response');
      } else {
        this.log.error({ err: error }, 'the card failed to process an APDU; sending VSC_Error instead of a response');
      }
      if (traceApdus) this.options.trace?.write('APDU < (no response: VSC_Error sent)');
      this.sendApduError();
      return;
    }

    if (response.length > MAX_PAYLOAD_LENGTH) {
      this.log.error({ length: response.length }, 'response APDU longer than QEMU accepts; sending VSC_Error instead');
      this.sendApduError();
      return;
    }
    if (traceApdus) this.options.trace?.write(`APDU < ${this.tracer.response(response)}`);
    this.sendMessage({ type: VscMessageType.Apdu, readerId: this.readerId, apdu: response });
    this.lastReplyAt = performance.now();
  }

  /** Replies to an APDU with VSC_Error, which QEMU queues for the guest like a response. */
  private sendApduError(): void {
    this.sendError(VscErrorCode.GeneralError);
    this.lastReplyAt = performance.now();
  }

  private sendError(code: VscErrorCode): void {
    this.sendMessage({ type: VscMessageType.Error, readerId: this.readerId === UNDEFINED_READER_ID ? MINIMAL_READER_ID : this.readerId, code });
  }

  private sendMessage(message: VscMessage): void {
    if (this.state === 'closed') return;
    if (
      message.type === VscMessageType.ReaderAdd ||
      message.type === VscMessageType.ReaderRemove ||
      message.type === VscMessageType.Atr ||
      message.type === VscMessageType.CardRemove
    ) {
      this.acknowledgements.push(message.type);
    }
    this.traceMessage('sent', message);
    this.options.send(encodeMessage(message));
  }

  private traceMessage(direction: 'sent' | 'received', message: VscMessage): void {
    const trace = this.options.trace;
    if (trace === undefined || trace.level() < MESSAGE_TRACE_LEVEL) return;
    trace.write(`VSCard ${direction} ${describeMessage(message)}`);
  }
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

/** Describes a message for the message-level trace; APDU payloads are shown by length only. */
function describeMessage(message: VscMessage): string {
  const head = `${messageTypeName(message.type)} reader_id=0x${message.readerId.toString(16)}`;
  switch (message.type) {
    case VscMessageType.Init:
      return `${head} version=${message.version} capabilities=[${message.capabilities.join(',')}]`;
    case VscMessageType.Error:
      return `${head} ${errorCodeName(message.code)}`;
    case VscMessageType.ReaderAdd:
      return `${head} name=${JSON.stringify(message.name)}`;
    case VscMessageType.Atr:
      return `${head} atr=${hex(message.atr)}`;
    case VscMessageType.Apdu:
      return `${head} length=${message.apdu.length}`;
    default:
      return head;
  }
}
