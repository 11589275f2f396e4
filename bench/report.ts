/** Formats the benchmark results as a Markdown table with the machine description. */

export interface BenchRow {
  name: string;
  /** virtcard's median, in the unit of the row name; undefined when not measured. */
  virtcard: number | undefined;
  /** The reference's median; undefined when not measured. */
  reference: number | undefined;
  /** Median of the per-round ratios virtcard / reference; for times a lower ratio is better (see `target`). */
  ratio: number | undefined;
  /** Target as written on the page, e.g. "≥ 1.0×". */
  target: string;
  /** Whether the ratio meets the target; undefined when not measured. */
  met: boolean | undefined;
  /** Command or program that produced the numbers. */
  command: string;
  /** Note shown instead of numbers, or after them. */
  note?: string;
}

function formatNumber(value: number | undefined): string {
  if (value === undefined || Number.isNaN(value)) return '–';
  if (value >= 100) return Math.round(value).toLocaleString('en-US');
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(3);
}

/** Formats a ratio with two decimals, or two significant digits below 0.1 so that a small ratio does not read as 0.00×. */
function formatRatio(ratio: number | undefined): string {
  if (ratio === undefined || Number.isNaN(ratio)) return '–';
  return ratio >= 0.1 ? `${ratio.toFixed(2)}×` : `${ratio.toPrecision(2)}×`;
}

function verdict(row: BenchRow): string {
  if (row.met === undefined) return row.note ?? 'not measured';
  return row.met ? 'met' : 'missed';
}

export function buildReport(
  rows: readonly BenchRow[],
  machine: readonly string[],
  options: { rounds: number; seconds: number },
  minutes: number,
): string {
  const lines = [
    `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC by \`npm run bench\` ` +
      `(${options.rounds} interleaved rounds, ${options.seconds} s per timed loop, ${minutes.toFixed(1)} min in all).`,
    '',
    ...machine.map((line) => `- ${line}`),
    '',
    '| Measurement | virtcard | reference | ratio | target | result | command |',
    '|---|---:|---:|---:|---|---|---|',
  ];
  for (const row of rows) {
    const cells = [
      row.name,
      formatNumber(row.virtcard),
      formatNumber(row.reference),
      formatRatio(row.ratio),
      row.target,
      verdict(row),
      `\`${row.command}\``,
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  const notes = rows.filter((row) => row.note !== undefined && row.met !== undefined);
  if (notes.length > 0) {
    lines.push('');
    for (const row of notes) lines.push(`- ${row.name}: ${row.note}`);
  }
  return lines.join('\n');
}
