/**
 * Command-line options that export a reader to a virtual machine or to
 * pcscd: `--usbredir ADDR:PORT` (a CCID reader for QEMU's usb-redir),
 * `--usbip ADDR:PORT` (the same reader for a Linux USB/IP client) and
 * `--vpcd ADDR:PORT` (a card for vsmartcard's vpcd), shared by
 * `virtcard emulated` and `virtcard host`.
 */
import { isIP } from 'node:net';
import { Command, InvalidArgumentError } from 'commander';
import { CcidDevice, type CcidDeviceOptions } from '../ccid/device.js';
import { logger } from '../log/logger.js';
import type { Reader } from '../reader/reader.js';
import { UsbipExport } from '../transports/usbip.js';
import { UsbredirExport } from '../transports/usbredir.js';
import { VpcdCard } from '../transports/vpcd.js';

const log = logger.child({ component: 'cli' });

/** A TCP address as given on the command line. */
export interface Endpoint {
  host: string;
  port: number;
}

export interface ExportOptions {
  usbredir: Endpoint[];
  /** Absent in callers that do not offer --usbip. */
  usbip?: Endpoint[];
  vpcd: Endpoint[];
}

/**
 * Parses `ADDR:PORT`, `[IPv6]:PORT` or a bare `PORT` (on 127.0.0.1).
 * Raises commander's InvalidArgumentError with the expected form.
 */
export function parseEndpoint(value: string): Endpoint {
  let host = '127.0.0.1';
  let portText = value;
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(value);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2]!;
  } else if (value.includes(':')) {
    const colon = value.lastIndexOf(':');
    host = value.slice(0, colon);
    portText = value.slice(colon + 1);
  }
  const port = Number(portText);
  if (host === '' || !/^\d+$/.test(portText) || port < 1 || port > 65535) {
    throw new InvalidArgumentError(`invalid address "${value}": use ADDR:PORT, [IPv6]:PORT or PORT, with a port from 1 to 65535.`);
  }
  return { host, port };
}

/** Returns whether `host` is a loopback address or the name localhost. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1';
  return false;
}

function collectEndpoint(value: string, previous: Endpoint[]): Endpoint[] {
  return [...previous, parseEndpoint(value)];
}

/** Adds --usbredir and --vpcd to `command` and returns it. */
export function addExportOptions(command: Command): Command {
  return command
    .option(
      '--usbredir <addr:port>',
      'listen here for QEMU usb-redir (-chardev socket,host=ADDR,port=PORT -device usb-redir,chardev=ID) and serve a CCID reader; repeatable',
      collectEndpoint,
      [],
    )
    .option(
      '--usbip <addr:port>',
      'listen here for a USB/IP client (usbip attach -r ADDR -b 1-1, port 3240 by default there) and serve a CCID reader; repeatable',
      collectEndpoint,
      [],
    )
    .option('--vpcd <addr:port>', 'connect the card to vsmartcard vpcd at this address (pcscd default 127.0.0.1:35963); repeatable', collectEndpoint, []);
}

/** The running exports of one reader. */
export interface RunningExports {
  stop(): Promise<void>;
}

/**
 * Starts every export the options name for `reader`. A failure to listen
 * stops the exports already started and raises the error.
 */
export async function startExports(reader: Reader, options: ExportOptions, ccid: CcidDeviceOptions = {}): Promise<RunningExports> {
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async (): Promise<void> => {
    for (const stop of stops.reverse()) await stop();
  };

  try {
    for (const endpoint of options.usbredir) {
      if (!isLoopback(endpoint.host)) {
        log.warn({ address: endpoint.host }, 'usbredir listens on a non-loopback address: anyone who can reach it can use the card');
      }
      const device = new CcidDevice(ccid);
      device.attach(reader);
      const usbredir = new UsbredirExport(device, { host: endpoint.host, port: endpoint.port });
      await usbredir.listen();
      stops.push(async () => {
        await usbredir.close();
        device.detach();
      });
    }
    for (const endpoint of options.usbip ?? []) {
      if (!isLoopback(endpoint.host)) {
        log.warn({ address: endpoint.host }, 'USB/IP listens on a non-loopback address: anyone who can reach it can use the card');
      }
      const device = new CcidDevice(ccid);
      device.attach(reader);
      const usbip = new UsbipExport(device, { host: endpoint.host, port: endpoint.port });
      await usbip.listen();
      stops.push(async () => {
        await usbip.close();
        device.detach();
      });
    }
    for (const endpoint of options.vpcd) {
      const vpcd = new VpcdCard(reader, { host: endpoint.host, port: endpoint.port });
      vpcd.start();
      stops.push(() => vpcd.stop());
    }
  } catch (error) {
    await stopAll();
    throw error;
  }
  return { stop: stopAll };
}
