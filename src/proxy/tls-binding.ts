// The tls-server-end-point channel binding (RFC 5929, section 4.1) that SCRAM-SHA-256-PLUS signs:
// the hash of the server's certificate, with the hash of the certificate's own signature algorithm,
// SHA-256 where that is MD5 or SHA-1. libpq and PostgreSQL compute it the same way, and neither binds
// to a certificate whose signature algorithm names no single hash (RSASSA-PSS, Ed25519): for those
// there is no binding, and only SCRAM-SHA-256 is offered.
import crypto from 'node:crypto';

/** Signature algorithm OIDs (dotted) and the hash their end-point binding uses. */
const HASH_OF_SIGNATURE: ReadonlyMap<string, string> = new Map([
  ['1.2.840.113549.1.1.4', 'sha256'], // md5WithRSAEncryption
  ['1.2.840.113549.1.1.5', 'sha256'], // sha1WithRSAEncryption
  ['1.2.840.113549.1.1.14', 'sha224'],
  ['1.2.840.113549.1.1.11', 'sha256'],
  ['1.2.840.113549.1.1.12', 'sha384'],
  ['1.2.840.113549.1.1.13', 'sha512'],
  ['1.2.840.10045.4.1', 'sha256'], // ecdsa-with-SHA1
  ['1.2.840.10045.4.3.1', 'sha224'],
  ['1.2.840.10045.4.3.2', 'sha256'],
  ['1.2.840.10045.4.3.3', 'sha384'],
  ['1.2.840.10045.4.3.4', 'sha512'],
  ['1.2.840.10040.4.3', 'sha256'], // dsa-with-sha1
  ['2.16.840.1.101.3.4.3.1', 'sha224'], // dsa-with-sha224
  ['2.16.840.1.101.3.4.3.2', 'sha256'], // dsa-with-sha256
]);

export const TLS_SERVER_END_POINT = 'tls-server-end-point';

/** One DER element: its tag and where its content lies. */
interface Element {
  tag: number;
  start: number;
  end: number;
}

function element(der: Buffer, at: number): Element {
  if (at + 2 > der.length) throw new RangeError('truncated DER element');
  const tag = der[at]!;
  let len = der[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const bytes = len & 0x7f;
    if (bytes === 0 || bytes > 4 || start + bytes > der.length) throw new RangeError('unsupported DER length');
    len = 0;
    for (let i = 0; i < bytes; i++) len = len * 256 + der[start + i]!;
    start += bytes;
  }
  if (start + len > der.length) throw new RangeError('DER element runs past its end');
  return { tag, start, end: start + len };
}

function oidString(der: Buffer, e: Element): string {
  const parts: number[] = [];
  let value = 0;
  for (let i = e.start; i < e.end; i++) {
    value = value * 128 + (der[i]! & 0x7f);
    if (!(der[i]! & 0x80)) {
      parts.push(value);
      value = 0;
    }
  }
  const first = parts.shift() ?? 0;
  const head = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  return [...head, ...parts].join('.');
}

const SEQUENCE = 0x30;
const OID = 0x06;

/** The dotted OID of a DER certificate's signatureAlgorithm (Certificate ::= SEQUENCE { tbsCertificate,
 * signatureAlgorithm AlgorithmIdentifier, signature }). */
export function signatureAlgorithmOf(der: Buffer): string {
  const cert = element(der, 0);
  if (cert.tag !== SEQUENCE) throw new RangeError('not a DER certificate');
  const tbs = element(der, cert.start);
  const algorithm = element(der, tbs.end);
  if (algorithm.tag !== SEQUENCE) throw new RangeError('no signatureAlgorithm in the certificate');
  const oid = element(der, algorithm.start);
  if (oid.tag !== OID) throw new RangeError('signatureAlgorithm holds no OID');
  return oidString(der, oid);
}

/** The tls-server-end-point binding data for a DER certificate, or null when its signature algorithm
 * names no hash to bind with (the certificate is then served without SCRAM-SHA-256-PLUS). */
export function tlsServerEndPoint(der: Buffer): Buffer | null {
  let oid: string;
  try {
    oid = signatureAlgorithmOf(der);
  } catch {
    return null; // not a certificate this parser reads: offer no binding rather than a wrong one
  }
  const hash = HASH_OF_SIGNATURE.get(oid);
  return hash ? crypto.createHash(hash).update(der).digest() : null;
}
