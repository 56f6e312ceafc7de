// tls-server-end-point binding data against OpenSSL's own reading of the same certificates: the
// signature algorithm from `openssl x509 -text`, the hash from `openssl x509 -fingerprint`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { signatureAlgorithmOf, tlsServerEndPoint } from '../../src/proxy/tls-binding.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-tls-binding-'));

/** A self-signed certificate from openssl req, as DER. */
function certificate(name: string, keyArgs: string[], digest: string[] = []): Buffer {
  const pem = path.join(dir, `${name}.pem`);
  execFileSync('openssl', ['req', '-x509', ...keyArgs, ...digest, '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', path.join(dir, `${name}.key`), '-out', pem], { stdio: 'ignore' });
  return new crypto.X509Certificate(fs.readFileSync(pem)).raw;
}

function opensslFingerprint(der: Buffer, hash: string): Buffer {
  const out = execFileSync('openssl', ['x509', '-inform', 'DER', '-noout', '-fingerprint', `-${hash}`], { input: der }).toString();
  return Buffer.from(out.trim().split('=')[1]!.replaceAll(':', ''), 'hex');
}

describe('tls-server-end-point', () => {
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const cases = [
    { name: 'rsa-sha256', key: ['-newkey', 'rsa:2048'], digest: ['-sha256'], oid: '1.2.840.113549.1.1.11', hash: 'sha256' },
    { name: 'rsa-sha384', key: ['-newkey', 'rsa:2048'], digest: ['-sha384'], oid: '1.2.840.113549.1.1.12', hash: 'sha384' },
    { name: 'rsa-sha1', key: ['-newkey', 'rsa:2048'], digest: ['-sha1'], oid: '1.2.840.113549.1.1.5', hash: 'sha256' }, // SHA-1 binds with SHA-256
    { name: 'ec-sha512', key: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], digest: ['-sha512'], oid: '1.2.840.10045.4.3.4', hash: 'sha512' },
  ];
  for (const c of cases) {
    it(`${c.name}: bound with ${c.hash}, as OpenSSL computes it`, () => {
      const der = certificate(c.name, c.key, c.digest);
      assert.equal(signatureAlgorithmOf(der), c.oid);
      assert.deepEqual(tlsServerEndPoint(der), opensslFingerprint(der, c.hash));
    });
  }

  it('no binding for signatures that name no single hash (Ed25519, RSASSA-PSS)', () => {
    assert.equal(signatureAlgorithmOf(certificate('ed25519', ['-newkey', 'ed25519'])), '1.3.101.112');
    assert.equal(tlsServerEndPoint(certificate('ed25519b', ['-newkey', 'ed25519'])), null);
    const pss = certificate('pss', ['-newkey', 'rsa-pss', '-pkeyopt', 'rsa_keygen_bits:2048'], ['-sha256']);
    assert.equal(signatureAlgorithmOf(pss), '1.2.840.113549.1.1.10');
    assert.equal(tlsServerEndPoint(pss), null);
  });

  it('bytes that are not a certificate give no binding, and a clear error where asked for', () => {
    const der = certificate('cut', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], ['-sha256']);
    for (const bad of [Buffer.alloc(0), Buffer.from([0x30]), der.subarray(0, 40), Buffer.from('not a certificate'), Buffer.from([0x30, 0x85, 1, 2, 3, 4, 5])]) {
      assert.equal(tlsServerEndPoint(bad), null);
      assert.throws(() => signatureAlgorithmOf(bad), RangeError);
    }
  });
});
