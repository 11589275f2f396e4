/**
 * Parser of the APDU conformance transcripts recorded from libcacard's CAC
 * card: `[case NAME]` blocks with an `ATR:` line and `C:` commands, each
 * followed by exactly one `R:` (exact response), `K:` (key-dependent:
 * length, sha256 and SW), `M:` (response with masked bytes and sha256) or
 * `E:` (the PC/SC call failed) line.
 */

export type ExpectedResponse =
  | { readonly kind: 'exact'; readonly bytes: Uint8Array }
  | { readonly kind: 'key-dependent'; readonly length: number; readonly sha256: string; readonly sw: number }
  | {
      readonly kind: 'masked';
      /** Response bytes with masked positions as undefined, status word included. */
      readonly bytes: readonly (number | undefined)[];
      readonly sha256: string;
    }
  | { readonly kind: 'transport-error'; readonly error: string };

export interface Exchange {
  /** Command bytes; empty for the zero-length APDU. */
  readonly command: Uint8Array;
  readonly expected: ExpectedResponse;
  /** Line number of the `C:` line, for failure messages. */
  readonly line: number;
}

export interface TranscriptCase {
  readonly name: string;
  readonly atr: Uint8Array | undefined;
  readonly exchanges: readonly Exchange[];
}

function parseHex(text: string, line: number): Uint8Array {
  const compact = text.replace(/\s+/g, '');
  if (!/^([0-9a-fA-F]{2})*$/.test(compact)) throw new Error(`line ${line}: invalid hex "${text}"`);
  return Uint8Array.from(Buffer.from(compact, 'hex'));
}

function parseExpected(kind: string, rest: string, line: number): ExpectedResponse {
  switch (kind) {
    case 'R':
      return { kind: 'exact', bytes: parseHex(rest, line) };
    case 'K': {
      const match = /^len=(\d+) sha256=([0-9a-f]{64}) sw=([0-9A-F]{2}) ([0-9A-F]{2})$/.exec(rest);
      if (match === null) throw new Error(`line ${line}: invalid K: line "${rest}"`);
      return {
        kind: 'key-dependent',
        length: Number(match[1]),
        sha256: match[2]!,
        sw: (parseInt(match[3]!, 16) << 8) | parseInt(match[4]!, 16),
      };
    }
    case 'M': {
      const match = /^(.*) sha256=([0-9a-f]{64})$/.exec(rest);
      if (match === null) throw new Error(`line ${line}: invalid M: line "${rest}"`);
      const bytes = match[1]!
        .trim()
        .split(/\s+/)
        .map((token) => (token === '??' ? undefined : parseInt(token, 16)));
      return { kind: 'masked', bytes, sha256: match[2]! };
    }
    case 'E':
      return { kind: 'transport-error', error: rest };
    default:
      throw new Error(`line ${line}: unknown response line kind "${kind}"`);
  }
}

/** Parses one transcript file. Throws an Error naming the line for malformed input. */
export function parseTranscript(text: string): TranscriptCase[] {
  const cases: { name: string; atr: Uint8Array | undefined; exchanges: Exchange[] }[] = [];
  let current: (typeof cases)[number] | undefined;
  let pending: { command: Uint8Array; line: number } | undefined;

  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const lineNumber = index + 1;
    const line = lines[index]!.trimEnd();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;

    const header = /^\[case (.+)\]$/.exec(line);
    if (header !== null) {
      current = { name: header[1]!, atr: undefined, exchanges: [] };
      cases.push(current);
      continue;
    }
    if (current === undefined) throw new Error(`line ${lineNumber}: content before the first [case] header`);

    const match = /^([A-Z]+): ?(.*)$/.exec(line);
    if (match === null) throw new Error(`line ${lineNumber}: unrecognised line "${line}"`);
    const [, kind, rest] = match as unknown as [string, string, string];

    if (kind === 'ATR') {
      current.atr = parseHex(rest, lineNumber);
    } else if (kind === 'C') {
      if (pending !== undefined) throw new Error(`line ${lineNumber}: command without a response line before it`);
      pending = { command: rest === '(empty)' ? new Uint8Array(0) : parseHex(rest, lineNumber), line: lineNumber };
    } else {
      if (pending === undefined) throw new Error(`line ${lineNumber}: response line without a command`);
      current.exchanges.push({ ...pending, expected: parseExpected(kind, rest, lineNumber) });
      pending = undefined;
    }
  }
  if (pending !== undefined) throw new Error(`line ${pending.line}: last command has no response line`);
  return cases;
}
