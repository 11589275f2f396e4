/**
 * The CCID reader over USB/IP, end to end: `virtcard emulated --usbip`
 * listens on a loopback port of the host, QEMU user networking with
 * `restrict=on` forwards the guest's connection to 10.0.2.100:3240 there
 * (guestfwd), and the Debian test guest attaches the device with vhci-hcd,
 * then uses it through pcscd, libccid and OpenSC. The guest logs in and
 * signs, and the host verifies the signature with the card's certificate.
 *
 * The guest image has no vhci-hcd, network driver or usbip tool, so
 * test/usbip/prepare-guest.sh adds the guest kernel's modules and a static
 * attach helper to the guest build folder first (it needs apt-get and gcc).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { X509Certificate, verify } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const sharedDirectory = process.env['VIRTCARD_SHARED'] ?? path.resolve(repositoryRoot, '../shared');
const fixtureDatabase = path.join(sharedDirectory, 'fixtures', 'nss-db');
const runScript = path.join(repositoryRoot, 'test', 'guest', 'run.sh');
const prepareScript = path.join(repositoryRoot, 'test', 'usbip', 'prepare-guest.sh');
const guestCache =
  process.env['VIRTCARD_GUEST_DIR'] ?? path.join(process.env['XDG_CACHE_HOME'] ?? path.join(homedir(), '.cache'), 'virtcard-guest');
const usbipFiles = path.join(guestCache, 'usbip');
const virtcardMain = path.join(repositoryRoot, 'dist', 'src', 'cli', 'main.js');
const CAC_ATR_TEXT = '3b:7a:18:00:00:73:66:74:65:20:63:64:31:34:34';
const SIGNED_DATA = Buffer.from('virtcard test data\n');

function unavailableReason(): string | undefined {
  if (spawnSync('sh', ['-c', 'command -v qemu-system-x86_64']).status !== 0) return 'qemu-system-x86_64 is not installed';
  if (!existsSync(virtcardMain)) return `${virtcardMain} is missing; run npm run build`;
  if (!['vmlinuz', 'initrd.img', 'rootfs.ext4'].every((file) => existsSync(path.join(guestCache, file)))) {
    return `the test guest is not built in ${guestCache}; run test/guest/build.sh as root`;
  }
  const prepared = spawnSync(prepareScript, { encoding: 'utf8', env: { ...process.env, VIRTCARD_GUEST_DIR: guestCache } });
  if (prepared.status !== 0) return `test/usbip/prepare-guest.sh failed: ${prepared.stderr.trim()}`;
  return undefined;
}

const unavailable = unavailableReason();
// In CI every tool must be there, so a missing one fails; elsewhere it skips with its reason.
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const GUEST_SCRIPT = `cd "$VIRTCARD_FILES"
busybox insmod ./e1000.ko && busybox insmod ./usbip-core.ko && busybox insmod ./vhci-hcd.ko || { echo "insmod failed"; exit 3; }
busybox ip link set lo up
busybox ip link set eth0 up
busybox ip addr add 10.0.2.15/24 dev eth0
./usbip-attach 10.0.2.100 3240 1-1 || exit 4
i=0; while [ $i -lt 50 ] && ! grep -qs 0b /sys/bus/usb/devices/*/bInterfaceClass; do sleep 0.2; i=$((i+1)); done
# The reader appears after boot, so pcscd starts only now.
pcscd
i=0; while [ $i -lt 50 ] && ! opensc-tool -l 2>/dev/null | grep -q Gemalto; do sleep 0.2; i=$((i+1)); done
echo "##### opensc-tool -a"
opensc-tool -a
echo "##### pkcs11-tool -L"
pkcs11-tool -L
echo "##### pkcs11-tool -O"
pkcs11-tool -O
printf 'virtcard test data\\n' > /tmp/data
pkcs11-tool --login --pin 12345678 --sign --mechanism SHA256-RSA-PKCS --id 0001 --input-file /tmp/data --output-file /tmp/sig && echo SIGN-OK
echo "##### signature (base64)"
base64 -w 64 /tmp/sig
pkcs11-tool --read-object --type cert --id 0001 --output-file /tmp/cert.der
echo "##### certificate (base64)"
base64 -w 64 /tmp/cert.der
`;

/** Returns the base64 block that follows the line `heading` in the guest output. */
function base64After(output: string, heading: string): Buffer {
  const lines = output.split('\n');
  const start = lines.indexOf(heading);
  assert.ok(start >= 0, `no line "${heading}" in the guest output:\n${output}`);
  const block: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(line)) break;
    block.push(line);
  }
  return Buffer.from(block.join(''), 'base64');
}

test('emulated card over USB/IP in a guest', { skip, timeout: 200_000 }, async () => {
  const work = mkdtempSync(path.join(tmpdir(), 'virtcard-usbip-'));
  const database = path.join(work, 'nss-db');
  cpSync(fixtureDatabase, database, { recursive: true });
  const port = await freePort();
  let log = '';
  const virtcard = spawn(
    process.execPath,
    [virtcardMain, 'emulated', '--usbip', `127.0.0.1:${port}`, '--nss-db', `sql:${database}`, '--cert', 'id-cert', '--cert', 'signing-cert', '--cert', 'encryption-cert'],
    { env: { ...process.env, VIRTCARD_LOG_FORMAT: 'text', VIRTCARD_PIN: '12345678' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  virtcard.stdout.setEncoding('utf8').on('data', (text: string) => (log += text));
  virtcard.stderr.setEncoding('utf8').on('data', (text: string) => (log += text));
  try {
    const deadline = Date.now() + 20_000;
    while (!log.includes('USB/IP export listening')) {
      assert.ok(Date.now() < deadline && virtcard.exitCode === null, `virtcard did not start listening:\n${log}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    const scriptFile = path.join(work, 'guest.sh');
    writeFileSync(scriptFile, GUEST_SCRIPT);
    const puts = ['e1000.ko', 'usbip-core.ko', 'vhci-hcd.ko', 'usbip-attach'].flatMap((file) => ['--put', path.join(usbipFiles, file)]);
    const guest = spawn(
      runScript,
      [
        '--timeout',
        '150',
        ...puts,
        scriptFile,
        '--',
        '-netdev',
        `user,id=net,restrict=on,guestfwd=tcp:10.0.2.100:3240-tcp:127.0.0.1:${port}`,
        '-device',
        'e1000,netdev=net',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VIRTCARD_GUEST_DIR: guestCache, VIRTCARD_NO_PCSCD: '1' } },
    );
    let stdout = '';
    let stderr = '';
    guest.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    guest.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const [code] = (await once(guest, 'exit')) as [number | null];

    const context = `\n--- guest stdout:\n${stdout}\n--- stderr:\n${stderr}\n--- virtcard:\n${log}`;
    assert.equal(code, 0, `guest script failed${context}`);
    assert.match(stdout, /attached bus id 1-1 to vhci port \d/, context);
    assert.match(stdout, new RegExp(CAC_ATR_TEXT), context);
    assert.match(stdout, /token label\s+: John Doe/, context);
    assert.equal((stdout.match(/^Certificate Object/gm) ?? []).length, 3, context);
    assert.match(stdout, /^SIGN-OK$/m, context);
    const certificate = new X509Certificate(base64After(stdout, '##### certificate (base64)'));
    assert.match(certificate.subject, /CN=John Doe/);
    const signature = base64After(stdout, '##### signature (base64)');
    assert.equal(signature.length, 256, `a 2048-bit RSA signature has 256 bytes${context}`);
    assert.ok(verify('sha256', SIGNED_DATA, certificate.publicKey, signature), `the signature does not verify with ${certificate.subject}`);
    assert.match(log, /USB\/IP device imported/);
  } finally {
    if (virtcard.exitCode === null) {
      virtcard.kill('SIGTERM');
      await once(virtcard, 'exit');
    }
    rmSync(work, { recursive: true, force: true });
  }
});
