/**
 * How a PKI applet stores its certificate in the value file: the CertInfo
 * byte (GSC-IS 2.1 §9.4, tag 71) and the certificate object (tag 70).
 *
 * libcacard 2.8 stores the DER certificate as is, with CertInfo 00. Real CAC
 * cards store it zlib-compressed with CertInfo 01. CoolKey 1.1 as Debian 12
 * ships it (coolkey 1.1.0-16) accepts only the compressed form, because on a
 * card with a CCC it passes the tag 70 bytes to zlib's uncompress() without
 * looking at CertInfo. An uncompressed certificate fails there with
 * "Corrupted compressed CAC Cert", and the token shows no objects. OpenSC
 * 0.23 reads both forms. docs/coolkey.md has the details.
 */
import { deflateSync, inflateSync } from 'node:zlib';

/** Storage form of the certificates: `none` as libcacard 2.8, `zlib` as real CAC cards. */
export type CertificateCompression = 'none' | 'zlib';

export const CERTIFICATE_COMPRESSIONS: readonly CertificateCompression[] = ['none', 'zlib'];

/** CertInfo bits 0-1: 00 = uncompressed, 01 = zlib (RFC 1950) compressed. */
export const CERT_INFO_UNCOMPRESSED = 0x00;
export const CERT_INFO_ZLIB = 0x01;
const CERT_INFO_COMPRESSION_MASK = 0x03;

/** The CertInfo value and the certificate object of a PKI applet's value file. */
export interface StoredCertificate {
  readonly certInfo: number;
  readonly certificate: Uint8Array;
}

/**
 * Encodes the DER certificate `der` in the storage form `compression`. The
 * zlib form is a complete zlib stream (header, deflate data, Adler-32),
 * which both zlib's uncompress() and inflate() accept.
 */
export function storeCertificate(der: Uint8Array, compression: CertificateCompression): StoredCertificate {
  if (compression === 'none') return { certInfo: CERT_INFO_UNCOMPRESSED, certificate: der };
  return { certInfo: CERT_INFO_ZLIB, certificate: new Uint8Array(deflateSync(der, { level: 9 })) };
}

/**
 * Returns the DER certificate of a stored certificate, as a CAC middleware
 * reads it. Throws RangeError for a CertInfo compression value other than
 * 00 or 01, and zlib's error for a corrupt stream.
 */
export function loadCertificate(stored: StoredCertificate): Uint8Array {
  const compression = stored.certInfo & CERT_INFO_COMPRESSION_MASK;
  if (compression === CERT_INFO_UNCOMPRESSED) return stored.certificate;
  if (compression === CERT_INFO_ZLIB) return new Uint8Array(inflateSync(stored.certificate));
  throw new RangeError(`CertInfo 0x${stored.certInfo.toString(16).padStart(2, '0')} names an unknown compression; expected 00 or 01`);
}

/** Parses a compression name as the command line gives it; throws RangeError for other names. */
export function parseCertificateCompression(name: string): CertificateCompression {
  const found = CERTIFICATE_COMPRESSIONS.find((candidate) => candidate === name.toLowerCase());
  if (found === undefined) {
    throw new RangeError(`invalid certificate compression "${name}": use ${CERTIFICATE_COMPRESSIONS.join(' or ')}`);
  }
  return found;
}
