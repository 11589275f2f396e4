/**
 * Fuzz target: the CCID message handler of the emulated usb-ccid device,
 * with the echo card attached. The input is a sequence of operations: a
 * byte 0xFF followed by an 8-byte SETUP packet is a control transfer, any
 * other byte n is a bulk OUT transfer of the next n bytes. After each
 * operation the pending card exchange may finish, and the bulk IN and
 * interrupt endpoints are drained. 'stall' is a valid response to bad input.
 */
import { CcidDevice } from '../../src/ccid/device.js';
import { logger } from '../../src/log/logger.js';
import { EchoReader } from '../../src/reader/echo-reader.js';
import { guardAsync } from './guard.js';

const silentLogger = logger.child({ component: 'fuzz-ccid' }, { level: 'silent' });

/** Byte that introduces a control transfer instead of a bulk OUT transfer. */
const CONTROL_MARKER = 0xff;

function drain(device: CcidDevice): void {
  for (let i = 0; i < 1000 && device.readBulkIn(64 * 1024) !== undefined; i++) {
    // Take out every queued response.
  }
  device.readInterrupt();
}

/** Rejects when the input reveals a bug. */
export async function check(data: Buffer): Promise<void> {
  const device = new CcidDevice({ logger: silentLogger });
  device.attach(new EchoReader());

  let offset = 0;
  while (offset < data.length) {
    const marker = data[offset]!;
    if (marker === CONTROL_MARKER) {
      const setup = data.subarray(offset + 1, offset + 9);
      offset += 9;
      if (setup.length < 8) break;
      device.handleControl({
        bmRequestType: setup[0]!,
        bRequest: setup[1]!,
        wValue: setup.readUInt16LE(2),
        wIndex: setup.readUInt16LE(4),
        wLength: setup.readUInt16LE(6),
      });
    } else {
      device.bulkOut(data.subarray(offset + 1, offset + 1 + marker));
      offset += 1 + marker;
    }
    // Let the echo card respond: XfrBlock runs through a promise chain.
    await new Promise((resolve) => setImmediate(resolve));
    drain(device);
  }
  device.detach();
}

export const fuzz = guardAsync(check);
