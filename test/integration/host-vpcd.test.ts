/**
 * `virtcard host --vpcd` and `virtcard emulated --vpcd` against a private
 * pcscd with vsmartcard's vpcd: the card a VSCard client serves, and the
 * emulated card, reach OpenSC on the host.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { privatePcscdUnavailableReason, startPrivatePcscd, type PrivatePcscd } from '../support/private-pcscd.js';

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const virtcardMain = path.join(repositoryRoot, 'dist', 'src', 'cli', 'main.js');
const CAC_ATR_TEXT = '3b:7a:18:00:00:73:66:74:65:20:63:64:31:34:34';

const unavailable = privatePcscdUnavailableReason() ?? (existsSync(virtcardMain) ? undefined : `${virtcardMain} is missing; run npm run build`);
// In CI every tool must be there; elsewhere a missing tool skips with its reason.
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function startVirtcard(args: string[]): { child: ChildProcess; log: () => string } {
  let log = '';
  const child = spawn(process.execPath, [virtcardMain, ...args], {
    env: { ...process.env, VIRTCARD_LOG_FORMAT: 'text', VIRTCARD_PIN: '12345678' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.setEncoding('utf8').on('data', (text: string) => (log += text));
  child.stderr?.setEncoding('utf8').on('data', (text: string) => (log += text));
  return { child, log: () => log };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
}

/** Runs `opensc-tool -a` until it prints the CAC ATR, up to 20 s; returns its last output. */
async function waitForCard(pcscd: PrivatePcscd): Promise<string> {
  const deadline = Date.now() + 20_000;
  let output = '';
  while (Date.now() < deadline) {
    const result = spawnSync('opensc-tool', ['-a'], { env: pcscd.env, encoding: 'utf8' });
    output = result.stdout + result.stderr;
    if (output.includes(CAC_ATR_TEXT)) return output;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return output;
}

test('host exports client card to vpcd', { skip }, async () => {
  const work = mkdtempSync(path.join(tmpdir(), 'virtcard-host-vpcd-'));
  const pcscd = await startPrivatePcscd();
  const vscardPort = await freePort();
  const host = startVirtcard(['host', '--listen', `127.0.0.1:${vscardPort}`, '--vpcd', `127.0.0.1:${pcscd.vpcdPort}`]);
  let client: ReturnType<typeof startVirtcard> | undefined;
  try {
    client = startVirtcard(['client', '--data-dir', path.join(work, 'identity'), '127.0.0.1', String(vscardPort)]);
    const output = await waitForCard(pcscd);
    assert.match(output, new RegExp(CAC_ATR_TEXT), `no card in pcscd:\n${output}\n--- host:\n${host.log()}\n--- client:\n${client.log()}`);
    const listing = spawnSync('pkcs11-tool', ['-L'], { env: pcscd.env, encoding: 'utf8' });
    assert.match(listing.stdout, /token label\s+:/);

    // The client leaving removes the card from pcscd.
    await stop(client.child);
    const deadline = Date.now() + 20_000;
    let empty = '';
    while (Date.now() < deadline) {
      empty = spawnSync('opensc-tool', ['-a'], { env: pcscd.env, encoding: 'utf8' }).stdout;
      if (!empty.includes(CAC_ATR_TEXT)) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.doesNotMatch(empty, new RegExp(CAC_ATR_TEXT));
  } finally {
    if (client) await stop(client.child);
    await stop(host.child);
    await pcscd.stop();
    rmSync(work, { recursive: true, force: true });
  }
});

test('emulated card reaches vpcd', { skip }, async () => {
  const work = mkdtempSync(path.join(tmpdir(), 'virtcard-emulated-vpcd-'));
  const pcscd = await startPrivatePcscd();
  const emulated = startVirtcard(['emulated', '--vpcd', `127.0.0.1:${pcscd.vpcdPort}`, '--data-dir', path.join(work, 'identity')]);
  try {
    const output = await waitForCard(pcscd);
    assert.match(output, new RegExp(CAC_ATR_TEXT), `no card in pcscd:\n${output}\n--- virtcard:\n${emulated.log()}`);
  } finally {
    await stop(emulated.child);
    await pcscd.stop();
    rmSync(work, { recursive: true, force: true });
  }
});
