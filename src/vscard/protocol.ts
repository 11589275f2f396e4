/**
 * Constants and message shapes of the VSCard protocol spoken between QEMU's
 * `ccid-card-passthru` device (the host) and a card owner such as vscclient
 * (the client), as defined by libcacard's `vscard_common.h`.
 *
 * Every message is a 12-byte header of three big-endian uint32 fields
 * (type, reader_id, length) followed by `length` payload bytes.
 */

/** Message type codes (`VSCMsgType`). */
export enum VscMessageType {
  Init = 1,
  Error = 2,
  ReaderAdd = 3,
  ReaderRemove = 4,
  Atr = 5,
  CardRemove = 6,
  Apdu = 7,
  Flush = 8,
  FlushComplete = 9,
}

/** Error codes carried by a VSC_Error message (`VSCErrorCode`). */
export enum VscErrorCode {
  Success = 0,
  GeneralError = 1,
  CannotAddMoreReaders = 2,
  /** Spelled VSC_CARD_ALREAY_INSERTED in libcacard; neither QEMU nor vscclient sends it. */
  CardAlreadyInserted = 3,
}

/** Length of the message header in bytes. */
export const HEADER_LENGTH = 12;

/**
 * Largest payload QEMU 7.2's ccid-card-passthru can receive: its input buffer
 * is 64 KiB including the header. A longer message makes QEMU drop the
 * chardev until the VM restarts, so neither side may send one.
 */
export const MAX_PAYLOAD_LENGTH = 65536 - HEADER_LENGTH;

/** The Init magic, sent as these four ASCII bytes ("VSCD") without byte swapping. */
export const VSCARD_MAGIC: Uint8Array = Uint8Array.of(0x56, 0x53, 0x43, 0x44);

/** Packs a protocol version the way `vscard_common.h` does: 11 bits major, 11 bits middle, 10 bits minor. */
export function makeVersion(major: number, middle: number, minor: number): number {
  return ((major << 21) | (middle << 10) | minor) >>> 0;
}

/** The protocol version both QEMU 7.2 and libcacard 2.8 send: 0.0.2. */
export const VSCARD_VERSION = makeVersion(0, 0, 2);

/** Reader id meaning "no reader assigned yet" (`VSCARD_UNDEFINED_READER_ID`). */
export const UNDEFINED_READER_ID = 0xffffffff;

/** The first reader id QEMU assigns (`VSCARD_MINIMAL_READER_ID`). Passthru supports only this one. */
export const MINIMAL_READER_ID = 0;

interface MessageBase {
  /** The header's reader_id field. */
  readerId: number;
}

export interface InitMessage extends MessageBase {
  type: VscMessageType.Init;
  version: number;
  /** Capability words; QEMU and vscclient send a single 0. */
  capabilities: number[];
}

export interface ErrorMessage extends MessageBase {
  type: VscMessageType.Error;
  /** A `VscErrorCode` from QEMU. vscclient sends arbitrary reader status values here. */
  code: number;
}

export interface ReaderAddMessage extends MessageBase {
  type: VscMessageType.ReaderAdd;
  /** Informational reader name (UTF-8). QEMU ignores it, and vscclient sends none. */
  name: string;
}

export interface AtrMessage extends MessageBase {
  type: VscMessageType.Atr;
  atr: Uint8Array;
}

export interface ApduMessage extends MessageBase {
  type: VscMessageType.Apdu;
  /** A command APDU (host to client) or a response APDU with SW1 SW2 (client to host). */
  apdu: Uint8Array;
}

/** Message types whose payload is always empty. */
export type EmptyMessageType =
  | VscMessageType.ReaderRemove
  | VscMessageType.CardRemove
  | VscMessageType.Flush
  | VscMessageType.FlushComplete;

export interface EmptyMessage extends MessageBase {
  type: EmptyMessageType;
}

/** Any VSCard message, discriminated by `type`. */
export type VscMessage = InitMessage | ErrorMessage | ReaderAddMessage | AtrMessage | ApduMessage | EmptyMessage;

/** Returns the protocol name of a message type, e.g. "VSC_APDU", or "type 0x2A" for an unknown one. */
export function messageTypeName(type: number): string {
  const name: string | undefined = VscMessageType[type];
  if (name === undefined) return `type 0x${type.toString(16).toUpperCase()}`;
  return `VSC_${name === 'Atr' ? 'ATR' : name === 'Apdu' ? 'APDU' : name}`;
}

const ERROR_CODE_NAMES: Record<number, string> = {
  [VscErrorCode.Success]: 'VSC_SUCCESS',
  [VscErrorCode.GeneralError]: 'VSC_GENERAL_ERROR',
  [VscErrorCode.CannotAddMoreReaders]: 'VSC_CANNOT_ADD_MORE_READERS',
  [VscErrorCode.CardAlreadyInserted]: 'VSC_CARD_ALREADY_INSERTED',
};

/** Returns the protocol name of an error code, e.g. "VSC_SUCCESS", or "code 7" for an unknown one. */
export function errorCodeName(code: number): string {
  return ERROR_CODE_NAMES[code] ?? `code ${code}`;
}
