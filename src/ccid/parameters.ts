/**
 * Protocol parameters (bProtocolNum and abProtocolDataStructure) as QEMU 7.2's
 * usb-ccid keeps them: GetParameters reads them, SetParameters and
 * ResetParameters write them, and IccPowerOn derives them from the ATR.
 */
import { DEFAULT_PROTOCOL_DATA } from './constants.js';

export class ProtocolParameters {
  protocol = 0;
  readonly data = Uint8Array.from(DEFAULT_PROTOCOL_DATA);

  reset(): void {
    this.protocol = 0;
    this.data.set(DEFAULT_PROTOCOL_DATA);
  }

  /**
   * Applies the protocol the ATR announces in TD1 (T=0 when there is no TD1).
   * T=0 zeroes the first 5 data bytes and T=1 all 7; the last two bytes keep
   * their old values under T=0, as in QEMU. Other protocols leave everything
   * unchanged.
   */
  applyAtr(atr: Uint8Array): void {
    const protocol = atrProtocol(atr);
    if (protocol === 0) {
      this.protocol = 0;
      this.data.fill(0, 0, 5);
    } else if (protocol === 1) {
      this.protocol = 1;
      this.data.fill(0);
    }
  }
}

/** Returns the low nibble of TD1, or 0 when the ATR has no TD1. */
export function atrProtocol(atr: Uint8Array): number {
  if (atr.length < 2) return 0;
  const t0 = atr[1]!;
  if ((t0 & 0x80) === 0) return 0;
  // TD1 follows whichever of TA1, TB1 and TC1 the high nibble of T0 announces.
  let offset = 2;
  for (const bit of [0x10, 0x20, 0x40]) if ((t0 & bit) !== 0) offset++;
  const td1 = atr[offset];
  return td1 === undefined ? 0 : td1 & 0x0f;
}
