/**
 * The PC/SC API of pcsc-lite (libpcsclite.so.1), called through the koffi FFI package.
 *
 * No npm binding for pcsc-lite offers everything the relay needs: reader
 * states with correct ATRs, SCardBeginTransaction/SCardEndTransaction,
 * SCardReconnect and SCardCancel. So this module declares the dozen
 * functions itself, and docs/physical-cards.md explains the choice.
 *
 * Every call that may block (waiting for a reader change, talking to a card)
 * runs on one of koffi's worker threads and returns a promise. pcsc-lite
 * serialises calls per context, so each user of this module (the monitor,
 * every relayed reader) owns its own context.
 *
 * Types follow pcsc-lite's <PCSC/wintypes.h> on Linux: DWORD and LONG are
 * `unsigned long` and `long`, so 64 bits wide on x86_64 and arm64, and
 * SCARD_READERSTATE is not packed. macOS and Windows differ in both points.
 */
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import type * as Koffi from 'koffi';

// Return codes from <PCSC/pcsclite.h>, as unsigned 32-bit numbers.
export const SCARD_S_SUCCESS = 0x00000000;
export const SCARD_E_CANCELLED = 0x80100002;
export const SCARD_E_INVALID_HANDLE = 0x80100003;
export const SCARD_E_UNKNOWN_READER = 0x80100009;
export const SCARD_E_TIMEOUT = 0x8010000a;
export const SCARD_E_SHARING_VIOLATION = 0x8010000b;
export const SCARD_E_NO_SMARTCARD = 0x8010000c;
export const SCARD_E_PROTO_MISMATCH = 0x8010000f;
export const SCARD_E_NOT_TRANSACTED = 0x80100016;
export const SCARD_E_READER_UNAVAILABLE = 0x80100017;
export const SCARD_E_NO_SERVICE = 0x8010001d;
export const SCARD_E_SERVICE_STOPPED = 0x8010001e;
export const SCARD_E_NO_READERS_AVAILABLE = 0x8010002e;
export const SCARD_F_COMM_ERROR = 0x80100013;
export const SCARD_W_UNRESPONSIVE_CARD = 0x80100066;
export const SCARD_W_UNPOWERED_CARD = 0x80100067;
export const SCARD_W_RESET_CARD = 0x80100068;
export const SCARD_W_REMOVED_CARD = 0x80100069;

export const SCARD_SCOPE_SYSTEM = 0x0002;

export const SCARD_SHARE_EXCLUSIVE = 0x0001;
export const SCARD_SHARE_SHARED = 0x0002;

export const SCARD_PROTOCOL_T0 = 0x0001;
export const SCARD_PROTOCOL_T1 = 0x0002;
export const SCARD_PROTOCOL_RAW = 0x0004;

export const SCARD_LEAVE_CARD = 0x0000;
export const SCARD_RESET_CARD = 0x0001;
export const SCARD_UNPOWER_CARD = 0x0002;

export const SCARD_STATE_UNAWARE = 0x0000;
export const SCARD_STATE_IGNORE = 0x0001;
export const SCARD_STATE_CHANGED = 0x0002;
export const SCARD_STATE_UNKNOWN = 0x0004;
export const SCARD_STATE_UNAVAILABLE = 0x0008;
export const SCARD_STATE_EMPTY = 0x0010;
export const SCARD_STATE_PRESENT = 0x0020;
export const SCARD_STATE_EXCLUSIVE = 0x0080;
export const SCARD_STATE_INUSE = 0x0100;
export const SCARD_STATE_MUTE = 0x0200;

export const INFINITE = 0xffffffff;
export const MAX_ATR_SIZE = 33;
/** Largest response of an extended-length APDU: 64 KiB of data, headers and SW1 SW2 (MAX_BUFFER_SIZE_EXTENDED). */
export const MAX_BUFFER_SIZE_EXTENDED = 4 + 3 + (1 << 16) + 3 + 2;

/** The pseudo reader whose state changes when a reader is added or removed. */
export const PNP_NOTIFICATION = '\\\\?PnP?\\Notification';

/** A failed PC/SC call: the function, the return code and pcsc-lite's text for it. */
export class PcscError extends Error {
  constructor(
    readonly functionName: string,
    readonly code: number,
    context?: string,
  ) {
    super(`${functionName}${context ? ` (${context})` : ''} failed: ${describeReturnCode(code)}`);
    this.name = 'PcscError';
  }
}

/** Formats a return code as `SCARD_E_SHARING_VIOLATION (0x8010000B): <pcsc-lite text>`. */
export function describeReturnCode(code: number): string {
  const hex = `0x${code.toString(16).toUpperCase().padStart(8, '0')}`;
  const name = RETURN_CODE_NAMES.get(code);
  const text = loadedLibrary?.stringifyError(code);
  return `${name ? `${name} (${hex})` : hex}${text ? `: ${text}` : ''}`;
}

const RETURN_CODE_NAMES = new Map<number, string>([
  [SCARD_E_CANCELLED, 'SCARD_E_CANCELLED'],
  [SCARD_E_INVALID_HANDLE, 'SCARD_E_INVALID_HANDLE'],
  [SCARD_E_UNKNOWN_READER, 'SCARD_E_UNKNOWN_READER'],
  [SCARD_E_TIMEOUT, 'SCARD_E_TIMEOUT'],
  [SCARD_E_SHARING_VIOLATION, 'SCARD_E_SHARING_VIOLATION'],
  [SCARD_E_NO_SMARTCARD, 'SCARD_E_NO_SMARTCARD'],
  [SCARD_E_PROTO_MISMATCH, 'SCARD_E_PROTO_MISMATCH'],
  [SCARD_E_NOT_TRANSACTED, 'SCARD_E_NOT_TRANSACTED'],
  [SCARD_E_READER_UNAVAILABLE, 'SCARD_E_READER_UNAVAILABLE'],
  [SCARD_E_NO_SERVICE, 'SCARD_E_NO_SERVICE'],
  [SCARD_E_SERVICE_STOPPED, 'SCARD_E_SERVICE_STOPPED'],
  [SCARD_E_NO_READERS_AVAILABLE, 'SCARD_E_NO_READERS_AVAILABLE'],
  [SCARD_F_COMM_ERROR, 'SCARD_F_COMM_ERROR'],
  [SCARD_W_UNRESPONSIVE_CARD, 'SCARD_W_UNRESPONSIVE_CARD'],
  [SCARD_W_UNPOWERED_CARD, 'SCARD_W_UNPOWERED_CARD'],
  [SCARD_W_RESET_CARD, 'SCARD_W_RESET_CARD'],
  [SCARD_W_REMOVED_CARD, 'SCARD_W_REMOVED_CARD'],
]);

/** One entry of SCardGetStatusChange's reader list, as koffi marshals SCARD_READERSTATE. */
export interface ReaderState {
  szReader: string;
  pvUserData: null;
  dwCurrentState: number;
  dwEventState: number;
  cbAtr: number;
  rgbAtr: Uint8Array;
}

/** A reader's state after SCardGetStatusChange: flags and the ATR of a present card. */
export interface ReaderStatus {
  readonly reader: string;
  /** dwEventState: SCARD_STATE_* flags in the low 16 bits, pcsc-lite's event counter in the high 16. */
  readonly eventState: number;
  readonly atr: Uint8Array;
}

/** A connection to a card: its handle and the protocol PC/SC negotiated. */
export interface CardConnection {
  readonly handle: number;
  readonly protocol: number;
}

type AsyncFunction = (...args: unknown[]) => Promise<number>;

interface PcscLibrary {
  establishContext: AsyncFunction;
  releaseContext: AsyncFunction;
  listReaders: AsyncFunction;
  getStatusChange: AsyncFunction;
  cancel: (context: number) => number;
  connect: AsyncFunction;
  reconnect: AsyncFunction;
  disconnect: AsyncFunction;
  beginTransaction: AsyncFunction;
  endTransaction: AsyncFunction;
  status: AsyncFunction;
  transmit: AsyncFunction;
  stringifyError: (code: number) => string;
}

let loadedLibrary: PcscLibrary | undefined;

function toAsync(fn: ReturnType<Koffi.LibraryHandle['func']>): AsyncFunction {
  const call = promisify(fn.async as (...args: unknown[]) => void) as unknown as (...args: unknown[]) => Promise<number>;
  // LONG is signed: bring the 0x801000xx codes back into the unsigned range of the constants.
  return async (...args: unknown[]) => (await call(...args)) >>> 0;
}

/** Loads libpcsclite.so.1 once; throws with an install hint when it is missing. */
function loadLibrary(): PcscLibrary {
  if (loadedLibrary !== undefined) return loadedLibrary;
  if (process.platform !== 'linux') {
    throw new Error(`PC/SC support is implemented for pcsc-lite on Linux only, not for ${process.platform}`);
  }

  const require = createRequire(import.meta.url);
  const koffi = require('koffi') as typeof Koffi;
  let library: Koffi.LibraryHandle;
  try {
    library = koffi.load('libpcsclite.so.1');
  } catch (error) {
    throw new Error(
      `loading libpcsclite.so.1 failed (${String(error)}): install pcsc-lite's client library, e.g. apt-get install libpcsclite1`,
    );
  }

  koffi.struct('SCARD_READERSTATE', {
    szReader: 'const char *',
    pvUserData: 'void *',
    dwCurrentState: 'unsigned long',
    dwEventState: 'unsigned long',
    cbAtr: 'unsigned long',
    rgbAtr: koffi.array('uint8_t', MAX_ATR_SIZE, 'Typed'),
  });
  koffi.struct('SCARD_IO_REQUEST', { dwProtocol: 'unsigned long', cbPciLength: 'unsigned long' });

  const declare = (prototype: string): AsyncFunction => toAsync(library.func(prototype));
  const cancel = library.func('long SCardCancel(long hContext)');
  const stringify = library.func('const char *pcsc_stringify_error(long pcscError)');

  loadedLibrary = {
    establishContext: declare(
      'long SCardEstablishContext(unsigned long dwScope, void *pvReserved1, void *pvReserved2, _Out_ long *phContext)',
    ),
    releaseContext: declare('long SCardReleaseContext(long hContext)'),
    listReaders: declare(
      'long SCardListReaders(long hContext, const char *mszGroups, void *mszReaders, _Inout_ unsigned long *pcchReaders)',
    ),
    getStatusChange: declare(
      'long SCardGetStatusChange(long hContext, unsigned long dwTimeout, _Inout_ SCARD_READERSTATE *rgReaderStates, unsigned long cReaders)',
    ),
    cancel: (context: number) => (cancel(context) as number) >>> 0,
    connect: declare(
      'long SCardConnect(long hContext, const char *szReader, unsigned long dwShareMode, unsigned long dwPreferredProtocols, _Out_ long *phCard, _Out_ unsigned long *pdwActiveProtocol)',
    ),
    reconnect: declare(
      'long SCardReconnect(long hCard, unsigned long dwShareMode, unsigned long dwPreferredProtocols, unsigned long dwInitialization, _Out_ unsigned long *pdwActiveProtocol)',
    ),
    disconnect: declare('long SCardDisconnect(long hCard, unsigned long dwDisposition)'),
    beginTransaction: declare('long SCardBeginTransaction(long hCard)'),
    endTransaction: declare('long SCardEndTransaction(long hCard, unsigned long dwDisposition)'),
    status: declare(
      'long SCardStatus(long hCard, void *szReaderName, _Inout_ unsigned long *pcchReaderLen, _Out_ unsigned long *pdwState, _Out_ unsigned long *pdwProtocol, void *pbAtr, _Inout_ unsigned long *pcbAtrLen)',
    ),
    transmit: declare(
      'long SCardTransmit(long hCard, const SCARD_IO_REQUEST *pioSendPci, const uint8_t *pbSendBuffer, unsigned long cbSendLength, void *pioRecvPci, void *pbRecvBuffer, _Inout_ unsigned long *pcbRecvLength)',
    ),
    stringifyError: (code: number) => stringify(code) as string,
  };
  return loadedLibrary;
}

function check(functionName: string, code: number, context?: string): void {
  if (code !== SCARD_S_SUCCESS) throw new PcscError(functionName, code, context);
}

/**
 * One PC/SC context (SCardEstablishContext). Calls on one context are
 * serialised by pcsc-lite; `cancel()` is the exception and may interrupt a
 * pending `getStatusChange()`.
 */
export class PcscContext {
  private released = false;

  private constructor(
    private readonly library: PcscLibrary,
    readonly handle: number,
  ) {}

  /** Connects to the PC/SC service (pcscd); rejects with SCARD_E_NO_SERVICE when it is not running. */
  static async establish(): Promise<PcscContext> {
    const library = loadLibrary();
    const handleOut = [0];
    check('SCardEstablishContext', await library.establishContext(SCARD_SCOPE_SYSTEM, null, null, handleOut));
    return new PcscContext(library, handleOut[0] ?? 0);
  }

  /** Returns the names of the connected readers; an empty list when there are none. */
  async listReaders(): Promise<string[]> {
    const lengthInOut = [0];
    let code = await this.library.listReaders(this.handle, null, null, lengthInOut);
    if (code === SCARD_E_NO_READERS_AVAILABLE) return [];
    check('SCardListReaders', code);

    const buffer = Buffer.alloc(lengthInOut[0] ?? 0);
    code = await this.library.listReaders(this.handle, null, buffer, lengthInOut);
    if (code === SCARD_E_NO_READERS_AVAILABLE) return [];
    check('SCardListReaders', code);
    return parseMultiString(buffer.subarray(0, lengthInOut[0]));
  }

  /**
   * Waits until the state of one of `readers` differs from `currentStates`
   * (SCardGetStatusChange). Rejects with SCARD_E_TIMEOUT after `timeoutMs`
   * and with SCARD_E_CANCELLED after `cancel()`.
   */
  async getStatusChange(readers: readonly string[], currentStates: readonly number[], timeoutMs: number): Promise<ReaderStatus[]> {
    const states: ReaderState[] = readers.map((reader, index) => ({
      szReader: reader,
      pvUserData: null,
      dwCurrentState: currentStates[index] ?? SCARD_STATE_UNAWARE,
      dwEventState: 0,
      cbAtr: 0,
      rgbAtr: new Uint8Array(MAX_ATR_SIZE),
    }));
    check('SCardGetStatusChange', await this.library.getStatusChange(this.handle, timeoutMs, states, states.length));
    return states.map((state) => ({
      reader: state.szReader,
      eventState: state.dwEventState,
      atr: Uint8Array.from(state.rgbAtr.subarray(0, Math.min(state.cbAtr, MAX_ATR_SIZE))),
    }));
  }

  /** Interrupts a pending `getStatusChange()` on this context (SCardCancel). */
  cancel(): void {
    if (this.released) return;
    const code = this.library.cancel(this.handle);
    if (code !== SCARD_S_SUCCESS && code !== SCARD_E_INVALID_HANDLE) check('SCardCancel', code);
  }

  /** Connects to the card in `reader` with T=0 or T=1, whichever the card and reader negotiate. */
  async connect(reader: string, shareMode: number): Promise<CardConnection> {
    const handleOut = [0];
    const protocolOut = [0];
    const code = await this.library.connect(
      this.handle,
      reader,
      shareMode,
      SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
      handleOut,
      protocolOut,
    );
    check('SCardConnect', code, `reader "${reader}"`);
    return { handle: handleOut[0] ?? 0, protocol: protocolOut[0] ?? 0 };
  }

  /** Re-establishes a connection and resets or unpowers the card per `initialization`; returns the new protocol. */
  async reconnect(card: CardConnection, shareMode: number, initialization: number): Promise<number> {
    const protocolOut = [0];
    check(
      'SCardReconnect',
      await this.library.reconnect(card.handle, shareMode, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, initialization, protocolOut),
    );
    return protocolOut[0] ?? 0;
  }

  async disconnect(card: CardConnection, disposition: number): Promise<void> {
    check('SCardDisconnect', await this.library.disconnect(card.handle, disposition));
  }

  /** Starts an exclusive transaction; pcsc-lite blocks while another process holds one. */
  async beginTransaction(card: CardConnection): Promise<void> {
    check('SCardBeginTransaction', await this.library.beginTransaction(card.handle));
  }

  async endTransaction(card: CardConnection, disposition: number): Promise<void> {
    check('SCardEndTransaction', await this.library.endTransaction(card.handle, disposition));
  }

  /** Returns the card's current ATR and protocol (SCardStatus). */
  async status(card: CardConnection): Promise<{ atr: Uint8Array; protocol: number; state: number }> {
    const nameBuffer = Buffer.alloc(512);
    const nameLengthInOut = [nameBuffer.length];
    const stateOut = [0];
    const protocolOut = [0];
    const atrBuffer = Buffer.alloc(MAX_ATR_SIZE);
    const atrLengthInOut = [atrBuffer.length];
    check(
      'SCardStatus',
      await this.library.status(card.handle, nameBuffer, nameLengthInOut, stateOut, protocolOut, atrBuffer, atrLengthInOut),
    );
    return {
      atr: Uint8Array.from(atrBuffer.subarray(0, atrLengthInOut[0])),
      protocol: protocolOut[0] ?? 0,
      state: stateOut[0] ?? 0,
    };
  }

  /** Sends one APDU with the PCI of the connection's protocol and returns the response unchanged. */
  async transmit(card: CardConnection, command: Uint8Array): Promise<Uint8Array> {
    const sendPci = { dwProtocol: card.protocol, cbPciLength: 16 };
    const response = Buffer.alloc(MAX_BUFFER_SIZE_EXTENDED);
    const lengthInOut = [response.length];
    check(
      'SCardTransmit',
      await this.library.transmit(card.handle, sendPci, Buffer.from(command), command.length, null, response, lengthInOut),
    );
    return Uint8Array.from(response.subarray(0, lengthInOut[0]));
  }

  /** Releases the context; pending calls on it fail. Safe to call twice. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    check('SCardReleaseContext', await this.library.releaseContext(this.handle));
  }
}

/** Splits a PC/SC multi-string (names separated by NUL, ended by an empty name). */
export function parseMultiString(buffer: Uint8Array): string[] {
  return Buffer.from(buffer)
    .toString('utf8')
    .split('\0')
    .filter((name) => name.length > 0);
}
