/**
 * Answer-to-Reset (ATR) builder and parser, ISO/IEC 7816-3 clause 8.2.
 *
 * Layout: TS, T0, then interface bytes group by group (TAi TBi TCi TDi, each
 * present when the matching bit of the previous Y nibble is set), then the
 * K historical bytes (K = low nibble of T0), then TCK. TCK is present unless
 * only T=0 is indicated, and makes the XOR of T0..TCK zero.
 */

/** Maximum ATR length allowed by ISO/IEC 7816-3 (TS plus 32 bytes). */
export const MAX_ATR_LENGTH = 33;

/** One group of interface bytes: TAi, TBi, TCi and the protocol its TDi names. */
export interface InterfaceGroup {
  ta?: number;
  tb?: number;
  tc?: number;
  /** Protocol T announced by TDi; absent when the group has no TDi. */
  protocol?: number;
}

/** The fields of an ATR. */
export interface AtrFields {
  /** TS: 0x3B for direct convention, 0x3F for inverse convention. */
  ts: 0x3b | 0x3f;
  /** Interface byte groups 1, 2, ...; group i+1 exists only if group i has a protocol (TDi). */
  groups: InterfaceGroup[];
  /** Historical bytes, at most 15. */
  historical: Uint8Array;
}

/** A parsed ATR: its fields, the protocols it offers and its TCK if present. */
export interface ParsedAtr extends AtrFields {
  /** Protocols offered, in TD order; [0] when no TD byte is present (T=0 implied). */
  protocols: number[];
  /** The check byte, when the ATR has one. */
  tck?: number;
}

/** Raised or returned when bytes are not a well-formed ATR. */
export class AtrFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AtrFormatError';
  }
}

export type AtrParseResult = { ok: true; atr: ParsedAtr } | { ok: false; error: AtrFormatError };

function hex(byte: number): string {
  return byte.toString(16).toUpperCase().padStart(2, '0');
}

/** Returns whether the ATR needs a TCK, which is when any TD byte indicates a protocol other than T=0. */
function needsTck(groups: readonly InterfaceGroup[]): boolean {
  return groups.some((group) => group.protocol !== undefined && group.protocol !== 0);
}

/** Encodes ATR fields, computing T0, every TDi and TCK. Throws `AtrFormatError` on impossible fields. */
export function buildAtr(fields: AtrFields): Uint8Array {
  if (fields.historical.length > 15) {
    throw new AtrFormatError(`an ATR holds at most 15 historical bytes, got ${fields.historical.length}`);
  }

  const bytes: number[] = [fields.ts];
  const presence = (group: InterfaceGroup | undefined): number => {
    if (group === undefined) return 0;
    return (
      (group.ta !== undefined ? 0x1 : 0) |
      (group.tb !== undefined ? 0x2 : 0) |
      (group.tc !== undefined ? 0x4 : 0) |
      (group.protocol !== undefined ? 0x8 : 0)
    );
  };

  // T0 carries Y1 (presence of group 1) and K.
  bytes.push((presence(fields.groups[0]) << 4) | fields.historical.length);

  fields.groups.forEach((group, index) => {
    const isLast = index === fields.groups.length - 1;
    if (group.protocol === undefined && !isLast) {
      throw new AtrFormatError(`interface group ${index + 1} has no protocol (TD byte) but more groups follow`);
    }
    for (const value of [group.ta, group.tb, group.tc]) {
      if (value !== undefined) bytes.push(value & 0xff);
    }
    if (group.protocol !== undefined) {
      if (group.protocol < 0 || group.protocol > 15) {
        throw new AtrFormatError(`protocol T=${group.protocol} does not fit in a TD byte (0 to 15)`);
      }
      bytes.push((presence(fields.groups[index + 1]) << 4) | group.protocol);
    }
  });

  bytes.push(...fields.historical);

  if (needsTck(fields.groups)) {
    let tck = 0;
    for (const byte of bytes.slice(1)) tck ^= byte;
    bytes.push(tck);
  }

  if (bytes.length > MAX_ATR_LENGTH) {
    throw new AtrFormatError(`the ATR would be ${bytes.length} bytes long; ISO/IEC 7816-3 allows ${MAX_ATR_LENGTH}`);
  }
  return Uint8Array.from(bytes);
}

/**
 * Parses and checks an ATR: TS value, the TD chain, the historical byte
 * count, the presence and value of TCK, and that no byte is left over.
 */
export function parseAtr(bytes: Uint8Array): AtrParseResult {
  const fail = (message: string): AtrParseResult => ({ ok: false, error: new AtrFormatError(message) });

  if (bytes.length < 2) return fail(`an ATR needs at least TS and T0, got ${bytes.length} byte(s)`);
  if (bytes.length > MAX_ATR_LENGTH) {
    return fail(`the ATR is ${bytes.length} bytes long; ISO/IEC 7816-3 allows ${MAX_ATR_LENGTH}`);
  }

  const ts = bytes[0]!;
  if (ts !== 0x3b && ts !== 0x3f) return fail(`TS must be 3B (direct) or 3F (inverse), got ${hex(ts)}`);

  const t0 = bytes[1]!;
  const historicalLength = t0 & 0x0f;
  const groups: InterfaceGroup[] = [];
  let y = t0 >> 4;
  let offset = 2;

  // Walk the TD chain: the bits of each Y nibble mark which of TA, TB, TC, TD follow.
  while (true) {
    const group: InterfaceGroup = {};
    const names = ['ta', 'tb', 'tc'] as const;
    for (let bit = 0; bit < 3; bit++) {
      if ((y & (1 << bit)) === 0) continue;
      if (offset >= bytes.length) return fail(`the ATR ends inside interface group ${groups.length + 1}`);
      group[names[bit]!] = bytes[offset++]!;
    }
    const hasTd = (y & 0x8) !== 0;
    if (hasTd) {
      if (offset >= bytes.length) return fail(`the ATR ends before TD${groups.length + 1}`);
      const td = bytes[offset++]!;
      group.protocol = td & 0x0f;
      y = td >> 4;
    }
    if (y !== 0 || hasTd || group.ta !== undefined || group.tb !== undefined || group.tc !== undefined) {
      groups.push(group);
    }
    if (!hasTd) break;
  }

  if (offset + historicalLength > bytes.length) {
    return fail(`T0 announces ${historicalLength} historical bytes but only ${bytes.length - offset} follow the interface bytes`);
  }
  const historical = bytes.slice(offset, offset + historicalLength);
  offset += historicalLength;

  const offered = groups.filter((group) => group.protocol !== undefined).map((group) => group.protocol!);
  const protocols = offered.length > 0 ? offered : [0];
  const atr: ParsedAtr = { ts, groups, historical, protocols };

  if (needsTck(groups)) {
    if (offset >= bytes.length) return fail('the ATR offers a protocol other than T=0 but has no TCK byte');
    atr.tck = bytes[offset++]!;
    let check = 0;
    for (let index = 1; index < offset; index++) check ^= bytes[index]!;
    if (check !== 0) return fail(`TCK ${hex(atr.tck)} is wrong: T0..TCK must XOR to 00, got ${hex(check)}`);
  }

  if (offset !== bytes.length) {
    return fail(`${bytes.length - offset} byte(s) follow the end of the ATR; check the historical byte count in T0`);
  }
  return { ok: true, atr };
}
