/**
 * Writes a small message to a connected TCP socket with one write(2) call on
 * its file descriptor when Node has nothing queued for it, instead of going
 * through `socket.write()`.
 *
 * Node's stream write path (Writable, WriteWrap, and the completion
 * callback on the next event loop turn) costs the vpcd card JavaScript work
 * on every response. It also runs one more event loop turn after each
 * write, which a direct write skips. A request/response peer
 * such as vpcd has at most one response in flight, so the socket's send
 * buffer is nearly always empty and one write(2) takes the whole message.
 */
import type { Socket } from 'node:net';
import { loadLibcSocketCalls, socketFd } from './libc-socket-calls.js';

/**
 * Sends `data` on `socket`, in order after anything written before. Writes
 * directly when the socket is connected, writable (not ended), uncorked and
 * has no queued bytes.
 * Whatever the kernel did not take (a short write, EAGAIN, or any error)
 * goes through `socket.write()`, which queues it or reports the error as
 * usual. Returns whether every byte was written directly.
 */
export function writeDirect(socket: Socket, data: Uint8Array): boolean {
  const calls = loadLibcSocketCalls();
  const fd = typeof calls === 'string' ? undefined : socketFd(socket);
  const direct = fd !== undefined && socket.writable && !socket.connecting && socket.writableLength === 0 && socket.writableCorked === 0;
  if (typeof calls === 'string' || !direct) {
    socket.write(data);
    return false;
  }

  // Node ignores SIGPIPE, so a write to a socket the peer closed returns -1 (EPIPE) here.
  const written = calls.write(fd, data, data.length);
  if (written === data.length) return true;
  socket.write(written > 0 ? data.subarray(written) : data);
  return false;
}
