/**
 * A vpcd echo card with the minimum of work a Node.js card needs
 * (vpcd-minimal-card.ts): every APDU comes back with 90 00. Runs until
 * SIGTERM or SIGINT.
 *
 *   node dist/bench-bundle/vpcd-minimal-echo-card.js PORT
 */
import { portArgument, serveMinimalVpcdCard } from './vpcd-minimal-card.js';

/** ATR of the echo card: a T=1 card with no historical bytes. */
const ATR = Uint8Array.of(0x3b, 0x80, 0x80, 0x01, 0x01);

const port = portArgument(process.argv[2], 'vpcd-minimal-echo-card PORT (the TCP port of the vpcd slot)');
const socket = serveMinimalVpcdCard(port, ATR, (command) => {
  const response = new Uint8Array(command.length + 2);
  response.set(command);
  response[command.length] = 0x90;
  return response;
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => socket.destroy());
