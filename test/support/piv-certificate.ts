/**
 * Builds a self-signed X.509 certificate whose signature a card computes:
 * `buildTbsCertificate` encodes the to-be-signed part for a public key, the
 * card signs its DER bytes (with yubico-piv-tool --sign, for example), and
 * `assembleCertificate` adds the signature.
 */
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Certificate, Name, SubjectPublicKeyInfo, TBSCertificate, Validity, Version } from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';

/** Signature algorithm of the certificate: RSA PKCS#1 v1.5 or ECDSA, both with SHA-256. */
export type CertificateSignature = 'sha256WithRSAEncryption' | 'ecdsaWithSHA256';

function signatureAlgorithm(kind: CertificateSignature): AlgorithmIdentifier {
  return kind === 'sha256WithRSAEncryption'
    ? new AlgorithmIdentifier({ algorithm: '1.2.840.113549.1.1.11', parameters: Uint8Array.of(0x05, 0x00).buffer })
    : new AlgorithmIdentifier({ algorithm: '1.2.840.10045.4.3.2' });
}

/** Encodes the TBSCertificate of a certificate for `subject` (e.g. "CN=piv-auth"), valid for a year from now. */
export function buildTbsCertificate(publicKeyPem: string, subject: string, kind: CertificateSignature): Uint8Array {
  const spki = AsnConvert.parse(x509.PemConverter.decodeFirst(publicKeyPem), SubjectPublicKeyInfo);
  const name = AsnConvert.parse(new x509.Name(subject).toArrayBuffer(), Name);
  const serial = randomBytes(8);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const now = new Date();
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: serial.buffer.slice(serial.byteOffset, serial.byteOffset + serial.length),
    signature: signatureAlgorithm(kind),
    issuer: name,
    validity: new Validity({
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + 365 * 86_400_000),
    }),
    subject: name,
    subjectPublicKeyInfo: spki,
  });
  return new Uint8Array(AsnConvert.serialize(tbs));
}

/** Returns the PEM certificate made of the DER `tbs` and the card's `signature` over it. */
export function assembleCertificate(tbs: Uint8Array, signature: Uint8Array, kind: CertificateSignature): string {
  const certificate = new Certificate({
    tbsCertificate: AsnConvert.parse(tbs, TBSCertificate),
    signatureAlgorithm: signatureAlgorithm(kind),
    signatureValue: signature.buffer.slice(signature.byteOffset, signature.byteOffset + signature.length) as ArrayBuffer,
  });
  return x509.PemConverter.encode(AsnConvert.serialize(certificate), 'CERTIFICATE');
}
