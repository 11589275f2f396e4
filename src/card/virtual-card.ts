/**
 * The virtual card engine: a "VM card" in libcacard's terms (libcacard 2.8,
 * vcard.c and card_7816.c). Applets are selected by AID on logical channels,
 * every APDU goes first to the applet selected on its channel, and what the
 * applet passes on goes to the ISO handler below (SELECT by AID, VERIFY,
 * GET RESPONSE; everything else gets 69 00).
 */
import { parseCommandApdu, type CommandApdu } from '../iso7816/apdu.js';
import { statusOnlyResponse } from '../iso7816/response.js';
import {
  SW_COMMAND_NOT_ALLOWED,
  SW_FILE_NOT_FOUND,
  SW_FUNCTION_NOT_SUPPORTED,
  SW_NO_PRECISE_DIAGNOSIS,
  SW_SECURE_MESSAGING_NOT_SUPPORTED,
  SW_WRONG_LENGTH,
  SW_WRONG_PARAMETERS,
  formatStatusWord,
} from '../iso7816/status-words.js';
import { logger } from '../log/logger.js';
import type { Applet, CardContext } from './applet.js';
import { decodeClass, LOGICAL_CHANNELS, type DecodedClass } from './class-byte.js';
import type { PinState } from './pin.js';
import { ResponseBuffer } from './response-buffer.js';

const log = logger.child({ component: 'card' });

const INS_SELECT = 0xa4;
const INS_VERIFY = 0x20;
const INS_GET_RESPONSE = 0xc0;
const SELECT_BY_AID = 0x04;

/** A card as a reader drives it: an ATR, power control and APDU exchange. */
export interface SmartCard {
  readonly atr: Uint8Array;
  /** Powers the card on or resets it (cold and warm resets behave the same). */
  reset(): void;
  /** Powers the card off; the next command or reset starts from the power-on state. */
  powerOff(): void;
  /** Processes one command APDU and resolves to the response APDU. Commands run one at a time, in order. */
  transmit(command: Uint8Array): Promise<Uint8Array>;
}

export interface VirtualCardOptions {
  readonly atr: Uint8Array;
  /** Applets in lookup order; SELECT takes the first exact AID match. */
  readonly applets: readonly Applet[];
  readonly pin: PinState;
  /** Serial number some applets report (the CAC card: SHA-256 of its first certificate). */
  readonly serial?: Uint8Array;
}

/** Builds the FCI libcacard returns for a selected applet: `6F (Lc+4) 84 Lc <AID> A5 00`. */
export function genericFci(aid: Uint8Array): Uint8Array {
  const fci = new Uint8Array(aid.length + 6);
  fci[0] = 0x6f;
  fci[1] = aid.length + 4;
  fci[2] = 0x84;
  fci[3] = aid.length;
  fci.set(aid, 4);
  fci[aid.length + 4] = 0xa5;
  fci[aid.length + 5] = 0x00;
  return fci;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class VirtualCard implements SmartCard, CardContext {
  readonly atr: Uint8Array;
  readonly serial: Uint8Array;
  readonly pin: PinState;
  private readonly applets: readonly Applet[];
  private readonly selected: (Applet | undefined)[] = new Array<Applet | undefined>(LOGICAL_CHANNELS).fill(undefined);
  private readonly responses = new ResponseBuffer();
  private windowsCompatibleFlag = false;
  /** Settles when the last queued command has finished; undefined when no command is in flight. */
  private inFlight: Promise<void> | undefined;

  constructor(options: VirtualCardOptions) {
    this.atr = options.atr;
    this.applets = options.applets;
    this.pin = options.pin;
    this.serial = options.serial ?? new Uint8Array(0);
  }

  get pinVerified(): boolean {
    return this.pin.verified;
  }

  /** Whether the Windows-compatibility flag is set; it outlives resets, as in libcacard. */
  get windowsCompatible(): boolean {
    return this.windowsCompatibleFlag;
  }

  setWindowsCompatible(): void {
    this.windowsCompatibleFlag = true;
  }

  /** Returns the applet selected on `channel`, if any. */
  selectedApplet(channel: number): Applet | undefined {
    return this.selected[channel];
  }

  respond(data: Uint8Array, le: number, sw?: number): Uint8Array {
    return this.responses.respond(data, le, sw);
  }

  /**
   * Deselects the applets of every channel, drops pending GET RESPONSE data
   * and clears the PIN's verified state. The PIN retry counter and the
   * Windows-compatibility flag survive.
   */
  reset(): void {
    this.selected.fill(undefined);
    this.responses.clear();
    this.pin.resetSecurityStatus();
  }

  powerOff(): void {
    this.reset();
  }

  transmit(command: Uint8Array): Promise<Uint8Array> {
    // Fast path: with no command in flight, a command that needs no key store runs synchronously.
    if (this.inFlight === undefined) {
      const result = this.processGuarded(command);
      return result instanceof Promise ? this.track(result) : Promise.resolve(result);
    }
    const run = (): Uint8Array | Promise<Uint8Array> => this.processGuarded(command);
    return this.track(this.inFlight.then(run, run));
  }

  /** Makes later commands wait until `result` settles, so commands run one at a time and in order. */
  private track(result: Promise<Uint8Array>): Promise<Uint8Array> {
    const settled: Promise<void> = result.then(
      () => undefined,
      () => undefined,
    );
    this.inFlight = settled;
    void settled.then(() => {
      if (this.inFlight === settled) this.inFlight = undefined;
    });
    return result;
  }

  /** Processes a command; a bug inside the card returns 6F 00 instead of failing the transport. */
  private processGuarded(command: Uint8Array): Uint8Array | Promise<Uint8Array> {
    try {
      const result = this.process(command);
      return result instanceof Promise ? result.catch((error: unknown) => this.internalError(error, command)) : result;
    } catch (error) {
      return this.internalError(error, command);
    }
  }

  private internalError(error: unknown, command: Uint8Array): Uint8Array {
    log.error(
      { err: error, header: Buffer.from(command.subarray(0, 4)).toString('hex') },
      'command failed inside the card; returning 6F 00',
    );
    return statusOnlyResponse(SW_NO_PRECISE_DIAGNOSIS);
  }

  private process(command: Uint8Array): Uint8Array | Promise<Uint8Array> {
    const parsed = parseCommandApdu(command);
    if (!parsed.ok) {
      // A malformed command leaves pending GET RESPONSE data in place, as in libcacard.
      log.debug({ reason: parsed.error.reason, length: command.length }, 'malformed command APDU');
      return statusOnlyResponse(SW_WRONG_LENGTH);
    }

    const apdu = parsed.apdu;
    if (apdu.ins !== INS_GET_RESPONSE) this.responses.clear();
    const decodedClass = decodeClass(apdu.cla);

    const applet = this.selected[decodedClass.channel];
    if (applet === undefined) return this.processIso(apdu, decodedClass);

    const result = applet.process(apdu, this);
    if (result instanceof Promise) {
      return result.then((response) => response ?? this.processIso(apdu, decodedClass));
    }
    return result ?? this.processIso(apdu, decodedClass);
  }

  /** Handles a command no applet took, like libcacard's vcard7816_vm_process_apdu. */
  private processIso(apdu: CommandApdu, decodedClass: DecodedClass): Uint8Array | Promise<Uint8Array> {
    if (decodedClass.kind !== 'interindustry') return statusOnlyResponse(SW_COMMAND_NOT_ALLOWED);
    if (decodedClass.secureMessaging !== 0) return statusOnlyResponse(SW_SECURE_MESSAGING_NOT_SUPPORTED);

    switch (apdu.ins) {
      case INS_SELECT:
        return this.selectByAid(apdu, decodedClass.channel);
      case INS_VERIFY:
        return this.verify(apdu);
      case INS_GET_RESPONSE:
        return this.responses.getResponse(apdu.le);
      default:
        return statusOnlyResponse(SW_COMMAND_NOT_ALLOWED);
    }
  }

  private selectByAid(apdu: CommandApdu, channel: number): Uint8Array {
    if (apdu.p1 !== SELECT_BY_AID) return statusOnlyResponse(SW_FUNCTION_NOT_SUPPORTED);

    const applet = this.applets.find((candidate) =>
      candidate.matchesAid === undefined ? sameBytes(candidate.aid, apdu.data) : candidate.matchesAid(apdu.data),
    );
    // A failed SELECT deselects the channel's current applet, as in libcacard.
    this.selected[channel] = applet;
    if (applet === undefined) return statusOnlyResponse(SW_FILE_NOT_FOUND);

    applet.onSelect?.();
    log.debug({ applet: applet.name, channel }, 'applet selected');
    const fci = applet.selectResponse?.() ?? genericFci(applet.aid);
    return this.responses.respond(fci, apdu.le);
  }

  private verify(apdu: CommandApdu): Uint8Array | Promise<Uint8Array> {
    if (apdu.p1 !== 0 || apdu.p2 !== 0) return statusOnlyResponse(SW_WRONG_PARAMETERS);
    if (apdu.data.length === 0) return statusOnlyResponse(this.pin.status());

    return this.pin.verify(apdu.data).then((sw) => {
      log.info({ result: formatStatusWord(sw), triesLeft: this.pin.remainingTries }, 'PIN verification');
      return statusOnlyResponse(sw);
    });
  }

}

