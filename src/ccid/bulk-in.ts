/**
 * The RDR_to_PC messages waiting for the host on the bulk IN endpoint, and
 * how they are cut into USB packets.
 *
 * A message goes out in 64-byte packets; a shorter packet ends it, so a
 * message whose length is a multiple of 64 is followed by a zero-length
 * packet (CCID 1.1 section 5.2). One host transfer carries at most one
 * message: the transfer ends with the message's short packet or when the
 * host's buffer is full, whichever comes first.
 *
 * QEMU 7.2 applies the zero-length rule per packet handed to it, not per
 * USB packet, so on a controller that hands over whole transfers (xHCI) the
 * zero-length packet becomes the answer to the host's next read. Here the
 * rule is applied per 64-byte packet inside each transfer, which gives the
 * same bytes as QEMU on UHCI and correct transfers on xHCI. QEMU 7.2 also
 * drops messages above 384 bytes; this queue keeps messages of any length.
 */
import { MAX_PACKET_SIZE } from './constants.js';

export class BulkInQueue {
  private readonly messages: Uint8Array[] = [];
  /** Bytes of the head message already sent. */
  private sent = 0;

  get length(): number {
    return this.messages.length;
  }

  push(message: Uint8Array): void {
    this.messages.push(message);
  }

  /** Removes every message, also one partly read: after a USB reset the host starts afresh. */
  reset(): void {
    this.messages.length = 0;
    this.sent = 0;
  }

  /**
   * Returns the data of one bulk IN transfer of at most `maxLength` bytes, or
   * undefined (NAK) when no message is waiting.
   */
  read(maxLength: number): Uint8Array | undefined {
    const message = this.messages[0];
    if (message === undefined) return undefined;

    const start = this.sent;
    let end = start;
    let ended = false;
    while (end - start < maxLength) {
      const packet = Math.min(MAX_PACKET_SIZE, message.length - end, maxLength - (end - start));
      end += packet;
      if (packet < MAX_PACKET_SIZE) {
        // A short packet: either the end of the message or the host's buffer is full.
        ended = end === message.length;
        break;
      }
    }

    if (ended) {
      this.messages.shift();
      this.sent = 0;
    } else {
      this.sent = end;
    }
    return message.subarray(start, end);
  }
}
