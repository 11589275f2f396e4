/** The reason a byte stream is not valid VSCard. */
export type VscProtocolErrorKind =
  /** The header's type field is not one of the nine message types. */
  | 'unknown-type'
  /** The header's length field exceeds the 65524 bytes QEMU can receive. */
  | 'payload-too-long'
  /** An Init message does not start with the raw bytes "VSCD". */
  | 'bad-magic'
  /** The payload length or content does not fit the message type. */
  | 'invalid-payload'
  /** The stream ended inside a message. */
  | 'truncated';

/** Raised by the VSCard encoder and decoder when bytes or values break the protocol. */
export class VscProtocolError extends Error {
  constructor(
    readonly kind: VscProtocolErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'VscProtocolError';
  }
}
