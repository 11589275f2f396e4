/** Command APDUs and card contents shared by the benchmark loops; libcacard-driver.c sends the same bytes. */

/** Certificate nicknames of the benchmark NSS database, one PKI applet each. */
export const BENCH_NICKNAMES = ['id-cert', 'signing-cert', 'encryption-cert'];

/** SELECT of the first PKI applet (A0 00 00 00 79 01 00) with Le = 00: returns the FCI and 90 00. */
export const SELECT_PKI_APDU = Uint8Array.of(0x00, 0xa4, 0x04, 0x00, 0x07, 0xa0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00, 0x00);

/** READ BUFFER of the value file: 240 bytes from offset 2 with Le = 240, as OpenSC reads certificates. */
export const READ_BUFFER_APDU = Uint8Array.of(0x80, 0x52, 0x00, 0x02, 0x02, 0x02, 0xf0, 0xf0);

/** Hex form for pcsc-loop. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}
