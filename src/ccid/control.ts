/**
 * Control transfers on endpoint 0 of the CCID device: the standard requests
 * QEMU 7.2 handles for usb-ccid, and STALL for everything else, including the
 * CCID class requests ABORT, GET_CLOCK_FREQUENCIES and GET_DATA_RATES.
 */
import {
  BOS_DESCRIPTOR,
  CONFIGURATION_DESCRIPTOR,
  DEVICE_DESCRIPTOR,
  INTERFACE_STRING,
  LANGID_DESCRIPTOR,
  MANUFACTURER_STRING,
  PRODUCT_STRING,
  stringDescriptor,
} from './descriptors.js';

/** The 8-byte SETUP packet of a control transfer. */
export interface SetupPacket {
  bmRequestType: number;
  bRequest: number;
  wValue: number;
  wIndex: number;
  wLength: number;
}

/** Outcome of a control transfer: the IN data stage (empty for OUT requests) or STALL. */
export type ControlResult = { status: 'ok'; data: Uint8Array } | { status: 'stall' };

/** Standard request codes (USB 2.0 table 9-4). */
const GET_STATUS = 0x00;
const CLEAR_FEATURE = 0x01;
const SET_FEATURE = 0x03;
const SET_ADDRESS = 0x05;
const GET_DESCRIPTOR = 0x06;
const GET_CONFIGURATION = 0x08;
const SET_CONFIGURATION = 0x09;
const GET_INTERFACE = 0x0a;
const SET_INTERFACE = 0x0b;

const DESCRIPTOR_DEVICE = 1;
const DESCRIPTOR_CONFIGURATION = 2;
const DESCRIPTOR_STRING = 3;
const DESCRIPTOR_BOS = 15;

const FEATURE_DEVICE_REMOTE_WAKEUP = 1;

/** Device state that standard requests read and change. */
export class ControlState {
  address = 0;
  configuration = 0;
  remoteWakeup = false;

  constructor(private readonly serial: string) {}

  /** Handles one control transfer. No request this device supports has an OUT data stage. */
  handle(setup: SetupPacket): ControlResult {
    const ok = (data: Uint8Array = new Uint8Array(0)): ControlResult => ({
      status: 'ok',
      data: data.subarray(0, Math.min(data.length, setup.wLength)),
    });
    const stall: ControlResult = { status: 'stall' };

    switch ((setup.bmRequestType << 8) | setup.bRequest) {
      case (0x80 << 8) | GET_STATUS:
        return ok(Uint8Array.of(0x01 | (this.remoteWakeup ? 0x02 : 0), 0x00));
      case (0x81 << 8) | GET_STATUS:
        return ok(Uint8Array.of(0x00, 0x00));
      case (0x00 << 8) | CLEAR_FEATURE:
      case (0x00 << 8) | SET_FEATURE:
        if (setup.wValue !== FEATURE_DEVICE_REMOTE_WAKEUP) return stall;
        this.remoteWakeup = setup.bRequest === SET_FEATURE;
        return ok();
      case (0x00 << 8) | SET_ADDRESS:
        this.address = setup.wValue & 0x7f;
        return ok();
      case (0x80 << 8) | GET_DESCRIPTOR:
        return this.descriptor(setup.wValue >> 8, setup.wValue & 0xff, ok, stall);
      case (0x80 << 8) | GET_CONFIGURATION:
        return ok(Uint8Array.of(this.configuration));
      case (0x00 << 8) | SET_CONFIGURATION:
        if (setup.wValue > 1) return stall;
        this.configuration = setup.wValue;
        return ok();
      case (0x81 << 8) | GET_INTERFACE:
        return setup.wIndex === 0 ? ok(Uint8Array.of(0)) : stall;
      case (0x01 << 8) | SET_INTERFACE:
        return setup.wIndex === 0 && setup.wValue === 0 ? ok() : stall;
      default:
        // Class requests (ABORT 0x01, GET_CLOCK_FREQUENCIES 0x02, GET_DATA_RATES
        // 0x03), endpoint-recipient requests and anything else: QEMU 7.2 stalls.
        return stall;
    }
  }

  private descriptor(
    type: number,
    index: number,
    ok: (data?: Uint8Array) => ControlResult,
    stall: ControlResult,
  ): ControlResult {
    switch (type) {
      case DESCRIPTOR_DEVICE:
        return ok(DEVICE_DESCRIPTOR);
      case DESCRIPTOR_CONFIGURATION:
        return index === 0 ? ok(CONFIGURATION_DESCRIPTOR) : stall;
      case DESCRIPTOR_BOS:
        return ok(BOS_DESCRIPTOR);
      case DESCRIPTOR_STRING: {
        const strings = ['', MANUFACTURER_STRING, PRODUCT_STRING, this.serial, INTERFACE_STRING];
        if (index === 0) return ok(LANGID_DESCRIPTOR);
        const text = strings[index];
        // QEMU 7.2 answers an unknown string index with an empty data stage, not a STALL.
        return ok(text === undefined ? new Uint8Array(0) : stringDescriptor(text));
      }
      default:
        // DEVICE_QUALIFIER and the rest: a full-speed-only device has none.
        return stall;
    }
  }
}
