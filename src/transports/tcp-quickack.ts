/**
 * TCP_QUICKACK for the sockets of request/response protocols on Linux.
 *
 * vpcd as packaged in Debian 12 (vsmartcard-vpcd 3.3+dfsg-2) writes the length
 * prefix and the payload of a message in two send() calls with Nagle's
 * algorithm on (upstream merged them into one write in March 2023). The second
 * write waits until the first one is acknowledged, and a receiver in
 * delayed-ACK mode acknowledges only after about 40 ms, which caps the card at
 * about 20 APDUs per second. Setting TCP_QUICKACK makes the kernel acknowledge
 * at once. The kernel clears the flag again on its own, so callers re-arm it
 * after connecting and after every read.
 *
 * Node has no API for the option, so it is set with setsockopt(2) through the
 * koffi FFI package. Where that is impossible (not Linux, koffi missing, no
 * file descriptor) the caller gets `false` and one warning is logged per process.
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { logger } from '../log/logger.js';

const log = logger.child({ component: 'tcp-quickack' });

// From <netinet/in.h> and <netinet/tcp.h> on Linux.
const IPPROTO_TCP = 6;
const TCP_QUICKACK = 12;

type SetSockOpt = (fd: number, level: number, option: number, value: Int32Array, length: number) => number;

const OPTION_ON = new Int32Array([1]);

let setsockopt: SetSockOpt | null | undefined;
let warned = false;

function warnOnce(reason: string): void {
  if (warned) return;
  warned = true;
  log.warn(
    { reason },
    'TCP_QUICKACK is unavailable, so vpcd round trips may wait for delayed ACKs (about 40 ms each)',
  );
}

/** Loads libc's setsockopt through koffi once; returns null where that is impossible. */
function loadSetSockOpt(): SetSockOpt | null {
  if (setsockopt !== undefined) return setsockopt;
  setsockopt = null;

  if (process.platform !== 'linux') {
    warnOnce(`TCP_QUICKACK exists only on Linux, not on ${process.platform}`);
    return null;
  }

  try {
    const require = createRequire(import.meta.url);
    const koffi = require('koffi') as typeof import('koffi');
    const libc = koffi.load('libc.so.6');
    const call = libc.func('int setsockopt(int fd, int level, int optname, const void *optval, uint32_t optlen)');
    setsockopt = call as SetSockOpt;
  } catch (error) {
    warnOnce(`loading setsockopt from libc.so.6 through koffi failed: ${String(error)}`);
  }
  return setsockopt;
}

/** Returns the file descriptor behind a connected Node socket, or undefined. */
function socketFd(socket: Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * Sets TCP_QUICKACK on a connected socket. Returns whether the option was
 * set. Call it after connecting and again after every 'data' event.
 */
export function armTcpQuickAck(socket: Socket): boolean {
  const call = loadSetSockOpt();
  if (call === null) return false;

  const fd = socketFd(socket);
  if (fd === undefined) {
    warnOnce('the socket has no file descriptor (not connected, or not a TCP socket)');
    return false;
  }

  const result = call(fd, IPPROTO_TCP, TCP_QUICKACK, OPTION_ON, OPTION_ON.byteLength);
  if (result !== 0) {
    warnOnce(`setsockopt(fd ${fd}, IPPROTO_TCP, TCP_QUICKACK) returned ${result}`);
    return false;
  }
  return true;
}
