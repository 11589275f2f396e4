/**
 * The applet seam of the card engine: an applet is selected by AID on a
 * logical channel and gets every APDU of that channel first.
 */
import type { CommandApdu } from '../iso7816/apdu.js';

/**
 * What an applet does with a command: a complete response APDU, or
 * `undefined` to pass the command on to the ISO handler of the card (SELECT
 * by AID, VERIFY, GET RESPONSE and the 69 00 status word for the rest), like libcacard's
 * VCARD_NEXT.
 */
export type AppletResult = Uint8Array | undefined;

/** The card services an applet may use while it processes a command. */
export interface CardContext {
  /**
   * Builds the response for `data` under the card's response sizing rule:
   * data and `sw` when it fits in `le`, otherwise the data becomes the card's
   * pending GET RESPONSE buffer and the response is 61 xx. The card keeps a
   * reference to `data` without copying, so the caller must not modify it.
   */
  respond(data: Uint8Array, le: number, sw?: number): Uint8Array;
  /** Whether the cardholder PIN has been verified since the last reset. */
  readonly pinVerified: boolean;
  /** Card serial number, or an empty array when the card has none. */
  readonly serial: Uint8Array;
  /** Sets the lasting Windows-compatibility flag (the Microsoft PnP applet does this). */
  setWindowsCompatible(): void;
}

export interface Applet {
  /** Application identifier; SELECT matches it exactly unless `matchesAid` is given. */
  readonly aid: Uint8Array;
  /**
   * Decides whether SELECT by AID with `requested` selects this applet, for
   * applets that accept a truncated AID (PIV accepts any prefix from the RID
   * on). Absent means an exact match with `aid`.
   */
  matchesAid?(requested: Uint8Array): boolean;
  /** Short name for logs, e.g. "PKI 0" or "CCC". */
  readonly name: string;
  /**
   * Returns the data of the SELECT response (the FCI), or undefined for the
   * generic FCI `6F L 84 Lc <AID> A5 00`.
   */
  selectResponse?(): Uint8Array | undefined;
  /** Resets the applet's per-selection state; runs on every successful SELECT of it. */
  onSelect?(): void;
  /** Processes one command sent on a channel where this applet is selected. */
  process(apdu: CommandApdu, card: CardContext): AppletResult | Promise<AppletResult>;
}
