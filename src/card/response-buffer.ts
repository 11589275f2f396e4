/**
 * The card's single pending GET RESPONSE buffer and the response sizing
 * rule of libcacard 2.8 (card_7816.c, vcard_response_new and GET RESPONSE).
 */
import { encodeResponseApdu, statusOnlyResponse } from '../iso7816/response.js';
import { bytesAvailable, SW_DATA_NOT_FOUND, SW_SUCCESS } from '../iso7816/status-words.js';

export class ResponseBuffer {
  private pending: Uint8Array | undefined;
  private offset = 0;

  /** Whether response data waits for GET RESPONSE. */
  get hasPending(): boolean {
    return this.pending !== undefined;
  }

  /** Drops pending data; any command other than GET RESPONSE and every reset does this. */
  clear(): void {
    this.pending = undefined;
    this.offset = 0;
  }

  /**
   * Returns data followed by `sw` when `data.length <= le`. Otherwise keeps
   * `data` (by reference) as the pending buffer, replacing any earlier one,
   * and returns 61 xx with xx = the length, or 00 above 255. A command without
   * Le has `le` 0, so any data at all goes through GET RESPONSE.
   */
  respond(data: Uint8Array, le: number, sw: number = SW_SUCCESS): Uint8Array {
    if (data.length <= le) return encodeResponseApdu(data, sw);
    this.pending = data;
    this.offset = 0;
    return statusOnlyResponse(bytesAvailable(data.length));
  }

  /**
   * Processes GET RESPONSE: 6A 88 without pending data, otherwise the next
   * min(remaining, le) bytes with 61 xx while data remains (xx = remaining,
   * 00 for 256 or more) or 90 00 with the last bytes, which frees the buffer.
   * Le 0 (no Le byte) returns no data and leaves the buffer as it is.
   */
  getResponse(le: number): Uint8Array {
    const pending = this.pending;
    if (pending === undefined) return statusOnlyResponse(SW_DATA_NOT_FOUND);

    const remaining = pending.length - this.offset;
    const count = Math.min(remaining, le);
    const left = remaining - count;
    const chunk = pending.subarray(this.offset, this.offset + count);
    this.offset += count;

    if (left === 0) {
      this.clear();
      return encodeResponseApdu(chunk, SW_SUCCESS);
    }
    return encodeResponseApdu(chunk, bytesAvailable(Math.min(left, 256)));
  }
}
