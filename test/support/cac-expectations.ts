/**
 * The responses virtcard's CAC card must return where it deliberately
 * differs from libcacard, computed from the documented rules so the
 * conformance test can check those exchanges instead of skipping them:
 *
 * - VERIFY keeps a retry counter: a wrong PIN returns 63 Cx, the PIN blocks
 *   at 0 (69 83, also for the right PIN), VERIFY without data returns 90 00
 *   when verified and 63 Cx otherwise. Resets clear the verified state, not
 *   the counter. SIGN/DECRYPT without a verified PIN returns 69 85.
 * - GET ACR in SimpleTLV form (P1 00, 01, 20, 21) uses the GSC-IS values:
 *   ACR entries `[ACRID, type, n, (provider, key)...]`, service applet
 *   entries with the applet's AID, and the three access method providers.
 *
 * The model follows the recorded exchanges. It learns which applet is
 * selected on channels 0 and 1 from the C card's SELECT responses, and it
 * keeps its own GET RESPONSE buffer only while the two cards diverge.
 */
import { parseCommandApdu } from '../../src/iso7816/apdu.js';

const CORRECT_PIN = Buffer.from('12345678', 'latin1');
const PIN_RETRIES = 3;

const ACA_AID = [0xa0, 0x00, 0x00, 0x00, 0x79, 0x03, 0x00];
const PKI_AID_PREFIX = [0xa0, 0x00, 0x00, 0x00, 0x79, 0x01];
const APPLET_INFORMATION = [0x01, 0x05, 0x10, 0x02, 0x06, 0x02, 0x02];

/** GSC-IS ACR table rows: ACRID, ACR type, access methods (provider, key). */
const ACR_ROWS: readonly (readonly [number, number, readonly number[]])[] = [
  [0x00, 0x00, []],
  [0x01, 0x01, []],
  [0x02, 0x00, []],
  [0x06, 0x06, [0x1e, 0x00]],
  [0x04, 0x04, [0x1f, 0x21]],
  [0x08, 0x03, [0x1d, 0x01, 0x1e, 0x01]],
  [0x09, 0x02, [0x1d, 0x01]],
  [0x0a, 0x03, [0x1d, 0x03, 0x1e, 0x01]],
  [0x0b, 0x02, [0x1d, 0x00]],
  [0x10, 0x00, []],
  [0x11, 0x00, []],
];

function acrEntry(row: (typeof ACR_ROWS)[number]): number[] {
  const [acrId, type, methods] = row;
  return [0xa0, 3 + methods.length, acrId, type, methods.length / 2, ...methods];
}

function serviceTable(pkiCount: number): number[] {
  const rid = [0xa0, 0x00, 0x00, 0x00, 0x79];
  const entries: [number, number[]][] = [];
  for (let i = 0; i < pkiCount; i++) entries.push([0x61 + i, [...rid, 0x01, i]]);
  entries.push(
    [0x40, [0xa0, 0x00, 0x00, 0x01, 0x16, 0x30, 0x00]],
    [0x4f, [0xa0, 0x00, 0x00, 0x01, 0x16, 0xdb, 0x00]],
    [0x4b, [...rid, 0x02, 0xfb]],
    [0x41, [...rid, 0x02, 0x00]],
    [0x42, [...rid, 0x02, 0x01]],
    [0x4e, [...rid, 0x02, 0xfe]],
    [0x4d, [...rid, 0x02, 0xfd]],
    [0x50, [...rid, 0x02, 0xf2]],
    [0x51, [...rid, 0x02, 0xf0]],
    [0x52, [...rid, 0x02, 0xf1]],
    [0x44, [...rid, 0x12, 0x01]],
    [0x45, [...rid, 0x12, 0x02]],
  );
  return [
    ...APPLET_INFORMATION,
    0x94, 0x01, entries.length,
    ...entries.flatMap(([id, aid]) => [0x93, 0x0a, id, 0x92, 0x07, ...aid]),
  ];
}

function ampTable(): number[] {
  return [
    ...APPLET_INFORMATION,
    0x91, 0x01, 0x03,
    ...[0x1f, 0x1e, 0x1d].flatMap((id) => [0x90, 0x0a, id, 0x92, 0x07, ...ACA_AID]),
  ];
}

function statusBytes(sw: number): Uint8Array {
  return Uint8Array.of(sw >> 8, sw & 0xff);
}

function startsWith(bytes: Uint8Array, prefix: readonly number[]): boolean {
  return bytes.length >= prefix.length && prefix.every((byte, i) => bytes[i] === byte);
}

function sameAs(bytes: Uint8Array, other: readonly number[]): boolean {
  return bytes.length === other.length && startsWith(bytes, other);
}

/** Decodes CLA as libcacard does: only the interindustry classes reach the ISO handler. */
function classOf(cla: number): { iso: boolean; channel: number; secureMessaging: number } {
  const type = cla & 0xf0;
  if (type === 0x00 || type === 0x80 || type === 0x90 || type === 0xa0) {
    return { iso: true, channel: cla & 3, secureMessaging: cla & 0x0e };
  }
  return { iso: type === 0xb0 || type === 0xc0, channel: 0, secureMessaging: 0 };
}

export class CacExpectationModel {
  private selected: (Uint8Array | undefined)[] = [undefined, undefined, undefined, undefined];
  private triesLeft = PIN_RETRIES;
  private verified = false;
  private diverged = false;
  private pending: Uint8Array | undefined;
  private pendingOffset = 0;

  constructor(private readonly pkiCount: number) {}

  /** Applies a card reset: nothing selected, nothing pending, PIN not verified; the counter stays. */
  reset(): void {
    this.selected = [undefined, undefined, undefined, undefined];
    this.verified = false;
    this.diverged = false;
    this.pending = undefined;
  }

  /**
   * Returns the response virtcard must return to `command` when it differs
   * by design from `recorded` (the C card's response, or undefined when it
   * was not recorded exactly). Returns undefined when virtcard must respond
   * like the C card. Updates the model either way.
   */
  expect(command: Uint8Array, recorded: Uint8Array | undefined): Uint8Array | undefined {
    const parsed = parseCommandApdu(command);
    if (!parsed.ok) return undefined;
    const apdu = parsed.apdu;
    const cls = classOf(apdu.cla);

    if (apdu.ins !== 0xc0) {
      this.diverged = false;
      this.pending = undefined;
    }
    const selected = this.selected[cls.channel];

    // SELECT by AID goes to the ISO handler, and the C card's status word shows whether it found the applet.
    if (apdu.ins === 0xa4 && apdu.p1 === 0x04 && cls.iso && cls.secureMessaging === 0 && recorded !== undefined) {
      const sw1 = recorded[recorded.length - 2];
      const sw = (recorded[recorded.length - 2]! << 8) | recorded[recorded.length - 1]!;
      if (sw === 0x6a82) this.selected[cls.channel] = undefined;
      else if (sw1 === 0x61 || sw === 0x9000) this.selected[cls.channel] = apdu.data.slice();
      return undefined;
    }

    if (apdu.ins === 0x20 && cls.iso && cls.secureMessaging === 0 && apdu.p1 === 0 && apdu.p2 === 0) {
      return statusBytes(this.verify(apdu.data));
    }

    if (apdu.ins === 0x42 && selected !== undefined && startsWith(selected, PKI_AID_PREFIX)) {
      if (apdu.p1 === 0x00 && apdu.p2 === 0x00 && !this.verified) {
        this.diverged = true;
        return statusBytes(0x6985);
      }
      return undefined;
    }

    if (apdu.ins === 0x4c && selected !== undefined && sameAs(selected, ACA_AID) && apdu.p2 === 0) {
      const payload = this.getAcrPayload(apdu.p1, apdu.data);
      if (payload === undefined) return undefined;
      this.diverged = true;
      return this.respond(Uint8Array.from(payload), apdu.le);
    }

    if (apdu.ins === 0xc0 && this.diverged && cls.iso && cls.secureMessaging === 0) {
      return this.getResponse(apdu.le);
    }
    return undefined;
  }

  private verify(data: Uint8Array): number {
    if (data.length === 0) {
      if (this.verified) return 0x9000;
      return this.triesLeft === 0 ? 0x6983 : 0x63c0 | this.triesLeft;
    }
    this.verified = false;
    if (this.triesLeft === 0) return 0x6983;

    let end = data.length;
    while (end > 0 && data[end - 1] === 0xff) end--;
    if (Buffer.from(data.subarray(0, end)).equals(CORRECT_PIN)) {
      this.triesLeft = PIN_RETRIES;
      this.verified = true;
      return 0x9000;
    }
    this.triesLeft -= 1;
    return 0x63c0 | this.triesLeft;
  }

  /** Returns the SimpleTLV GET ACR payload where it differs by design, or undefined where libcacard's response stands. */
  private getAcrPayload(p1: number, data: Uint8Array): number[] | undefined {
    switch (p1) {
      case 0x00:
        return data.length === 0 ? [...APPLET_INFORMATION, 0xa1, 0x01, ACR_ROWS.length, ...ACR_ROWS.flatMap(acrEntry)] : undefined;
      case 0x01: {
        if (data.length !== 1) return undefined;
        const row = ACR_ROWS.find(([acrId]) => acrId === data[0]);
        return row === undefined ? undefined : [...APPLET_INFORMATION, ...acrEntry(row)];
      }
      case 0x20:
        return data.length === 0 ? ampTable() : undefined;
      case 0x21:
        return data.length === 0 ? serviceTable(this.pkiCount) : undefined;
      default:
        return undefined;
    }
  }

  private respond(data: Uint8Array, le: number): Uint8Array {
    if (data.length <= le) return Uint8Array.from([...data, 0x90, 0x00]);
    this.pending = data;
    this.pendingOffset = 0;
    return Uint8Array.of(0x61, data.length > 0xff ? 0 : data.length);
  }

  private getResponse(le: number): Uint8Array {
    const pending = this.pending;
    if (pending === undefined) return statusBytes(0x6a88);
    const remaining = pending.length - this.pendingOffset;
    const count = Math.min(remaining, le);
    const chunk = pending.subarray(this.pendingOffset, this.pendingOffset + count);
    this.pendingOffset += count;
    const left = remaining - count;
    if (left === 0) {
      this.pending = undefined;
      return Uint8Array.from([...chunk, 0x90, 0x00]);
    }
    return Uint8Array.from([...chunk, 0x61, Math.min(left, 256) & 0xff]);
  }
}
