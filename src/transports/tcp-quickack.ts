/**
 * TCP_QUICKACK for the sockets of request/response protocols on Linux.
 *
 * vpcd as packaged in Debian 12 (vsmartcard-vpcd 3.3+dfsg-2) writes the length
 * prefix and the payload of a message in two send() calls with Nagle's
 * algorithm on (upstream merged them into one write in March 2023). The second
 * write waits until the first one is acknowledged, and a receiver in
 * delayed-ACK mode acknowledges only after about 40 ms, which caps the card at
 * about 20 APDUs per second. Setting TCP_QUICKACK makes the kernel acknowledge
 * at once. The flag is not permanent: sending data puts the socket back in
 * delayed-ACK mode, so callers re-arm it after connecting and after every
 * write (VpcdCard), or after every read and write as well (the VSCard client).
 *
 * Node has no API for the option, so it is set with setsockopt(2) through the
 * koffi FFI package. Where that is impossible (not Linux, koffi missing, no
 * file descriptor) the caller gets `false` and one warning is logged per process.
 */
import type { Socket } from 'node:net';
import { logger } from '../log/logger.js';
import { loadLibcSocketCalls, socketFd } from './libc-socket-calls.js';

const log = logger.child({ component: 'tcp-quickack' });

// From <netinet/in.h> and <netinet/tcp.h> on Linux.
const IPPROTO_TCP = 6;
const TCP_QUICKACK = 12;

const OPTION_ON = new Int32Array([1]);

let warned = false;

function warnOnce(reason: string): void {
  if (warned) return;
  warned = true;
  log.warn(
    { reason },
    'TCP_QUICKACK is unavailable, so vpcd round trips may wait for delayed ACKs (about 40 ms each)',
  );
}

/**
 * Sets TCP_QUICKACK on a connected socket and sends an ACK that is due.
 * Returns whether the option was set.
 */
export function armTcpQuickAck(socket: Socket): boolean {
  const calls = loadLibcSocketCalls();
  if (typeof calls === 'string') {
    warnOnce(calls);
    return false;
  }

  const fd = socketFd(socket);
  if (fd === undefined) {
    warnOnce('the socket has no file descriptor (not connected, or not a TCP socket)');
    return false;
  }

  const result = calls.setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, OPTION_ON, OPTION_ON.byteLength);
  if (result !== 0) {
    warnOnce(`setsockopt(fd ${fd}, IPPROTO_TCP, TCP_QUICKACK) returned ${result}`);
    return false;
  }
  return true;
}
