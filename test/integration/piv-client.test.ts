/**
 * `virtcard client` with `soft=(,Test,PIV,,…)`: a PIV card on the NSS
 * fixture database, served over VSCard to `virtcard host`, which exports it
 * to a private pcscd through vpcd, where OpenSC uses it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { privatePcscdUnavailableReason, startPrivatePcscd, type PrivatePcscd } from '../support/private-pcscd.js';
import { SHARED_DIR, VIRTCARD_MAIN, describeRun, missingToolsReason, runTool } from '../support/virtcard-vpcd.js';

const FIXTURE_DB = join(SHARED_DIR, 'fixtures', 'nss-db');
const PASSWORD_FILE = join(SHARED_DIR, 'fixtures', 'nss-db-password.txt');

const unavailable =
  privatePcscdUnavailableReason() ??
  missingToolsReason() ??
  (existsSync(FIXTURE_DB) ? undefined : `the NSS fixture database ${FIXTURE_DB} is missing; set VIRTCARD_SHARED`);
// In CI every tool must be there, so a missing one fails; elsewhere it skips with its reason.
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Child {
  readonly child: ChildProcess;
  log(): string;
}

function startVirtcard(args: readonly string[], env: NodeJS.ProcessEnv = {}): Child {
  let log = '';
  const child = spawn(process.execPath, [VIRTCARD_MAIN, ...args], {
    env: { ...process.env, VIRTCARD_LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.setEncoding('utf8').on('data', (text: string) => (log += text));
  child.stderr?.setEncoding('utf8').on('data', (text: string) => (log += text));
  return { child, log: () => log };
}

async function stop(started: Child | undefined): Promise<void> {
  if (started === undefined || started.child.exitCode !== null || started.child.signalCode !== null) return;
  started.child.kill('SIGTERM');
  await once(started.child, 'exit');
}

describe('virtcard client with a soft PIV card', { skip }, () => {
  let pcscd: PrivatePcscd;
  let host: Child | undefined;
  let client: Child | undefined;
  let work: string;
  let password: string;

  before(async () => {
    if (unavailable !== undefined) throw new Error(unavailable);
    work = mkdtempSync(join(tmpdir(), 'virtcard-piv-client-'));
    const database = join(work, 'nss-db');
    cpSync(FIXTURE_DB, database, { recursive: true });
    password = readFileSync(PASSWORD_FILE, 'utf8').split(/\r?\n/, 1)[0]!;
    const pinFile = join(work, 'pin');
    writeFileSync(pinFile, `${password}\n`, { mode: 0o600 });

    pcscd = await startPrivatePcscd();
    const vscardPort = await freePort();
    host = startVirtcard(['host', '--listen', `127.0.0.1:${vscardPort}`, '--vpcd', `127.0.0.1:${pcscd.vpcdPort}`]);
    client = startVirtcard([
      'client',
      '-e',
      `db="sql:${database}" use_hw=no soft=(,Test,PIV,,id-cert,signing-cert)`,
      '--pin-file',
      pinFile,
      '127.0.0.1',
      String(vscardPort),
    ]);

    const deadline = Date.now() + 20_000;
    while (runTool(pcscd, 'opensc-tool', ['-n']).stdout.includes('Personal Identity Verification') === false) {
      if (Date.now() > deadline) {
        throw new Error(`no PIV card reached pcscd within 20 s\nhost:\n${host.log()}\nclient:\n${client.log()}`);
      }
      await sleep(250);
    }
  });

  after(async () => {
    try {
      await stop(client);
      await stop(host);
    } finally {
      await pcscd?.stop();
      if (work !== undefined) rmSync(work, { recursive: true, force: true });
    }
  });

  test('client logs a PIV card', () => {
    assert.match(client?.log() ?? '', /PIV card ready/);
  });

  test('pkcs11-tool lists NSS certificates', () => {
    const result = runTool(pcscd, 'pkcs11-tool', ['-O']);
    assert.equal(result.status, 0, describeRun(result));
    assert.match(result.stdout, /Certificate for PIV Authentication/);
    assert.match(result.stdout, /Certificate for Digital Signature/);
    assert.doesNotMatch(result.stdout, /Certificate Object; type = X\.509 cert\s+label:\s+Certificate for Key Management/);
  });

  test('9A signature verifies with NSS certificate', () => {
    const message = join(work, 'message.txt');
    writeFileSync(message, 'signed through VSCard\n');
    const signature = join(work, 'message.sig');
    const sign = runTool(pcscd, 'pkcs11-tool', ['--login', '--pin', password, '--sign', '--id', '01', '-m', 'SHA256-RSA-PKCS', '-i', message, '-o', signature]);
    assert.equal(sign.status, 0, describeRun(sign));

    const certificate = spawnSync('certutil', ['-L', '-d', `sql:${FIXTURE_DB}`, '-n', 'id-cert', '-a']);
    assert.equal(certificate.status, 0, certificate.stderr.toString());
    const certificateFile = join(work, 'id-cert.pem');
    writeFileSync(certificateFile, certificate.stdout);
    const publicKey = spawnSync('openssl', ['x509', '-in', certificateFile, '-pubkey', '-noout'], { encoding: 'utf8' });
    const publicKeyFile = join(work, 'id-cert.pub');
    writeFileSync(publicKeyFile, publicKey.stdout);
    const verify = spawnSync('openssl', ['dgst', '-sha256', '-verify', publicKeyFile, '-signature', signature, message], { encoding: 'utf8' });
    assert.equal(verify.status, 0, describeRun(verify));
  });

  test('wrong PIN counts down', () => {
    // OpenSC rejects PINs longer than 8 bytes before it sends them, so the wrong PIN has 8.
    const login = runTool(pcscd, 'pkcs11-tool', ['--login', '--pin', '00000000', '-O']);
    assert.notEqual(login.status, 0);
    const status = runTool(pcscd, 'opensc-tool', ['-s', '00 A4 04 00 05 A0 00 00 03 08', '-s', '00 20 00 80 00']);
    assert.match(status.stdout, /SW1=0x63, SW2=0xC2/, describeRun(status));
  });
});
