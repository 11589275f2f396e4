/**
 * ISO/IEC 7816-4 status words (SW1 SW2, as one 16-bit number) and their
 * English meaning. Names follow the ISO 7816-4 wording; where the CAC card
 * uses a status word for one specific purpose, that purpose is noted.
 */

export const SW_SUCCESS = 0x9000;

/** 61xx: xx more response bytes are available with GET RESPONSE (00 means 256 or more). */
export const SW1_BYTES_AVAILABLE = 0x61;
/** 63Cx: counter value x, used by VERIFY as the number of tries left. */
export const SW1_WARNING_NV_CHANGED = 0x63;
/** 6Cxx: wrong Le; xx is the exact number of available bytes. */
export const SW1_WRONG_LE = 0x6c;

export const SW_WARNING_NO_INFORMATION = 0x6200;
export const SW_WARNING_DATA_CORRUPTED = 0x6281;
export const SW_WARNING_END_OF_FILE = 0x6282;
export const SW_WARNING_FILE_DEACTIVATED = 0x6283;
export const SW_WARNING_FCI_NOT_FORMATTED = 0x6284;
export const SW_WARNING_NV_CHANGED = 0x6300;
export const SW_WARNING_FILE_FILLED = 0x6381;
export const SW_EXECUTION_ERROR = 0x6400;
export const SW_EXECUTION_ERROR_NV_CHANGED = 0x6500;
export const SW_MEMORY_FAILURE = 0x6581;
export const SW_WRONG_LENGTH = 0x6700;
export const SW_CLA_FUNCTION_NOT_SUPPORTED = 0x6800;
export const SW_LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881;
export const SW_SECURE_MESSAGING_NOT_SUPPORTED = 0x6882;
export const SW_COMMAND_NOT_ALLOWED = 0x6900;
export const SW_COMMAND_INCOMPATIBLE_WITH_FILE = 0x6981;
export const SW_SECURITY_STATUS_NOT_SATISFIED = 0x6982;
export const SW_AUTHENTICATION_METHOD_BLOCKED = 0x6983;
/** 69 84: ISO "reference data not usable"; libcacard and the CAC card use it for invalid command data. */
export const SW_DATA_INVALID = 0x6984;
export const SW_CONDITIONS_NOT_SATISFIED = 0x6985;
export const SW_COMMAND_NOT_ALLOWED_NO_EF = 0x6986;
export const SW_SM_DATA_OBJECTS_MISSING = 0x6987;
export const SW_SM_DATA_OBJECTS_INCORRECT = 0x6988;
export const SW_WRONG_PARAMETERS = 0x6a00;
export const SW_WRONG_DATA = 0x6a80;
export const SW_FUNCTION_NOT_SUPPORTED = 0x6a81;
export const SW_FILE_NOT_FOUND = 0x6a82;
export const SW_RECORD_NOT_FOUND = 0x6a83;
export const SW_NOT_ENOUGH_MEMORY = 0x6a84;
export const SW_LC_INCONSISTENT_WITH_TLV = 0x6a85;
export const SW_INCORRECT_P1_P2 = 0x6a86;
export const SW_LC_INCONSISTENT_WITH_P1_P2 = 0x6a87;
export const SW_DATA_NOT_FOUND = 0x6a88;
export const SW_WRONG_PARAMETERS_P1_P2 = 0x6b00;
export const SW_INS_NOT_SUPPORTED = 0x6d00;
export const SW_CLA_NOT_SUPPORTED = 0x6e00;
export const SW_NO_PRECISE_DIAGNOSIS = 0x6f00;

/** Builds 61xx; `available` above 255 is sent as 00, as ISO 7816-4 and libcacard do. */
export function bytesAvailable(available: number): number {
  return (SW1_BYTES_AVAILABLE << 8) | (available > 0xff ? 0 : available);
}

/** Builds 63Cx with x = `triesLeft`, capped at 15 because x is one hex digit. */
export function verificationFailed(triesLeft: number): number {
  return 0x63c0 | Math.min(Math.max(triesLeft, 0), 0x0f);
}

/** Builds 6Cxx, the "wrong Le, retry with Le = xx" status word. */
export function wrongLe(exactLength: number): number {
  return (SW1_WRONG_LE << 8) | (exactLength & 0xff);
}

const FIXED_MEANINGS = new Map<number, string>([
  [SW_SUCCESS, 'success'],
  [SW_WARNING_NO_INFORMATION, 'warning, state of non-volatile memory unchanged'],
  [SW_WARNING_DATA_CORRUPTED, 'part of the returned data may be corrupted'],
  [SW_WARNING_END_OF_FILE, 'end of file or record reached before reading Le bytes'],
  [SW_WARNING_FILE_DEACTIVATED, 'selected file deactivated'],
  [SW_WARNING_FCI_NOT_FORMATTED, 'file control information not formatted according to ISO 7816-4'],
  [SW_WARNING_NV_CHANGED, 'warning, state of non-volatile memory changed'],
  [SW_WARNING_FILE_FILLED, 'file filled up by the last write'],
  [SW_EXECUTION_ERROR, 'execution error, state of non-volatile memory unchanged'],
  [SW_EXECUTION_ERROR_NV_CHANGED, 'execution error, state of non-volatile memory changed'],
  [SW_MEMORY_FAILURE, 'memory failure'],
  [SW_WRONG_LENGTH, 'wrong length'],
  [SW_CLA_FUNCTION_NOT_SUPPORTED, 'functions in CLA not supported'],
  [SW_LOGICAL_CHANNEL_NOT_SUPPORTED, 'logical channel not supported'],
  [SW_SECURE_MESSAGING_NOT_SUPPORTED, 'secure messaging not supported'],
  [SW_COMMAND_NOT_ALLOWED, 'command not allowed'],
  [SW_COMMAND_INCOMPATIBLE_WITH_FILE, 'command incompatible with file structure'],
  [SW_SECURITY_STATUS_NOT_SATISFIED, 'security status not satisfied'],
  [SW_AUTHENTICATION_METHOD_BLOCKED, 'authentication method blocked'],
  [SW_DATA_INVALID, 'reference data not usable (invalid command data)'],
  [SW_CONDITIONS_NOT_SATISFIED, 'conditions of use not satisfied'],
  [SW_COMMAND_NOT_ALLOWED_NO_EF, 'command not allowed, no current elementary file'],
  [SW_SM_DATA_OBJECTS_MISSING, 'expected secure messaging data objects missing'],
  [SW_SM_DATA_OBJECTS_INCORRECT, 'incorrect secure messaging data objects'],
  [SW_WRONG_PARAMETERS, 'wrong parameters P1-P2'],
  [SW_WRONG_DATA, 'incorrect parameters in the command data field'],
  [SW_FUNCTION_NOT_SUPPORTED, 'function not supported'],
  [SW_FILE_NOT_FOUND, 'file or application not found'],
  [SW_RECORD_NOT_FOUND, 'record not found'],
  [SW_NOT_ENOUGH_MEMORY, 'not enough memory space in the file'],
  [SW_LC_INCONSISTENT_WITH_TLV, 'Lc inconsistent with TLV structure'],
  [SW_INCORRECT_P1_P2, 'incorrect parameters P1-P2'],
  [SW_LC_INCONSISTENT_WITH_P1_P2, 'Lc inconsistent with P1-P2'],
  [SW_DATA_NOT_FOUND, 'referenced data or reference data not found'],
  [SW_WRONG_PARAMETERS_P1_P2, 'wrong parameters P1-P2'],
  [SW_INS_NOT_SUPPORTED, 'instruction code not supported or invalid'],
  [SW_CLA_NOT_SUPPORTED, 'class not supported'],
  [SW_NO_PRECISE_DIAGNOSIS, 'no precise diagnosis'],
]);

const SW1_MEANINGS = new Map<number, string>([
  [0x62, 'warning, state of non-volatile memory unchanged'],
  [0x63, 'warning, state of non-volatile memory changed'],
  [0x64, 'execution error, state of non-volatile memory unchanged'],
  [0x65, 'execution error, state of non-volatile memory changed'],
  [0x66, 'security-related issue'],
  [0x67, 'wrong length'],
  [0x68, 'functions in CLA not supported'],
  [0x69, 'command not allowed'],
  [0x6a, 'wrong parameters P1-P2'],
  [0x6b, 'wrong parameters P1-P2'],
  [0x6d, 'instruction code not supported or invalid'],
  [0x6e, 'class not supported'],
  [0x6f, 'no precise diagnosis'],
]);

function hex(value: number, digits: number): string {
  return value.toString(16).toUpperCase().padStart(digits, '0');
}

/** Formats a status word as `6A 82`. */
export function formatStatusWord(sw: number): string {
  return `${hex((sw >> 8) & 0xff, 2)} ${hex(sw & 0xff, 2)}`;
}

/**
 * Returns the English meaning of a status word, e.g. "file or application
 * not found" for 6A 82, "13 bytes available with GET RESPONSE" for 61 0D.
 */
export function describeStatusWord(sw: number): string {
  const sw1 = (sw >> 8) & 0xff;
  const sw2 = sw & 0xff;

  if (sw1 === SW1_BYTES_AVAILABLE) {
    return sw2 === 0
      ? '256 or more bytes available with GET RESPONSE'
      : `${sw2} bytes available with GET RESPONSE`;
  }
  if (sw1 === SW1_WRONG_LE) return `wrong Le, ${sw2} bytes available (resend with Le = ${sw2})`;
  if (sw1 === 0x63 && (sw2 & 0xf0) === 0xc0) {
    const tries = sw2 & 0x0f;
    return `verification failed, ${tries} ${tries === 1 ? 'try' : 'tries'} left`;
  }

  const fixed = FIXED_MEANINGS.get(sw & 0xffff);
  if (fixed !== undefined) return fixed;

  if (sw1 === 0x90) return `success with proprietary qualifier ${hex(sw2, 2)}`;
  const general = SW1_MEANINGS.get(sw1);
  if (general !== undefined) return `${general} (SW2 ${hex(sw2, 2)})`;
  return `unknown status word ${formatStatusWord(sw)}`;
}
