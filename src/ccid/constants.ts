/**
 * Numbers of the USB CCID class specification, revision 1.1, as QEMU 7.2's
 * usb-ccid device uses them. All multi-byte CCID fields are little-endian.
 */

/** Length of every PC_to_RDR and RDR_to_PC message header. */
export const CCID_HEADER_LENGTH = 10;

/** wMaxPacketSize of the bulk and interrupt endpoints (a full-speed device). */
export const MAX_PACKET_SIZE = 64;

/** Endpoint addresses: interrupt IN 1, bulk IN 2, bulk OUT 3. */
export const ENDPOINT_INTERRUPT_IN = 0x81;
export const ENDPOINT_BULK_IN = 0x82;
export const ENDPOINT_BULK_OUT = 0x03;

/** PC_to_RDR message types (CCID 1.1 section 6.1). */
export enum PcToRdr {
  SetParameters = 0x61,
  IccPowerOn = 0x62,
  IccPowerOff = 0x63,
  GetSlotStatus = 0x65,
  Secure = 0x69,
  T0Apdu = 0x6a,
  Escape = 0x6b,
  GetParameters = 0x6c,
  ResetParameters = 0x6d,
  IccClock = 0x6e,
  XfrBlock = 0x6f,
  Mechanical = 0x71,
  Abort = 0x72,
  SetDataRateAndClockFrequency = 0x73,
}

/** RDR_to_PC message types on the bulk IN endpoint (CCID 1.1 section 6.2). */
export enum RdrToPc {
  DataBlock = 0x80,
  SlotStatus = 0x81,
  Parameters = 0x82,
}

/** RDR_to_PC_NotifySlotChange, the only message QEMU sends on the interrupt endpoint. */
export const NOTIFY_SLOT_CHANGE = 0x50;

/** ICC status, bits 0-1 of bStatus. */
export enum IccStatus {
  PresentActive = 0,
  PresentInactive = 1,
  Absent = 2,
}

/** Command status, bits 6-7 of bStatus. */
export enum CommandStatus {
  Ok = 0,
  Failed = 1,
}

/** bError values this device sends (CCID 1.1 table 6.2-2). */
export enum SlotError {
  /** 0x00 doubles as "command not supported" when the failed bit is set. */
  CommandNotSupported = 0x00,
  /** The message's bSlot (byte offset 5) names a slot that does not exist. */
  BadSlot = 0x05,
  /** The slot already has the maximum number of commands in progress. */
  SlotBusy = 0xe0,
  IccMute = 0xfe,
}

/** Largest PC_to_RDR message, header included: dwMaxCCIDMessageLength of the class descriptor. */
export const MAX_CCID_MESSAGE_LENGTH = 0x00010012;

/**
 * XfrBlocks that may wait for the card at once. QEMU 7.2 aborts past 128; this
 * model fails the 129th with bError SlotBusy instead.
 */
export const MAX_PENDING_ANSWERS = 128;

/**
 * ATR that QEMU's ccid-card-passthru reports before any client sent one
 * (an Athena card); the guest sees it when it powers on an empty slot.
 */
export const PASSTHRU_DEFAULT_ATR = Uint8Array.of(
  0x3b, 0xd5, 0x18, 0xff, 0x80, 0x91, 0xfe, 0x1f, 0xc3, 0x80, 0x73, 0xc8, 0x21, 0x13, 0x08,
);

/** abProtocolDataStructure after power-up and after ResetParameters. */
export const DEFAULT_PROTOCOL_DATA = Uint8Array.of(0x77, 0x00, 0x00, 0x00, 0x00, 0xfe, 0x00);
