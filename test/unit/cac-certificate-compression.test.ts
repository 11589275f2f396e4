import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { inflateSync } from 'node:zlib';

import {
  CERT_INFO_UNCOMPRESSED,
  CERT_INFO_ZLIB,
  loadCertificate,
  parseCertificateCompression,
  storeCertificate,
} from '../../src/cac/certificate-compression.js';

/** A DER-shaped stand-in: SEQUENCE header, repeated text (compressible) and random bytes (key-like). */
function sampleCertificate(): Uint8Array {
  const body = Buffer.concat([Buffer.from('CN=John Doe, O=Test, C=US; '.repeat(12)), randomBytes(256)]);
  return Uint8Array.from([0x30, 0x82, (body.length >> 8) & 0xff, body.length & 0xff, ...body]);
}

test('none keeps the DER bytes', () => {
  const der = sampleCertificate();
  const stored = storeCertificate(der, 'none');
  assert.equal(stored.certInfo, CERT_INFO_UNCOMPRESSED);
  assert.deepEqual(stored.certificate, der);
});

test('zlib stores a zlib stream', () => {
  const der = sampleCertificate();
  const stored = storeCertificate(der, 'zlib');

  assert.equal(stored.certInfo, CERT_INFO_ZLIB);
  // RFC 1950 header: CM = 8 (deflate) and a header checksum that makes CMF·256 + FLG a multiple of 31.
  const cmf = stored.certificate[0] ?? 0;
  const flg = stored.certificate[1] ?? 0;
  assert.equal(cmf & 0x0f, 8, 'compression method is deflate');
  assert.equal((cmf * 256 + flg) % 31, 0, 'header checksum is valid');
  assert.ok(stored.certificate.length < der.length, 'compressed form is shorter');
  // zlib's uncompress() (what CoolKey calls) accepts exactly what inflateSync accepts.
  assert.deepEqual(new Uint8Array(inflateSync(stored.certificate)), der);
});

test('loadCertificate reverses both forms', () => {
  const der = sampleCertificate();
  assert.deepEqual(loadCertificate(storeCertificate(der, 'none')), der);
  assert.deepEqual(loadCertificate(storeCertificate(der, 'zlib')), der);
});

test('loadCertificate rejects unknown CertInfo', () => {
  assert.throws(() => loadCertificate({ certInfo: 0x02, certificate: new Uint8Array(4) }), /CertInfo 0x02/);
});

test('loadCertificate ignores CertInfo high bits', () => {
  const der = sampleCertificate();
  const stored = storeCertificate(der, 'zlib');
  assert.deepEqual(loadCertificate({ certInfo: 0x05, certificate: stored.certificate }), der);
});

test('parseCertificateCompression accepts names', () => {
  assert.equal(parseCertificateCompression('none'), 'none');
  assert.equal(parseCertificateCompression('zlib'), 'zlib');
  assert.equal(parseCertificateCompression('ZLIB'), 'zlib');
  assert.throws(() => parseCertificateCompression('gzip'), /invalid certificate compression "gzip": use none or zlib/);
});
