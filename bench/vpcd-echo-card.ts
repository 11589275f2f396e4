/**
 * Serves the echo card (every APDU comes back with 90 00) to vpcd until
 * SIGINT or SIGTERM, so `pcsc-apdu-rate` measures the transport alone.
 *
 *   node dist/bench/vpcd-echo-card.js [--no-quickack] [--port 35963]
 */
import { EchoReader } from '../src/reader/echo-reader.js';
import { VpcdCard } from '../src/transports/vpcd.js';

const args = process.argv.slice(2);
const portIndex = args.indexOf('--port');
const port = portIndex >= 0 ? Number(args[portIndex + 1]) : undefined;

const card = new VpcdCard(new EchoReader(), { port, tcpQuickAck: !args.includes('--no-quickack') });
card.start();

async function shutdown(): Promise<void> {
  await card.stop();
  process.exit(0);
}
process.once('SIGINT', () => void shutdown());
process.once('SIGTERM', () => void shutdown());
