/**
 * A vpcd card that responds from a recording of virtcard's CAC card instead
 * of running the card engine, on the minimal transport of
 * vpcd-minimal-card.ts. Timed against virtcard's card under the same
 * client, it shows what part of virtcard's time is the cost of any Node.js
 * card behind vpcd and what part is the card's own work.
 *
 *   node dist/bench-bundle/vpcd-replay-card.js PORT RECORDING
 *
 * RECORDING is the JSON file that `vpcd-card-server.js` writes when
 * VIRTCARD_BENCH_RECORD names it. The same command can have different
 * responses (GET RESPONSE after READ BUFFER of two different files), so the
 * card does not look commands up. It walks the recording in order instead.
 * Each command gets the response of the next recorded exchange with the
 * same command. The search starts after the last match and wraps round at
 * the end. A client that repeats the recorded sequence (pkcs11-tool -O run
 * after run) therefore finds each command at once. A command that is
 * nowhere in the recording gets 6F 00, and the count of those is printed on
 * exit. pkcs11-tool -O then lists fewer certificates, which the benchmark
 * checks. VERIFY commands are not recorded (they carry the PIN), so they
 * get 6F 00 too.
 */
import { readFileSync } from 'node:fs';
import { portArgument, serveMinimalVpcdCard } from './vpcd-minimal-card.js';
import { type ApduRecording } from './apdu-recording.js';

const SW_NO_PRECISE_DIAGNOSIS = Uint8Array.of(0x6f, 0x00);

const usage = 'vpcd-replay-card PORT RECORDING';
const port = portArgument(process.argv[2], usage);
const recordingPath = process.argv[3];
if (recordingPath === undefined) {
  console.error(`usage: ${usage}`);
  process.exit(2);
}

let recording: ApduRecording;
try {
  recording = JSON.parse(readFileSync(recordingPath, 'utf8')) as ApduRecording;
} catch (error) {
  console.error(`vpcd-replay-card: reading the recording ${recordingPath} failed: ${String(error)}; record one with VIRTCARD_BENCH_RECORD`);
  process.exit(1);
}
const exchanges = recording.exchanges.map((exchange) => ({
  command: Buffer.from(exchange.command, 'hex'),
  response: Buffer.from(exchange.response, 'hex'),
}));
if (exchanges.length === 0) {
  console.error(`vpcd-replay-card: ${recordingPath} contains no APDU exchanges: record one with VIRTCARD_BENCH_RECORD`);
  process.exit(1);
}

let cursor = 0;
let misses = 0;
const socket = serveMinimalVpcdCard(port, Buffer.from(recording.atr, 'hex'), (command) => {
  for (let step = 0; step < exchanges.length; step++) {
    const index = (cursor + step) % exchanges.length;
    const exchange = exchanges[index]!;
    if (exchange.command.equals(command)) {
      cursor = index + 1;
      return exchange.response;
    }
  }
  misses += 1;
  return SW_NO_PRECISE_DIAGNOSIS;
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (misses > 0) console.error(`vpcd-replay-card: ${misses} commands were not in ${recordingPath} and got 6F 00`);
    socket.destroy();
  });
}
