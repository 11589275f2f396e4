/**
 * QEMU's documented guest setup for the CAC card, run against virtcard. A
 * Debian guest gets a `ccid-card-passthru` reader, and `virtcard client`
 * serves the card in place of vscclient. In the guest the script follows
 * QEMU's smart-card documentation (system NSS database, CA import, CoolKey
 * module, `certutil -L -h all`), then signs with each key through CoolKey.
 * The host checks the signatures against the certificates. The card stores
 * its certificates zlib-compressed (`--cert-compression zlib`), because
 * CoolKey 1.1 reads nothing else (docs/coolkey.md).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, SHARED_DIR, VIRTCARD_MAIN } from '../support/virtcard-vpcd.js';

const FIXTURE_DB = join(SHARED_DIR, 'fixtures', 'nss-db');
const CA_CERTIFICATE = join(SHARED_DIR, 'fixtures', 'fake-smartcard-ca.cer');
const RUN_GUEST = join(REPO_ROOT, 'test', 'guest', 'run.sh');
const GUEST_DIR = process.env['VIRTCARD_GUEST_DIR'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'virtcard-guest');
const QEMU = process.env['VIRTCARD_QEMU'] ?? 'qemu-system-x86_64';
/** Upper bound for the whole guest run, in seconds. A run took 24 s with QEMU 7.2 TCG on a 2-core host. */
const GUEST_TIMEOUT_S = 300;

/** Card order of the fixture certificates, with the ID and label CoolKey gives each PKI applet. */
const CERTIFICATES = [
  { nickname: 'id-cert', id: '0001', label: 'CAC ID Certificate' },
  { nickname: 'signing-cert', id: '0002', label: 'CAC Email Signature Certificate' },
  { nickname: 'encryption-cert', id: '0003', label: 'CAC Email Encryption Certificate' },
] as const;

const SIGNED_DATA = 'virtcard test data\n';

/**
 * The guest side. QEMU's documentation uses the system database
 * /etc/pki/nssdb, which the script may create because the guest's root file
 * system is a throwaway snapshot. pcscd -a logs the APDUs to the console.
 */
const GUEST_SCRIPT = `#!/bin/sh
PIN=$(cat "$VIRTCARD_FILES/pin.txt")
CK=
for candidate in /usr/lib/pkcs11/libcoolkeypk11.so /usr/lib/x86_64-linux-gnu/pkcs11/libcoolkeypk11.so; do
    [ -e "$candidate" ] && CK=$candidate && break
done
[ -n "$CK" ] || { echo "##### CoolKey module not found"; exit 3; }

# The script starts when pcscd lists the reader; the client inserts the card a moment later.
n=0
until opensc-tool -a >/dev/null 2>&1; do
    n=$((n + 1))
    [ $n -ge 60 ] && { echo "##### no card in the reader after 30 s"; exit 2; }
    sleep 0.5
done

echo "##### BEGIN nss"
mkdir -p /etc/pki/nssdb
certutil -N -d sql:/etc/pki/nssdb --empty-password &&
certutil -A -d sql:/etc/pki/nssdb -n fake-smartcard-ca -t CT,C,C -i "$VIRTCARD_FILES/fake-smartcard-ca.cer" &&
modutil -force -add CoolKey -libfile "$CK" -dbdir sql:/etc/pki/nssdb &&
certutil -d sql:/etc/pki/nssdb -L -h all -f "$VIRTCARD_FILES/pin.txt" 2>&1
rc=$?
echo "##### END nss rc=$rc"
failures=0
[ $rc = 0 ] || failures=$((failures + 1))

printf '${SIGNED_DATA.replace('\n', '\\n')}' > /tmp/data
for id in ${CERTIFICATES.map(({ id }) => id).join(' ')}; do
    pkcs11-tool --module "$CK" --login --pin "$PIN" --sign --mechanism RSA-PKCS --id $id \\
        --input-file /tmp/data --output-file /tmp/sig$id >/tmp/sign$id.log 2>&1
    rc=$?
    echo "##### SIGNATURE $id rc=$rc $(base64 -w 0 /tmp/sig$id 2>/dev/null)"
    [ $rc = 0 ] || { cat /tmp/sign$id.log; failures=$((failures + 1)); }
done
exit $failures
`;

function unavailableReason(): string | undefined {
  if (!existsSync(join(FIXTURE_DB, 'cert9.db'))) return `fixture NSS database missing at ${FIXTURE_DB}; set VIRTCARD_SHARED`;
  if (!existsSync(RUN_GUEST)) return `${RUN_GUEST} is missing`;
  if (!existsSync(join(GUEST_DIR, 'vmlinux')) || !existsSync(join(GUEST_DIR, 'rootfs.ext4'))) {
    return `no test guest in ${GUEST_DIR}: build it with test/guest/build.sh (needs root)`;
  }
  for (const tool of [QEMU, 'certutil', 'openssl']) {
    if (spawnSync('which', [tool]).status !== 0) return `${tool} is missing`;
  }
  return undefined;
}

// In CI every tool must be there, so a missing one fails. Elsewhere the test skips with the reason.
const unavailable = unavailableReason();
const skip = unavailable !== undefined && !process.env['CI'] ? unavailable : false;

function readFixturePassword(): string {
  return readFileSync(join(SHARED_DIR, 'fixtures', 'nss-db-password.txt'), 'utf8').split(/\r?\n/, 1)[0] ?? '';
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

interface GuestRun {
  /** Exit status of run.sh: the script's own, 124 on timeout, 125 when the guest died. */
  status: number | null;
  stdout: string;
  stderr: string;
  /** Guest console: kernel, init and the pcscd -a log of every APDU and status word. */
  console: string;
  /** Everything `virtcard client` wrote (its log). */
  clientLog: string;
}

function waitForExit(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** Boots the guest with a passthru reader, serves the card with `virtcard client` and runs GUEST_SCRIPT. */
async function runGuest(work: string): Promise<GuestRun> {
  const database = join(work, 'nss-db');
  cpSync(FIXTURE_DB, database, { recursive: true });
  const files = join(work, 'files');
  mkdirSync(files);
  copyFileSync(CA_CERTIFICATE, join(files, 'fake-smartcard-ca.cer'));
  writeFileSync(join(files, 'pin.txt'), `${readFixturePassword()}\n`, { mode: 0o600 });
  const script = join(work, 'coolkey.sh');
  writeFileSync(script, GUEST_SCRIPT, { mode: 0o755 });
  const consolePath = join(work, 'console.txt');
  const port = await freePort();

  const guest = spawn(
    RUN_GUEST,
    [
      '--timeout', String(GUEST_TIMEOUT_S),
      '--console', consolePath,
      '--put', join(files, 'fake-smartcard-ca.cer'),
      '--put', join(files, 'pin.txt'),
      script,
      '--',
      '-device', 'usb-ccid',
      '-device', 'ccid-card-passthru,chardev=ccid',
      '-chardev', `socket,id=ccid,host=127.0.0.1,port=${port},server=on,wait=off`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VIRTCARD_PCSCD_ARGS: '-a' } },
  );
  let stdout = '';
  let stderr = '';
  guest.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  guest.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const guestExit = waitForExit(guest);

  // The client retries until QEMU listens. Its console reads stdin, so stdin stays an open pipe.
  const clientLogPath = join(work, 'client.log');
  const clientLog = openSync(clientLogPath, 'w');
  const emulatorOptions = `db="sql:${database}" use_hw=no soft=(,Test,CAC,,${CERTIFICATES.map(({ nickname }) => nickname).join(',')})`;
  const client = spawn(
    process.execPath,
    [VIRTCARD_MAIN, 'client', '-e', emulatorOptions, '--cert-compression', 'zlib', '--pin-file', join(files, 'pin.txt'), '127.0.0.1', String(port)],
    { stdio: ['pipe', clientLog, clientLog] },
  );
  closeSync(clientLog);
  const clientExit = waitForExit(client);

  const status = await guestExit;
  if (client.exitCode === null) client.kill('SIGTERM');
  await clientExit;

  return {
    status,
    stdout,
    stderr,
    console: existsSync(consolePath) ? readFileSync(consolePath, 'utf8') : '',
    clientLog: readFileSync(clientLogPath, 'utf8'),
  };
}

function describeGuest(run: GuestRun): string {
  return `run.sh exit ${run.status}\nscript output:\n${run.stdout}\nrun.sh stderr:\n${run.stderr}\nclient log:\n${run.clientLog.slice(-4000)}`;
}

describe('CoolKey in QEMU guest', { skip, timeout: (GUEST_TIMEOUT_S + 60) * 1000 }, () => {
  let work: string;
  let run: GuestRun;

  before(async () => {
    if (unavailable !== undefined) throw new Error(unavailable);
    work = mkdtempSync(join(tmpdir(), 'virtcard-coolkey-guest-'));
    run = await runGuest(work);
  });

  after(() => {
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  test('guest script succeeds', () => {
    assert.equal(run.status, 0, describeGuest(run));
  });

  test('certutil lists John Doe certificates', () => {
    const section = /##### BEGIN nss\n([\s\S]*?)##### END nss rc=(\d+)/.exec(run.stdout);
    assert.ok(section, describeGuest(run));
    assert.equal(section[2], '0', section[1]);

    const listing = section[1] ?? '';
    assert.match(listing, /^fake-smartcard-ca\s+CT,C,C$/m);
    for (const { label } of CERTIFICATES) {
      assert.match(listing, new RegExp(`^John Doe:${label}\\s+u,u,u$`, 'm'), label);
    }
  });

  test('CoolKey signatures verify on host', () => {
    const data = join(work, 'data');
    writeFileSync(data, SIGNED_DATA);
    for (const { nickname, id } of CERTIFICATES) {
      const line = new RegExp(`^##### SIGNATURE ${id} rc=(\\d+) (\\S*)$`, 'm').exec(run.stdout);
      assert.ok(line, `no signature line for key ${id}\n${describeGuest(run)}`);
      assert.equal(line[1], '0', `pkcs11-tool --sign with key ${id} failed\n${run.stdout}`);

      const signature = join(work, `signature-${id}`);
      writeFileSync(signature, Buffer.from(line[2] ?? '', 'base64'));
      const certificate = join(work, `${nickname}.der`);
      const exported = spawnSync('certutil', ['-L', '-d', `sql:${FIXTURE_DB}`, '-n', nickname, '-r']);
      assert.equal(exported.status, 0, String(exported.stderr));
      writeFileSync(certificate, exported.stdout);

      // RSA-PKCS signs the raw input, so recovering the signature must give the data back.
      const recovered = spawnSync('openssl', ['pkeyutl', '-verifyrecover', '-certin', '-inkey', certificate, '-keyform', 'DER', '-in', signature]);
      assert.equal(recovered.status, 0, `key ${id}: ${String(recovered.stderr)}`);
      assert.equal(recovered.stdout.toString(), SIGNED_DATA, `key ${id}`);
    }
  });

  test('guest sent CoolKey commands', () => {
    // pcscd -a logs each command as "APDU: 00 A4 ...". OpenSC's CAC driver selects with P2 = 0C and
    // reads with class 00, and only CoolKey signs in this script, so these lines come from CoolKey.
    assert.match(run.console, /APDU: 00 A4 04 00 07 A0 00 00 01 16 DB 00 ?\r?$/m, 'SELECT of the CCC with P2 = 00');
    assert.match(run.console, /APDU: 80 52 00 00 02 02 02 ?\r?$/m, 'READ BUFFER with class 80');
    assert.match(run.console, /APDU: 00 A4 02 0C 02 01 02 ?\r?$/m, 'SELECT of the PKI 2 file with P2 = 0C');
    assert.match(run.console, /APDU: 00 42 80 00 F0 /, 'SIGN/DECRYPT in 240-byte blocks');
  });
});
