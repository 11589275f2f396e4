/**
 * The ATR check QEMU 7.2's ccid-card-passthru runs on every VSC_ATR before
 * it inserts the card, reproduced so that the same ATRs are accepted and
 * rejected. It is looser than ISO/IEC 7816-3: it reads at most two
 * interface byte groups and accepts trailing bytes (such as TCK).
 */

/** Longest ATR passthru accepts; a longer one gets VSC_GENERAL_ERROR. */
export const MAX_PASSTHRU_ATR_LENGTH = 40;

/** Returns undefined when passthru would accept `atr`, else the reason it would reject it. */
export function checkPassthruAtr(atr: Uint8Array): string | undefined {
  if (atr.length > MAX_PASSTHRU_ATR_LENGTH) {
    return `ATR of ${atr.length} bytes exceeds the ${MAX_PASSTHRU_ATR_LENGTH} bytes QEMU accepts`;
  }
  if (atr.length < 2) return `ATR of ${atr.length} byte(s) is shorter than TS and T0`;
  if (atr[0] !== 0x3b && atr[0] !== 0x3f) {
    return `ATR starts with ${atr[0]!.toString(16).padStart(2, '0')}, expected TS 3B or 3F`;
  }

  const historical = atr[1]! & 0x0f;
  let y = atr[1]! >> 4;
  let interfaceBytes = 0;
  let rounds = 0;
  while (y !== 0 && rounds < 2 && interfaceBytes + historical + 2 < atr.length) {
    rounds++;
    for (const bit of [0x1, 0x2, 0x4]) if ((y & bit) !== 0) interfaceBytes++;
    if ((y & 0x8) !== 0) {
      interfaceBytes++;
      // QEMU reads the next Y nibble one byte past TDi; kept so the same ATRs pass.
      y = (atr[interfaceBytes + 2] ?? 0) >> 4;
    }
  }
  if (atr.length < 2 + historical + interfaceBytes) {
    return `ATR of ${atr.length} bytes is too short for its ${interfaceBytes} interface and ${historical} historical bytes`;
  }
  return undefined;
}
