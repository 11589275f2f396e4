/**
 * USB descriptors of QEMU 7.2's usb-ccid device, byte for byte as the device
 * returns them to GET_DESCRIPTOR (Gemplus ids 08E6:4433, one configuration,
 * one CCID interface with interrupt IN 1, bulk IN 2 and bulk OUT 3).
 */

export const DEVICE_DESCRIPTOR = Uint8Array.of(
  0x12, 0x01, 0x10, 0x01, 0x00, 0x00, 0x00, 0x40, 0xe6, 0x08, 0x33, 0x44, 0x00, 0x00, 0x01, 0x02, 0x03, 0x01,
);

/**
 * The CCID class descriptor (type 0x21). Fields in order: bcdCCID 1.10, one
 * slot, 5/3/1.8 V, dwProtocols T=0, clock 4 MHz default and 65.536 MHz
 * maximum, data rate 9600 default and 115200 maximum, IFSD 254, dwFeatures
 * 0x000104FE (automatic parameters, clock, baud rate, PPS and IFSD; TPDU level
 * exchange), dwMaxCCIDMessageLength 65554, GET RESPONSE and ENVELOPE class
 * echo (0xFF), no LCD, PIN verification, one busy slot.
 */
export const CCID_CLASS_DESCRIPTOR = Uint8Array.of(
  0x36, 0x21, 0x10, 0x01, 0x00, 0x07, 0x01, 0x00, 0x00, 0x00, 0xa0, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
  0x00, 0x80, 0x25, 0x00, 0x00, 0x00, 0xc2, 0x01, 0x00, 0x00, 0xfe, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0xfe, 0x04, 0x01, 0x00, 0x12, 0x00, 0x01, 0x00, 0xff, 0xff, 0x00, 0x00, 0x01,
  0x01,
);

/** Configuration descriptor with the interface, CCID class and endpoint descriptors that follow it. */
export const CONFIGURATION_DESCRIPTOR = Uint8Array.of(
  // Configuration: wTotalLength 93, one interface, value 1, self-powered + remote wakeup, 100 mA.
  0x09, 0x02, 0x5d, 0x00, 0x01, 0x01, 0x00, 0xe0, 0x32,
  // Interface 0: three endpoints, class 0x0B (smart card), iInterface 4.
  0x09, 0x04, 0x00, 0x00, 0x03, 0x0b, 0x00, 0x00, 0x04,
  ...CCID_CLASS_DESCRIPTOR,
  // Interrupt IN 1, 64 bytes, bInterval 255 ms.
  0x07, 0x05, 0x81, 0x03, 0x40, 0x00, 0xff,
  // Bulk IN 2, 64 bytes.
  0x07, 0x05, 0x82, 0x02, 0x40, 0x00, 0x00,
  // Bulk OUT 3, 64 bytes.
  0x07, 0x05, 0x03, 0x02, 0x40, 0x00, 0x00,
);

/** Empty BOS descriptor (total length 5, no capabilities), as QEMU 7.2 answers. */
export const BOS_DESCRIPTOR = Uint8Array.of(0x05, 0x0f, 0x05, 0x00, 0x00);

/** String descriptor 0: the one supported LANGID, 0x0409 (English, United States). */
export const LANGID_DESCRIPTOR = Uint8Array.of(0x04, 0x03, 0x09, 0x04);

export const MANUFACTURER_STRING = 'QEMU';
export const PRODUCT_STRING = 'QEMU USB CCID';
export const INTERFACE_STRING = 'CCID Interface';

/**
 * Serial number QEMU reports for a usb-ccid on the first port of a UHCI
 * controller at PCI 00:02.0; any stable string works for libccid.
 */
export const DEFAULT_SERIAL = '1-0000:00:02.0-1';

/** Encodes a string descriptor (type 3) as UTF-16LE. Throws RangeError above 126 characters. */
export function stringDescriptor(text: string): Uint8Array {
  const length = 2 + 2 * text.length;
  if (length > 255) throw new RangeError(`USB string descriptor text must be at most 126 characters, got ${text.length}`);
  const bytes = new Uint8Array(length);
  bytes[0] = length;
  bytes[1] = 0x03;
  for (let index = 0; index < text.length; index++) {
    const unit = text.charCodeAt(index);
    bytes[2 + 2 * index] = unit & 0xff;
    bytes[3 + 2 * index] = unit >> 8;
  }
  return bytes;
}
