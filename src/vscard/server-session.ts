/**
 * The host side of one VSCard connection, answering a client as QEMU 7.2's
 * ccid-card-passthru does: Init gets Init; ReaderAdd gets VSC_Error
 * SUCCESS with reader id 0, or VSC_CANNOT_ADD_MORE_READERS with reader id
 * 0xFFFFFFFF when the server has no room; ATR, CardRemove and ReaderRemove
 * get SUCCESS (or GENERAL_ERROR for an ATR QEMU would reject) with the
 * reader id echoed; Flush, FlushComplete and unexpected messages get
 * GENERAL_ERROR. APDU and Error messages from the client answer the
 * oldest command sent to it and get no reply.
 *
 * Differences from QEMU, each because one connection carries one reader:
 * an ATR before ReaderAdd is rejected with GENERAL_ERROR instead of
 * inserting a card into the device's only reader; the reader goes away
 * when the connection ends, where QEMU keeps the card inserted; and a
 * stream that is not valid VSCard (wrong Init magic, unknown type, oversized
 * message) ends the connection, where QEMU continues or disables the device.
 */
import type { Logger } from '../log/logger.js';
import { VscDecoder } from './decoder.js';
import { encodeMessage } from './encode.js';
import { VscProtocolError } from './errors.js';
import {
  MINIMAL_READER_ID,
  UNDEFINED_READER_ID,
  VSCARD_VERSION,
  VscErrorCode,
  VscMessageType,
  errorCodeName,
  messageTypeName,
  type VscMessage,
} from './protocol.js';
import { checkPassthruAtr } from './server-atr.js';
import { RemoteCardReader } from './server-reader.js';

export interface ServerSessionOptions {
  /** Name of the client, e.g. its address, used in the reader name and logs. */
  peer: string;
  /** Writes encoded bytes to the connection. */
  send: (bytes: Uint8Array) => void;
  /** Closes the connection. */
  close: () => void;
  /** Returns whether the server takes another reader; called on ReaderAdd with the new reader. */
  acceptReader: (reader: RemoteCardReader) => boolean;
  log: Logger;
}

export class VscServerSession {
  private readonly decoder = new VscDecoder();
  private reader: RemoteCardReader | undefined;
  private ended = false;

  constructor(private readonly options: ServerSessionOptions) {}

  /** The client's reader, once ReaderAdd was accepted. */
  get currentReader(): RemoteCardReader | undefined {
    return this.reader;
  }

  /** Feeds bytes received from the client. */
  receive(chunk: Uint8Array): void {
    if (this.ended) return;
    this.decoder.push(chunk);
    try {
      for (let message = this.decoder.next(); message !== undefined; message = this.decoder.next()) {
        this.handle(message);
        if (this.ended) return;
      }
    } catch (error) {
      if (!(error instanceof VscProtocolError)) throw error;
      this.options.log.warn({ err: error.message, kind: error.kind }, 'invalid VSCard data from client; closing the connection');
      if (error.kind === 'unknown-type') this.sendError(UNDEFINED_READER_ID, VscErrorCode.GeneralError);
      this.end();
      this.options.close();
    }
  }

  /** Ends the session when the connection closed: the client's reader goes away. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.releaseReader();
  }

  private send(message: VscMessage): void {
    this.options.send(encodeMessage(message));
  }

  private sendError(readerId: number, code: VscErrorCode): void {
    this.send({ type: VscMessageType.Error, readerId, code });
  }

  private releaseReader(): void {
    const reader = this.reader;
    if (reader === undefined) return;
    this.reader = undefined;
    reader.close();
    this.options.log.info({ reader: reader.name }, 'client reader removed');
  }

  private handle(message: VscMessage): void {
    const log = this.options.log;
    log.debug({ type: messageTypeName(message.type), readerId: message.readerId }, 'VSCard message received');

    switch (message.type) {
      case VscMessageType.Init:
        if (message.version !== VSCARD_VERSION) log.debug({ version: message.version }, 'client VSCard version differs');
        this.send({ type: VscMessageType.Init, readerId: UNDEFINED_READER_ID, version: VSCARD_VERSION, capabilities: [0] });
        return;

      case VscMessageType.ReaderAdd: {
        if (this.reader !== undefined) {
          // QEMU acknowledges a repeated ReaderAdd again without change.
          this.sendError(MINIMAL_READER_ID, VscErrorCode.Success);
          return;
        }
        const name = message.name !== '' ? message.name : `VSCard ${this.options.peer}`;
        const reader = new RemoteCardReader(name, (command) =>
          this.send({ type: VscMessageType.Apdu, readerId: MINIMAL_READER_ID, apdu: command }),
        );
        if (!this.options.acceptReader(reader)) {
          log.warn({ reader: name }, 'client reader rejected: no free reader slot');
          this.sendError(UNDEFINED_READER_ID, VscErrorCode.CannotAddMoreReaders);
          return;
        }
        this.reader = reader;
        log.info({ reader: name }, 'client reader added');
        this.sendError(MINIMAL_READER_ID, VscErrorCode.Success);
        return;
      }

      case VscMessageType.ReaderRemove:
        this.releaseReader();
        this.sendError(message.readerId, VscErrorCode.Success);
        return;

      case VscMessageType.Atr: {
        const problem = this.reader === undefined ? 'VSC_ATR before VSC_ReaderAdd' : checkPassthruAtr(message.atr);
        if (problem !== undefined || this.reader === undefined) {
          log.warn({ atr: Buffer.from(message.atr).toString('hex'), problem }, 'client ATR rejected');
          this.sendError(message.readerId, VscErrorCode.GeneralError);
          return;
        }
        this.reader.insertCard(message.atr);
        this.sendError(message.readerId, VscErrorCode.Success);
        return;
      }

      case VscMessageType.CardRemove:
        this.reader?.removeCard();
        this.sendError(message.readerId, VscErrorCode.Success);
        return;

      case VscMessageType.Apdu:
        if (this.reader?.answer(message.apdu) !== true) log.debug('VSC_APDU from client with no command waiting; dropped');
        return;

      case VscMessageType.Error:
        // QEMU only logs the code; a waiting command fails.
        if (this.reader?.answerError(message.code) !== true) {
          log.debug({ code: errorCodeName(message.code) }, 'VSC_Error from client with no command waiting');
        }
        return;

      case VscMessageType.Flush:
      case VscMessageType.FlushComplete:
        log.warn({ type: messageTypeName(message.type) }, 'unexpected VSCard message from client');
        this.sendError(message.readerId, VscErrorCode.GeneralError);
        return;
    }
  }
}
