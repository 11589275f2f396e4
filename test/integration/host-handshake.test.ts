/**
 * `virtcard host` against the VSCard probe client that recorded QEMU 7.2's
 * ccid-card-passthru handshake: the messages virtcard host sends back
 * must equal those QEMU sent. The recording and the probe are read from
 * $VIRTCARD_SHARED (default: `shared` beside the repository).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VscServer } from '../../src/vscard/server.js';

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const sharedDirectory = process.env['VIRTCARD_SHARED'] ?? path.resolve(repositoryRoot, '../shared');
const probe = path.join(sharedDirectory, 'guest', 'vscard-probe.py');
const recording = path.join(sharedDirectory, 'reference', 'qemu-passthru-handshake.txt');

function unavailableReason(): string | undefined {
  if (spawnSync('sh', ['-c', 'command -v python3']).status !== 0) return 'python3 is not installed';
  if (!existsSync(probe) || !existsSync(recording)) return `the VSCard probe or its recording is missing under ${sharedDirectory}`;
  return undefined;
}

const unavailable = unavailableReason();
// In CI every tool must be there, so a missing one fails; elsewhere it skips with its reason.
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

/** Returns the message lines of a probe log without their timestamps. */
function messageLines(log: string): string[] {
  return log
    .split('\n')
    .map((line) => /^\s*\d+\.\d+ ((?:->|<-) .*)$/.exec(line)?.[1])
    .filter((line): line is string => line !== undefined);
}

test('host handshake equals QEMU recording', { skip }, async () => {
  const server = new VscServer({ port: 0 });
  const address = await server.listen();
  try {
    const child = spawn('python3', [probe, '--port', String(address.port), '--duration', '1', '--remove-at-end'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (output += text));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0, output);

    const expected = messageLines(readFileSync(recording, 'utf8'));
    assert.ok(expected.length >= 6, 'the recording has the handshake lines');
    assert.deepEqual(messageLines(output), expected);
  } finally {
    await server.close();
  }
});
