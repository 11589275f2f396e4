/**
 * Signs in a loop through OpenSC's PKCS#11 module and prints
 * "<count> APDUs in <seconds> s" where the count is of RSA signatures
 * (CKM_RSA_PKCS over a 32-byte digest), so the rate parser of the other
 * loops reads it. Uses the first token with a private key that can sign,
 * logs in once with PIN and logs in again (context specific) when the key
 * requires it. PCSCLITE_CSOCK_NAME selects the pcscd; the PIN comes from
 * the environment so that it never shows in a process list or error.
 *
 *   VIRTCARD_BENCH_PIN=... node dist/bench/pkcs11-sign-loop.js SECONDS [MODULE]
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as Pkcs11Types from 'pkcs11js';

// pkcs11js is a CommonJS native addon.
const pkcs11js = createRequire(import.meta.url)('pkcs11js') as typeof Pkcs11Types;

/** Where Debian's opensc-pkcs11 installs the module. */
const DEFAULT_MODULE = '/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so';

/** CKU_CONTEXT_SPECIFIC from PKCS#11 2.20. */
const CKU_CONTEXT_SPECIFIC = 2;

/** Runs one PKCS#11 call and names it in the error when it fails. */
function step<T>(name: string, call: () => T): T {
  try {
    return call();
  } catch (error) {
    throw new Error(`${name} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function main(): void {
  const [secondsText, modulePath = DEFAULT_MODULE] = process.argv.slice(2);
  const pin = process.env.VIRTCARD_BENCH_PIN;
  if (secondsText === undefined) throw new Error('usage: VIRTCARD_BENCH_PIN=PIN pkcs11-sign-loop SECONDS [MODULE]');
  if (pin === undefined || pin === '') throw new Error('VIRTCARD_BENCH_PIN is not set: set it to the card PIN');
  const seconds = Number(secondsText);

  const pkcs11 = new pkcs11js.PKCS11();
  pkcs11.load(modulePath);
  pkcs11.C_Initialize();
  try {
    const slot = pkcs11.C_GetSlotList(true)[0];
    if (slot === undefined) throw new Error(`${modulePath} sees no token: is the card in a reader of this pcscd?`);
    const session = pkcs11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
    pkcs11.C_Login(session, pkcs11js.CKU_USER, pin);

    pkcs11.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_SIGN, value: true },
    ]);
    const key = pkcs11.C_FindObjects(session, 1)[0];
    pkcs11.C_FindObjectsFinal(session);
    if (key === undefined) throw new Error('the token has no private key that can sign');
    const [alwaysAuthenticate] = pkcs11.C_GetAttributeValue(session, key, [{ type: pkcs11js.CKA_ALWAYS_AUTHENTICATE }]);
    const loginPerSignature = Buffer.isBuffer(alwaysAuthenticate?.value) && alwaysAuthenticate.value[0] === 1;

    const digest = randomBytes(32);
    const signature = Buffer.alloc(256);
    const sign = (): void => {
      step('C_SignInit', () => pkcs11.C_SignInit(session, { mechanism: pkcs11js.CKM_RSA_PKCS }, key));
      if (loginPerSignature) step('C_Login (context specific)', () => pkcs11.C_Login(session, CKU_CONTEXT_SPECIFIC, pin));
      const output = step(`C_Sign after ${count} signatures`, () => pkcs11.C_Sign(session, digest, signature));
      if (output.length !== 256) throw new Error(`expected a 256-byte RSA-2048 signature, got ${output.length} bytes`);
    };

    let count = 0;
    sign();
    const started = process.hrtime.bigint();
    let elapsed = 0;
    do {
      sign();
      count++;
      elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    } while (elapsed < seconds);
    console.log(`${count} APDUs in ${elapsed.toFixed(3)} s (signatures)`);
    pkcs11.C_CloseSession(session);
  } finally {
    pkcs11.C_Finalize();
  }
}

try {
  main();
} catch (error: unknown) {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
}
