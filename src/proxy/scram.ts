// SCRAM-SHA-256 (RFC 5802, RFC 7677). The client (ScramClient) logs the proxy in to a server when it
// moves a session, without channel binding (that leg is not TLS). The server side (scramServerFirst,
// scramServerFinal) lets the admin console check a password that never crosses the network, and over
// TLS offers SCRAM-SHA-256-PLUS with tls-server-end-point binding (tls-binding.ts), so that a client
// with channel_binding=require knows no one in the middle terminated its TLS. Both sides derive their
// keys in scramKeys.
import crypto from 'node:crypto';
import { ProtocolError } from './protocol.js';
import { encodeMessage as message } from './protocol-encode.js';
import { TLS_SERVER_END_POINT } from './tls-binding.js';

export const SCRAM_MECHANISM = 'SCRAM-SHA-256';
export const SCRAM_PLUS_MECHANISM = 'SCRAM-SHA-256-PLUS';
const ITERATIONS = 4096;

const hmac = (key: Buffer, data: string): Buffer => crypto.createHmac('sha256', key).update(data).digest();
const sha256 = (data: Buffer): Buffer => crypto.createHash('sha256').update(data).digest();
const xor = (a: Buffer, b: Buffer): Buffer => Buffer.from(a.map((x, i) => x ^ b[i]!));

/** The keys both sides derive from the password (RFC 5802, section 3). */
function scramKeys(password: string, salt: Buffer, iterations: number): { clientKey: Buffer; storedKey: Buffer; serverKey: Buffer } {
  const salted = crypto.pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = hmac(salted, 'Client Key');
  return { clientKey, storedKey: sha256(clientKey), serverKey: hmac(salted, 'Server Key') };
}

/** The client side, as a PostgreSQL client speaks it: SASLInitialResponse, SASLResponse, then the check. */
export class ScramClient {
  private readonly nonce = crypto.randomBytes(18).toString('base64');
  private readonly clientFirstBare = `n=*,r=${this.nonce}`;
  private serverSignature: Buffer | null = null;

  constructor(private readonly password: string) {}

  initial(): Buffer {
    const data = Buffer.from(`n,,${this.clientFirstBare}`);
    const len = Buffer.alloc(4);
    len.writeInt32BE(data.length);
    return message('p', Buffer.concat([Buffer.from(`${SCRAM_MECHANISM}\0`), len, data]));
  }

  respond(serverFirst: string): Buffer {
    const attrs = new Map(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)] as const));
    const nonce = attrs.get('r');
    const salt = attrs.get('s');
    const iterations = Number(attrs.get('i'));
    if (!nonce?.startsWith(this.nonce) || !salt || !Number.isInteger(iterations) || iterations < 1) {
      throw new ProtocolError('server sent an invalid SCRAM challenge');
    }
    const keys = scramKeys(this.password, Buffer.from(salt, 'base64'), iterations);
    const finalWithoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${finalWithoutProof}`;
    const proof = xor(keys.clientKey, hmac(keys.storedKey, authMessage));
    this.serverSignature = hmac(keys.serverKey, authMessage);
    return message('p', Buffer.from(`${finalWithoutProof},p=${proof.toString('base64')}`));
  }

  verify(serverFinal: string): void {
    const v = serverFinal.split(',').find((a) => a.startsWith('v='))?.slice(2);
    if (!v || !this.serverSignature || !crypto.timingSafeEqual(Buffer.from(v, 'base64'), this.serverSignature)) {
      throw new ProtocolError('the server could not prove it knows the password (SCRAM server signature mismatch)');
    }
  }
}

/** What a server keeps of a password, as PostgreSQL keeps it in pg_authid: derived once, so that a
 * login costs a few HMACs and not the 4096 rounds of PBKDF2 a client could make it repeat. */
export interface ScramVerifier {
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

export function scramVerifier(password: string, salt = crypto.randomBytes(16)): ScramVerifier {
  const { storedKey, serverKey } = scramKeys(password, salt, ITERATIONS);
  return { salt, storedKey, serverKey };
}

/** What the server keeps between its first message and the client's final one. */
export interface ScramExchange {
  clientFirstBare: string;
  serverFirst: string;
  /** What the client-final-message's c= must hold, base64: the GS2 header, then the binding data when bound. */
  expectedBinding: string;
  nonce: string;
  verifier: ScramVerifier;
}

/** The mechanisms a server offers: -PLUS first when it has channel binding data (over TLS). */
export function scramMechanisms(binding: Buffer | null): string[] {
  return binding ? [SCRAM_PLUS_MECHANISM, SCRAM_MECHANISM] : [SCRAM_MECHANISM];
}

/**
 * Answers a client-first-message ("n,,n=user,r=nonce", or "p=tls-server-end-point,,..." for -PLUS):
 * the server-first-message to send. binding is the tls-server-end-point data of the connection, null
 * when it is not TLS. The checks are PostgreSQL's: the GS2 flag must agree with the mechanism chosen,
 * and a client that says it could bind but thinks the server cannot ("y") while the server can is
 * refused, since a man in the middle may have removed -PLUS from the offer (RFC 5802, section 6).
 */
export function scramServerFirst(
  mechanism: string,
  clientFirst: string,
  verifier: ScramVerifier,
  binding: Buffer | null,
  serverNonce = crypto.randomBytes(18).toString('base64'),
): ScramExchange {
  const plus = mechanism === SCRAM_PLUS_MECHANISM;
  if (!plus && mechanism !== SCRAM_MECHANISM) {
    throw new ProtocolError(`SASL mechanism ${mechanism} is not offered; ${scramMechanisms(binding).join(' and ')} ${binding ? 'are' : 'is'}`, '28000');
  }
  if (plus && !binding) throw new ProtocolError('SCRAM channel binding is offered only over TLS: connect with sslmode=require, or channel_binding=disable', '28000');
  const m = /^(n|y|p=([^,]*)),(a=[^,]*)?,(n=[^,]*,r=([^,]+)(?:,.*)?)$/.exec(clientFirst);
  if (!m) throw new ProtocolError('malformed SCRAM client-first-message', '08P01');
  const flag = m[1]!;
  if (flag.startsWith('p=')) {
    if (!plus) throw new ProtocolError('the client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data', '08P01');
    if (m[2] !== TLS_SERVER_END_POINT) throw new ProtocolError(`unsupported SCRAM channel-binding type "${m[2]}": only ${TLS_SERVER_END_POINT} is`, '08P01');
  } else if (plus) {
    throw new ProtocolError('the client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data', '08P01');
  } else if (flag === 'y' && binding) {
    throw new ProtocolError('SCRAM channel binding negotiation error: the client supports channel binding but thinks the server does not, and this server does', '08P01');
  }
  if (m[3]) throw new ProtocolError('SCRAM authorization identities are not supported', '28000');
  const gs2Header = Buffer.from(`${flag},,`);
  const expectedBinding = (plus ? Buffer.concat([gs2Header, binding!]) : gs2Header).toString('base64');
  const nonce = m[5]! + serverNonce;
  return { clientFirstBare: m[4]!, serverFirst: `r=${nonce},s=${verifier.salt.toString('base64')},i=${ITERATIONS}`, expectedBinding, nonce, verifier };
}

/** Checks a client-final-message ("c=...,r=...,p=proof") against the verifier: the server-final-message
 * to send when the proof holds, null when it does not. */
export function scramServerFinal(x: ScramExchange, clientFinal: string): string | null {
  const m = /^c=([^,]*),r=([^,]*)(?:,.*)?,p=([A-Za-z0-9+/=]+)$/.exec(clientFinal);
  if (!m) throw new ProtocolError('malformed SCRAM client-final-message', '08P01');
  if (m[1] !== x.expectedBinding) throw new ProtocolError('SCRAM channel binding check failed: the binding data does not match this connection', '08P01');
  if (m[2] !== x.nonce) throw new ProtocolError('SCRAM nonce does not match', '08P01');
  const proof = Buffer.from(m[3]!, 'base64');
  const authMessage = `${x.clientFirstBare},${x.serverFirst},${clientFinal.slice(0, clientFinal.lastIndexOf(',p='))}`;
  const { storedKey, serverKey } = x.verifier;
  const signature = hmac(storedKey, authMessage);
  if (proof.length !== signature.length || !crypto.timingSafeEqual(sha256(xor(proof, signature)), storedKey)) return null;
  return `v=${hmac(serverKey, authMessage).toString('base64')}`;
}
