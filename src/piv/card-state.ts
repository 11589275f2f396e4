/**
 * The data a provisioned PIV card keeps across restarts: PIN, PUK and their
 * retry counters, the card management key, the data containers and the
 * private keys of the asymmetric slots. `serializeCardState` and
 * `parseCardState` convert it to and from JSON; `state-file.ts` encrypts
 * that JSON at rest.
 */
import { createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';
import { ALGORITHM_3DES } from './constants.js';
import { buildDefaultObjects } from './default-objects.js';

/** Asymmetric algorithms a slot key can have. */
export type SlotAlgorithm = 'rsa2048' | 'eccp256' | 'eccp384';

/** When a slot key needs the PIN: the YubiKey PIN policy values 01 (never), 02 (once) and 03 (always). */
export type PinPolicy = 'never' | 'once' | 'always';

export interface SlotKey {
  readonly algorithm: SlotAlgorithm;
  readonly pinPolicy: PinPolicy;
  readonly privateKey: KeyObject;
}

/** A PIN or PUK with its retry counter. Values are stored without the FF padding. */
export interface ReferenceDataState {
  value: Uint8Array;
  /** Wrong entries allowed in a row before it blocks (1 to 15). */
  maxRetries: number;
  triesLeft: number;
}

export interface ManagementKeyState {
  /** 03 (3DES), 08 (AES-128), 0A (AES-192) or 0C (AES-256). */
  algorithm: number;
  key: Uint8Array;
}

export interface PivCardState {
  pin: ReferenceDataState;
  puk: ReferenceDataState;
  managementKey: ManagementKeyState;
  /** Data objects by tag: the contents of the 53 template (or of 7E for the discovery object). */
  objects: Map<number, Uint8Array>;
  /** Private keys by key reference (9A, 9C, 9D, 9E, 82 to 95). */
  keys: Map<number, SlotKey>;
}

/** Factory defaults, the same as a new YubiKey's so provisioning guides apply unchanged. */
export const DEFAULT_PIN = '123456';
export const DEFAULT_PUK = '12345678';
export const DEFAULT_MANAGEMENT_KEY = Buffer.from('010203040506070801020304050607080102030405060708', 'hex');
export const DEFAULT_RETRIES = 3;

/** Creates the state of a new, unprovisioned card: default PIN, PUK and management key, fresh CHUID and CCC. */
export function createDefaultCardState(): PivCardState {
  return {
    pin: { value: Buffer.from(DEFAULT_PIN, 'latin1'), maxRetries: DEFAULT_RETRIES, triesLeft: DEFAULT_RETRIES },
    puk: { value: Buffer.from(DEFAULT_PUK, 'latin1'), maxRetries: DEFAULT_RETRIES, triesLeft: DEFAULT_RETRIES },
    managementKey: { algorithm: ALGORITHM_3DES, key: Uint8Array.from(DEFAULT_MANAGEMENT_KEY) },
    objects: buildDefaultObjects(randomBytes(16)),
    keys: new Map(),
  };
}

/** Raised when the decrypted state is not a card state this version understands. */
export class CardStateFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CardStateFormatError';
  }
}

interface SerializedReferenceData {
  value: string;
  maxRetries: number;
  triesLeft: number;
}

interface SerializedCardState {
  pin: SerializedReferenceData;
  puk: SerializedReferenceData;
  managementKey: { algorithm: number; key: string };
  objects: Record<string, string>;
  keys: Record<string, { algorithm: SlotAlgorithm; pinPolicy: PinPolicy; pkcs8: string }>;
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

function serializeReferenceData(data: ReferenceDataState): SerializedReferenceData {
  return { value: toHex(data.value), maxRetries: data.maxRetries, triesLeft: data.triesLeft };
}

/** Converts the state to JSON text. The text contains the PIN, PUK and private keys in the clear. */
export function serializeCardState(state: PivCardState): string {
  const serialized: SerializedCardState = {
    pin: serializeReferenceData(state.pin),
    puk: serializeReferenceData(state.puk),
    managementKey: { algorithm: state.managementKey.algorithm, key: toHex(state.managementKey.key) },
    objects: Object.fromEntries([...state.objects].map(([tag, value]) => [tag.toString(16), toHex(value)])),
    keys: Object.fromEntries(
      [...state.keys].map(([reference, key]) => [
        reference.toString(16),
        {
          algorithm: key.algorithm,
          pinPolicy: key.pinPolicy,
          pkcs8: key.privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'),
        },
      ]),
    ),
  };
  return JSON.stringify(serialized);
}

function parseHex(value: unknown, field: string): Uint8Array {
  if (typeof value !== 'string' || !/^([0-9a-f]{2})*$/i.test(value)) {
    throw new CardStateFormatError(`field ${field} of the PIV card state is not a hex string`);
  }
  return Uint8Array.from(Buffer.from(value, 'hex'));
}

function parseReferenceData(value: unknown, field: string): ReferenceDataState {
  const data = value as Partial<SerializedReferenceData> | undefined;
  const maxRetries = data?.maxRetries;
  const triesLeft = data?.triesLeft;
  if (
    typeof maxRetries !== 'number' ||
    typeof triesLeft !== 'number' ||
    !Number.isInteger(maxRetries) ||
    !Number.isInteger(triesLeft) ||
    maxRetries < 1 ||
    maxRetries > 15 ||
    triesLeft < 0 ||
    triesLeft > maxRetries
  ) {
    throw new CardStateFormatError(`field ${field} of the PIV card state has invalid retry counters`);
  }
  return { value: parseHex(data?.value, `${field}.value`), maxRetries, triesLeft };
}

const ALGORITHMS: ReadonlySet<string> = new Set(['rsa2048', 'eccp256', 'eccp384']);
const PIN_POLICIES: ReadonlySet<string> = new Set(['never', 'once', 'always']);

/** Parses JSON text written by `serializeCardState`; raises `CardStateFormatError` naming the bad field. */
export function parseCardState(text: string): PivCardState {
  let raw: Partial<SerializedCardState>;
  try {
    raw = JSON.parse(text) as Partial<SerializedCardState>;
  } catch {
    throw new CardStateFormatError('the PIV card state is not valid JSON');
  }

  const objects = new Map<number, Uint8Array>();
  for (const [tag, value] of Object.entries(raw.objects ?? {})) {
    objects.set(Number.parseInt(tag, 16), parseHex(value, `objects.${tag}`));
  }

  const keys = new Map<number, SlotKey>();
  for (const [reference, key] of Object.entries(raw.keys ?? {})) {
    if (!ALGORITHMS.has(key.algorithm) || !PIN_POLICIES.has(key.pinPolicy)) {
      throw new CardStateFormatError(`key ${reference} of the PIV card state has an unknown algorithm or PIN policy`);
    }
    const privateKey = createPrivateKey({ key: Buffer.from(key.pkcs8, 'base64'), format: 'der', type: 'pkcs8' });
    keys.set(Number.parseInt(reference, 16), { algorithm: key.algorithm, pinPolicy: key.pinPolicy, privateKey });
  }

  const managementKey = raw.managementKey;
  if (managementKey === undefined || typeof managementKey.algorithm !== 'number') {
    throw new CardStateFormatError('field managementKey of the PIV card state is missing');
  }
  return {
    pin: parseReferenceData(raw.pin, 'pin'),
    puk: parseReferenceData(raw.puk, 'puk'),
    managementKey: { algorithm: managementKey.algorithm, key: parseHex(managementKey.key, 'managementKey.key') },
    objects,
    keys,
  };
}
