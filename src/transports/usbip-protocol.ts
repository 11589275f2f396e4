/**
 * USB/IP wire format (Linux Documentation/usb/usbip_protocol.rst, protocol
 * version 1.1.1): the device list and import operations, then URB traffic
 * (CMD_SUBMIT, RET_SUBMIT, CMD_UNLINK, RET_UNLINK). All fields are
 * big-endian. Pure functions, no I/O.
 */

export const USBIP_VERSION = 0x0111;

export const OP_REQ_DEVLIST = 0x8005;
export const OP_REP_DEVLIST = 0x0005;
export const OP_REQ_IMPORT = 0x8003;
export const OP_REP_IMPORT = 0x0003;

export const USBIP_CMD_SUBMIT = 1;
export const USBIP_CMD_UNLINK = 2;
export const USBIP_RET_SUBMIT = 3;
export const USBIP_RET_UNLINK = 4;

/** Length of an operation header (version, code, status). */
export const OP_HEADER_LENGTH = 8;
/** Length of the bus id field. */
export const BUSID_LENGTH = 32;
/** Length of a device record without interfaces. */
export const DEVICE_RECORD_LENGTH = 312;
/** Length of every URB command and reply header. */
export const URB_HEADER_LENGTH = 48;

export const DIRECTION_OUT = 0;
export const DIRECTION_IN = 1;

/** Linux `enum usb_device_speed`: full speed. */
export const SPEED_FULL = 2;

/** Negative Linux errno values carried in RET_SUBMIT and RET_UNLINK status fields. */
export const ERRNO_EPIPE = -32;
export const ERRNO_ECONNRESET = -104;

/** The exported device as OP_REP_DEVLIST and OP_REP_IMPORT describe it. */
export interface UsbipDevice {
  path: string;
  busid: string;
  busnum: number;
  devnum: number;
  speed: number;
  idVendor: number;
  idProduct: number;
  bcdDevice: number;
  bDeviceClass: number;
  bDeviceSubClass: number;
  bDeviceProtocol: number;
  bConfigurationValue: number;
  bNumConfigurations: number;
  interfaces: { class: number; subClass: number; protocol: number }[];
}

function writeString(target: Uint8Array, offset: number, length: number, text: string): void {
  const bytes = new TextEncoder().encode(text);
  if (bytes.length >= length) throw new RangeError(`USB/IP string "${text}" must be shorter than ${length} bytes`);
  target.set(bytes, offset);
}

/** Encodes an operation header: version, code, status. */
export function encodeOpHeader(code: number, status: number): Uint8Array {
  const bytes = new Uint8Array(OP_HEADER_LENGTH);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, USBIP_VERSION);
  view.setUint16(2, code);
  view.setUint32(4, status);
  return bytes;
}

/** Encodes the 312-byte device record, plus the 4-byte interface records when `withInterfaces` is set. */
export function encodeDeviceRecord(device: UsbipDevice, withInterfaces: boolean): Uint8Array {
  const bytes = new Uint8Array(DEVICE_RECORD_LENGTH + (withInterfaces ? 4 * device.interfaces.length : 0));
  const view = new DataView(bytes.buffer);
  writeString(bytes, 0, 256, device.path);
  writeString(bytes, 256, BUSID_LENGTH, device.busid);
  view.setUint32(288, device.busnum);
  view.setUint32(292, device.devnum);
  view.setUint32(296, device.speed);
  view.setUint16(300, device.idVendor);
  view.setUint16(302, device.idProduct);
  view.setUint16(304, device.bcdDevice);
  bytes[306] = device.bDeviceClass;
  bytes[307] = device.bDeviceSubClass;
  bytes[308] = device.bDeviceProtocol;
  bytes[309] = device.bConfigurationValue;
  bytes[310] = device.bNumConfigurations;
  bytes[311] = device.interfaces.length;
  if (withInterfaces) {
    device.interfaces.forEach((entry, index) => {
      bytes[DEVICE_RECORD_LENGTH + 4 * index] = entry.class;
      bytes[DEVICE_RECORD_LENGTH + 4 * index + 1] = entry.subClass;
      bytes[DEVICE_RECORD_LENGTH + 4 * index + 2] = entry.protocol;
    });
  }
  return bytes;
}

/** A decoded CMD_SUBMIT or CMD_UNLINK header. */
export interface UrbCommand {
  command: number;
  seqnum: number;
  devid: number;
  direction: number;
  endpoint: number;
  /** CMD_SUBMIT only. */
  transferFlags: number;
  transferBufferLength: number;
  numberOfPackets: number;
  setup: Uint8Array;
  /** CMD_UNLINK only: the seqnum of the URB to unlink. */
  unlinkSeqnum: number;
}

export function decodeUrbCommand(header: Uint8Array): UrbCommand {
  const view = new DataView(header.buffer, header.byteOffset, URB_HEADER_LENGTH);
  const command = view.getUint32(0);
  return {
    command,
    seqnum: view.getUint32(4),
    devid: view.getUint32(8),
    direction: view.getUint32(12),
    endpoint: view.getUint32(16),
    transferFlags: view.getUint32(20),
    transferBufferLength: command === USBIP_CMD_SUBMIT ? view.getUint32(24) : 0,
    numberOfPackets: view.getUint32(32),
    setup: header.slice(40, 48),
    unlinkSeqnum: command === USBIP_CMD_UNLINK ? view.getUint32(20) : 0,
  };
}

/**
 * Encodes RET_SUBMIT with the IN data (empty for OUT transfers).
 * `numberOfPackets` echoes the command's value, as Linux's usbip host driver does.
 */
export function encodeRetSubmit(seqnum: number, status: number, actualLength: number, numberOfPackets: number, data: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(URB_HEADER_LENGTH + data.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, USBIP_RET_SUBMIT);
  view.setUint32(4, seqnum);
  view.setInt32(20, status);
  view.setUint32(24, actualLength);
  // start_frame and error_count stay 0.
  view.setUint32(32, numberOfPackets);
  bytes.set(data, URB_HEADER_LENGTH);
  return bytes;
}

/** Encodes RET_UNLINK. */
export function encodeRetUnlink(seqnum: number, status: number): Uint8Array {
  const bytes = new Uint8Array(URB_HEADER_LENGTH);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, USBIP_RET_UNLINK);
  view.setUint32(4, seqnum);
  view.setInt32(20, status);
  return bytes;
}
