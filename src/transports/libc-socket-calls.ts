/**
 * libc's setsockopt(2) and write(2), called on a Node socket's file
 * descriptor through the koffi FFI package. Node has no API for
 * TCP_QUICKACK, and its stream `write()` costs several microseconds of
 * JavaScript per call, which counts on the vpcd card's round trip.
 *
 * libc is loaded once per process. Where that is impossible (not Linux,
 * koffi missing) callers get the reason instead of the functions and fall
 * back to what Node offers.
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

export interface LibcSocketCalls {
  /** setsockopt(2); returns 0 or -1. */
  setsockopt(fd: number, level: number, option: number, value: Int32Array, length: number): number;
  /** write(2); returns the number of bytes written or -1. */
  write(fd: number, data: Uint8Array, length: number): number;
}

let loaded: LibcSocketCalls | string | undefined;

/** Loads the functions once; returns them, or why they are unavailable. */
export function loadLibcSocketCalls(): LibcSocketCalls | string {
  if (loaded !== undefined) return loaded;
  if (process.platform !== 'linux') {
    loaded = `libc.so.6 is loaded only on Linux, not on ${process.platform}`;
    return loaded;
  }

  try {
    const require = createRequire(import.meta.url);
    const koffi = require('koffi') as typeof import('koffi');
    const libc = koffi.load('libc.so.6');
    loaded = {
      setsockopt: libc.func('int setsockopt(int fd, int level, int optname, const void *optval, uint32_t optlen)') as LibcSocketCalls['setsockopt'],
      write: libc.func('intptr_t write(int fd, const void *buf, uintptr_t count)') as LibcSocketCalls['write'],
    };
  } catch (error) {
    loaded = `loading setsockopt and write from libc.so.6 through koffi failed: ${String(error)}`;
  }
  return loaded;
}

/** Returns the file descriptor behind a connected Node socket, or undefined. */
export function socketFd(socket: Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}
