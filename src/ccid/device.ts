/**
 * A model of QEMU 7.2's usb-ccid reader around a `Reader`: a state machine
 * over the bytes of control transfers, bulk OUT packets, bulk IN and
 * interrupt IN reads, with no I/O of its own. A transport (usbredir, USB/IP)
 * feeds it what the host sends and polls it for what the host reads; the
 * 'bulk-in' and 'interrupt' events signal when a NAKed read would now get data.
 *
 * Modes: with no reader attached the slot is empty; an attached reader
 * without a card also shows an empty slot; an attached reader with a card
 * shows the card. Attaching and detaching never unplug the USB device, as in
 * QEMU.
 */
import { EventEmitter } from 'node:events';
import { logger, type Logger } from '../log/logger.js';
import type { Reader } from '../reader/reader.js';
import { BulkInQueue } from './bulk-in.js';
import {
  CCID_HEADER_LENGTH,
  CommandStatus,
  IccStatus,
  MAX_CCID_MESSAGE_LENGTH,
  MAX_PACKET_SIZE,
  MAX_PENDING_ANSWERS,
  NOTIFY_SLOT_CHANGE,
  PcToRdr,
  RdrToPc,
  SlotError,
} from './constants.js';
import { ControlState, type ControlResult, type SetupPacket } from './control.js';
import { DEFAULT_SERIAL } from './descriptors.js';
import { ProtocolParameters } from './parameters.js';

export interface CcidDeviceOptions {
  /** iSerialNumber text; default the serial QEMU gives a usb-ccid on UHCI port 1. */
  serial?: string;
  /**
   * ATR returned by IccPowerOn before any card was inserted; default empty,
   * as usb-ccid without a card device. The VSCard host uses passthru's default ATR.
   */
  initialAtr?: Uint8Array;
  logger?: Logger;
}

export interface CcidDeviceEvents {
  /** A message is waiting on the bulk IN endpoint. */
  'bulk-in': [];
  /** A NotifySlotChange is waiting on the interrupt IN endpoint. */
  interrupt: [];
}

/** Result of a bulk OUT transfer: accepted, or STALL for a malformed message. */
export type BulkOutResult = 'ok' | 'stall';

interface PendingAnswer {
  slot: number;
  seq: number;
}

export class CcidDevice extends EventEmitter<CcidDeviceEvents> {
  private readonly log: Logger;
  private readonly control: ControlState;
  private readonly bulkIn = new BulkInQueue();
  private readonly parameters = new ProtocolParameters();

  private reader: Reader | undefined;
  private readonly readerListeners = {
    insert: (atr: Uint8Array) => this.cardInserted(atr),
    remove: () => this.cardRemoved(),
    close: () => this.detach(),
  };

  private present = false;
  /** Starts true and only IccPowerOff clears it, as in QEMU: a card inserted later is active at once. */
  private powered = true;
  private atr: Uint8Array;
  private slotState = 0;
  private notificationPending = false;

  /** Bytes of the PC_to_RDR message being assembled; never cleared, as SetParameters reads stale bytes. */
  private readonly assembly = new Uint8Array(MAX_CCID_MESSAGE_LENGTH);
  private assembled = 0;

  private readonly pending: PendingAnswer[] = [];
  /** Incremented whenever pending responses are abandoned, so late card responses can be recognised. */
  private generation = 0;
  /** Card exchanges run one at a time, in XfrBlock order; this is the tail of that chain. */
  private transmitChain: Promise<void> = Promise.resolve();

  constructor(options: CcidDeviceOptions = {}) {
    super();
    this.log = (options.logger ?? logger).child({ component: 'ccid' });
    this.control = new ControlState(options.serial ?? DEFAULT_SERIAL);
    this.atr = options.initialAtr ?? new Uint8Array(0);
  }

  /** The configuration value the host selected (0 when unconfigured). */
  get configuration(): number {
    return this.control.configuration;
  }

  /** The attached reader, if any. */
  get attachedReader(): Reader | undefined {
    return this.reader;
  }

  /** Attaches a reader; a card already in it is inserted at once. Detaches the previous reader first. */
  attach(reader: Reader): void {
    if (this.reader === reader) return;
    this.detach();
    this.reader = reader;
    reader.on('insert', this.readerListeners.insert);
    reader.on('remove', this.readerListeners.remove);
    reader.on('close', this.readerListeners.close);
    this.log.info({ reader: reader.name }, 'reader attached');
    const atr = reader.atr();
    if (atr !== undefined) this.cardInserted(atr);
  }

  /** Detaches the reader. The slot becomes empty and responses still owed by the card are abandoned. */
  detach(): void {
    const reader = this.reader;
    if (reader === undefined) return;
    reader.off('insert', this.readerListeners.insert);
    reader.off('remove', this.readerListeners.remove);
    reader.off('close', this.readerListeners.close);
    this.reader = undefined;
    if (this.present) this.cardRemoved();
    this.log.info({ reader: reader.name }, 'reader detached');
  }

  /** Handles a control transfer on endpoint 0. */
  handleControl(setup: SetupPacket): ControlResult {
    return this.control.handle(setup);
  }

  /**
   * Handles a USB port reset or a new connection of the host: queued and
   * pending responses are dropped without a reply, but slot and power state are kept.
   */
  usbReset(): void {
    this.generation++;
    this.pending.length = 0;
    this.bulkIn.reset();
    this.assembled = 0;
    this.control.address = 0;
    this.control.configuration = 0;
    this.control.remoteWakeup = false;
  }

  /**
   * Handles one bulk OUT transfer, split into 64-byte packets as the host
   * controller would send them. Returns 'stall' when a packet breaks the
   * framing (the message is then discarded and gets no answer).
   */
  bulkOut(transfer: Uint8Array): BulkOutResult {
    if (transfer.length === 0) return this.bulkOutPacket(transfer);
    let result: BulkOutResult = 'ok';
    for (let offset = 0; offset < transfer.length; offset += MAX_PACKET_SIZE) {
      if (this.bulkOutPacket(transfer.subarray(offset, offset + MAX_PACKET_SIZE)) === 'stall') result = 'stall';
    }
    return result;
  }

  /** Returns the data of one bulk IN transfer of at most `maxLength` bytes, or undefined to NAK. */
  readBulkIn(maxLength: number): Uint8Array | undefined {
    return this.bulkIn.read(maxLength);
  }

  /** Returns the pending NotifySlotChange, or undefined to NAK. */
  readInterrupt(): Uint8Array | undefined {
    if (!this.notificationPending) return undefined;
    const message = Uint8Array.of(NOTIFY_SLOT_CHANGE, this.slotState);
    this.notificationPending = false;
    this.slotState &= ~0x02;
    return message;
  }

  private bulkOutPacket(packet: Uint8Array): BulkOutResult {
    // NOTE: QEMU 7.2 stalls a zero-length packet that follows a message whose
    // length is a multiple of 64; CCID 1.1 allows the host to send one, so it
    // is accepted here and ignored.
    if (packet.length === 0 && this.assembled === 0) return 'ok';

    if (this.assembled + packet.length > this.assembly.length) {
      this.log.warn({ length: this.assembled + packet.length }, 'PC_to_RDR message longer than dwMaxCCIDMessageLength; stalled');
      this.assembled = 0;
      return 'stall';
    }
    this.assembly.set(packet, this.assembled);
    this.assembled += packet.length;

    if (this.assembled < CCID_HEADER_LENGTH) {
      this.log.warn({ length: this.assembled }, 'PC_to_RDR message shorter than its 10-byte header; stalled');
      this.assembled = 0;
      return 'stall';
    }
    const view = new DataView(this.assembly.buffer);
    const dwLength = view.getUint32(1, true);
    const dataLength = this.assembled - CCID_HEADER_LENGTH;
    if (dataLength < dwLength && packet.length === MAX_PACKET_SIZE) return 'ok';
    if (dataLength !== dwLength) {
      this.log.warn({ dwLength, dataLength }, 'PC_to_RDR dwLength does not match the data that follows; stalled');
      this.assembled = 0;
      return 'stall';
    }

    const message = this.assembly.slice(0, this.assembled);
    this.assembled = 0;
    this.dispatch(message);
    return 'ok';
  }

  private iccStatus(): IccStatus {
    if (!this.present) return IccStatus.Absent;
    return this.powered ? IccStatus.PresentActive : IccStatus.PresentInactive;
  }

  private bStatus(command: CommandStatus): number {
    return this.iccStatus() | (command << 6);
  }

  private dispatch(message: Uint8Array): void {
    const type = message[0]! as PcToRdr;
    const slot = message[5]!;
    const seq = message[6]!;
    const data = message.subarray(CCID_HEADER_LENGTH);

    if (slot !== 0) {
      this.rejectSlot(type, slot, seq);
      return;
    }

    switch (type) {
      case PcToRdr.GetSlotStatus:
        this.sendSlotStatus(slot, seq, CommandStatus.Ok, 0);
        return;
      case PcToRdr.IccPowerOn:
        // NOTE: as in QEMU 7.2, power-on does not reset the card; it returns the stored ATR.
        this.powered = true;
        if (this.present) {
          this.parameters.applyAtr(this.atr);
          this.sendDataBlock(slot, seq, CommandStatus.Ok, 0, this.atr);
        } else {
          this.sendDataBlock(slot, seq, CommandStatus.Failed, SlotError.IccMute, this.atr);
        }
        return;
      case PcToRdr.IccPowerOff:
        this.powered = false;
        this.sendSlotStatus(slot, seq, CommandStatus.Ok, 0);
        return;
      case PcToRdr.XfrBlock:
        this.xfrBlock(slot, seq, data);
        return;
      case PcToRdr.GetParameters:
        this.sendParameters(slot, seq, CommandStatus.Ok);
        return;
      case PcToRdr.ResetParameters:
        this.parameters.reset();
        this.sendParameters(slot, seq, CommandStatus.Ok);
        return;
      case PcToRdr.SetParameters:
        this.setParameters(slot, seq, message[7]!);
        return;
      default:
        // Mechanical, Escape, IccClock, T0APDU, Secure, Abort,
        // SetDataRateAndClockFrequency and unknown types: not supported.
        this.sendSlotStatus(slot, seq, CommandStatus.Failed, SlotError.CommandNotSupported);
    }
  }

  /**
   * Answers a message for a slot other than 0. QEMU 7.2 ignores bSlot and
   * serves slot 0; CCID 1.1 requires a failed answer with bError 5 (the
   * offset of bSlot) and ICC status "absent", in the message type the
   * command normally gets.
   */
  private rejectSlot(type: PcToRdr, slot: number, seq: number): void {
    const bStatus = IccStatus.Absent | (CommandStatus.Failed << 6);
    switch (type) {
      case PcToRdr.IccPowerOn:
      case PcToRdr.XfrBlock:
      case PcToRdr.Secure:
        this.enqueue(this.header(RdrToPc.DataBlock, 0, slot, seq, bStatus, SlotError.BadSlot, 0));
        return;
      case PcToRdr.GetParameters:
      case PcToRdr.ResetParameters:
      case PcToRdr.SetParameters: {
        const message = this.header(RdrToPc.Parameters, 7, slot, seq, bStatus, SlotError.BadSlot, this.parameters.protocol);
        message.set(this.parameters.data, CCID_HEADER_LENGTH);
        this.enqueue(message);
        return;
      }
      default:
        this.enqueue(this.header(RdrToPc.SlotStatus, 0, slot, seq, bStatus, SlotError.BadSlot, 0));
    }
  }

  private setParameters(slot: number, seq: number, protocolNumber: number): void {
    const protocol = protocolNumber & 0x03;
    if (protocol !== 0 && protocol !== 1) {
      this.sendParameters(slot, seq, CommandStatus.Failed);
      return;
    }
    this.parameters.protocol = protocol;
    // QEMU copies 7 bytes whatever the value of dwLength; missing bytes come from earlier messages.
    this.parameters.data.set(this.assembly.subarray(CCID_HEADER_LENGTH, CCID_HEADER_LENGTH + 7));
    this.sendParameters(slot, seq, CommandStatus.Ok);
  }

  private xfrBlock(slot: number, seq: number, command: Uint8Array): void {
    const reader = this.reader;
    if (this.iccStatus() !== IccStatus.PresentActive || reader === undefined) {
      this.sendDataBlock(slot, seq, CommandStatus.Ok, 0, new Uint8Array(0));
      return;
    }
    if (this.pending.length >= MAX_PENDING_ANSWERS) {
      this.sendDataBlock(slot, seq, CommandStatus.Failed, SlotError.SlotBusy, new Uint8Array(0));
      return;
    }

    this.pending.push({ slot, seq });
    const generation = this.generation;
    this.transmitChain = this.transmitChain.then(async () => {
      if (generation !== this.generation) return;
      let response: Uint8Array | undefined;
      try {
        response = await reader.transmit(command);
      } catch (error) {
        this.log.warn({ err: error, seq }, 'card exchange failed; returning a failed DataBlock for the XfrBlock');
      }
      if (generation !== this.generation) return;
      const answer = this.pending.shift();
      if (answer === undefined) return;
      if (response === undefined) {
        this.sendDataBlock(answer.slot, answer.seq, CommandStatus.Failed, SlotError.CommandNotSupported, new Uint8Array(0));
      } else {
        this.sendDataBlock(answer.slot, answer.seq, CommandStatus.Ok, 0, response);
      }
    });
  }

  /**
   * Fails every XfrBlock still waiting for the card. QEMU 7.2 drops these
   * responses, and every other queued response, when the card goes away, so
   * the host waits until its read times out. Here each gets a failed
   * DataBlock with bError ICC_MUTE, and responses already queued are kept.
   */
  private abandonPending(): void {
    this.generation++;
    for (const answer of this.pending.splice(0)) {
      this.sendDataBlock(answer.slot, answer.seq, CommandStatus.Failed, SlotError.IccMute, new Uint8Array(0));
    }
  }

  private cardInserted(atr: Uint8Array): void {
    this.log.info({ atr: Buffer.from(atr).toString('hex') }, 'card inserted');
    this.abandonPending();
    this.atr = Uint8Array.from(atr);
    this.setPresent(true);
  }

  private cardRemoved(): void {
    this.log.info('card removed');
    this.setPresent(false);
    this.abandonPending();
  }

  private setPresent(present: boolean): void {
    this.present = present;
    const changed = ((this.slotState & 0x01) === 1) !== present;
    this.slotState = (this.slotState & ~0x01) | (present ? 0x01 : 0);
    if (changed) this.slotState |= 0x02;
    this.notificationPending = true;
    this.emit('interrupt');
  }

  private enqueue(message: Uint8Array): void {
    this.bulkIn.push(message);
    this.emit('bulk-in');
  }

  private header(type: RdrToPc, length: number, slot: number, seq: number, bStatus: number, bError: number, last: number): Uint8Array {
    const message = new Uint8Array(CCID_HEADER_LENGTH + length);
    const view = new DataView(message.buffer);
    message[0] = type;
    // RDR_to_PC_Parameters carries 7 data bytes but dwLength 0, as in QEMU 7.2.
    view.setUint32(1, type === RdrToPc.Parameters ? 0 : length, true);
    message[5] = slot;
    message[6] = seq;
    message[7] = bStatus;
    message[8] = bError;
    message[9] = last;
    return message;
  }

  private sendSlotStatus(slot: number, seq: number, command: CommandStatus, error: number): void {
    // bClockStatus 0: clock running.
    this.enqueue(this.header(RdrToPc.SlotStatus, 0, slot, seq, this.bStatus(command), error, 0));
  }

  private sendDataBlock(slot: number, seq: number, command: CommandStatus, error: number, data: Uint8Array): void {
    // bChainParameter 0. QEMU 7.2 leaves a stale byte there, 01 after a T=1 Parameters answer.
    const message = this.header(RdrToPc.DataBlock, data.length, slot, seq, this.bStatus(command), error, 0);
    message.set(data, CCID_HEADER_LENGTH);
    this.enqueue(message);
  }

  private sendParameters(slot: number, seq: number, command: CommandStatus): void {
    const message = this.header(RdrToPc.Parameters, 7, slot, seq, this.bStatus(command), 0, this.parameters.protocol);
    message.set(this.parameters.data, CCID_HEADER_LENGTH);
    this.enqueue(message);
  }
}
