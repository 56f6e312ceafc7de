// SCRAM-SHA-256 both ways: the proxy's client against its own server side (the admin console's), and
// the server side against what a wrong password, a changed nonce or a channel binding that does not
// agree with the mechanism look like. SCRAM-SHA-256-PLUS end to end, with libpq and pg as clients, is
// in admin.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MessageReader, parseSaslInitialResponse, parseSaslResponse, ProtocolError } from '../../src/proxy/protocol.js';
import { ScramClient, scramMechanisms, scramServerFinal, scramServerFirst, scramVerifier } from '../../src/proxy/scram.js';

/** The payload of the client's next 'p' message. */
function frame(b: Buffer) {
  const r = new MessageReader();
  r.push(b);
  return r.next()!.frame;
}

function exchange(clientPassword: string, serverPassword: string) {
  const client = new ScramClient(clientPassword);
  const { mechanism, data } = parseSaslInitialResponse(frame(client.initial()));
  assert.equal(mechanism, 'SCRAM-SHA-256');
  const x = scramServerFirst(mechanism, data, scramVerifier(serverPassword), null);
  const clientFinal = parseSaslResponse(frame(client.respond(x.serverFirst)));
  return { client, x, clientFinal, serverFinal: scramServerFinal(x, clientFinal) };
}

it('a client with the password is let in, and checks that the server knew it too', () => {
  const { client, serverFinal } = exchange('pässwörd', 'pässwörd');
  assert.ok(serverFinal?.startsWith('v='));
  client.verify(serverFinal!); // throws on a mismatch
});

it('a wrong password is refused, and a server without the password cannot pass as one that has it', () => {
  const { client, x, clientFinal, serverFinal } = exchange('right', 'wrong');
  assert.equal(serverFinal, null);
  assert.throws(() => client.verify('v=' + Buffer.alloc(32).toString('base64')), /SCRAM server signature mismatch/);
});

it('a changed nonce, a changed binding and malformed messages are protocol errors', () => {
  const { x, clientFinal } = exchange('p', 'p');
  assert.throws(() => scramServerFinal(x, clientFinal.replace(/r=[^,]+/, 'r=other')), /nonce does not match/);
  assert.throws(() => scramServerFinal(x, clientFinal.replace('c=biws', 'c=eSws')), /channel binding check failed/);
  assert.throws(() => scramServerFinal(x, 'nonsense'), /malformed SCRAM client-final-message/);
  const v = scramVerifier('p');
  assert.throws(() => scramServerFirst('SCRAM-SHA-256', 'n,a=admin,n=,r=abc', v, null), /authorization identities/);
  assert.throws(() => scramServerFirst('SCRAM-SHA-256', 'hello', v, null), /malformed SCRAM client-first-message/);
  assert.throws(() => scramServerFirst('SCRAM-SHA-1', 'n,,n=,r=abc', v, null), (e: unknown) => e instanceof ProtocolError && e.code === '28000' && /SCRAM-SHA-1 is not offered; SCRAM-SHA-256 is$/.test(e.message));
});

describe('channel binding (SCRAM-SHA-256-PLUS)', () => {
  const v = scramVerifier('p');
  const binding = Buffer.alloc(32, 7); // what a TLS connection's certificate hash would be
  const refused = (mechanism: string, clientFirst: string, b: Buffer | null, code: string, pattern: RegExp) =>
    assert.throws(() => scramServerFirst(mechanism, clientFirst, v, b), (e: unknown) => e instanceof ProtocolError && e.code === code && pattern.test(e.message));

  it('-PLUS is offered first, and only with binding data (over TLS)', () => {
    assert.deepEqual(scramMechanisms(binding), ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']);
    assert.deepEqual(scramMechanisms(null), ['SCRAM-SHA-256']);
  });

  it('the client-final-message must carry the GS2 header and this connection\'s binding data', () => {
    const x = scramServerFirst('SCRAM-SHA-256-PLUS', 'p=tls-server-end-point,,n=,r=abc', v, binding);
    const final = (c: Buffer) => `c=${c.toString('base64')},r=${x.nonce},p=${Buffer.alloc(32).toString('base64')}`;
    const header = Buffer.from('p=tls-server-end-point,,');
    // The right binding gets as far as the proof (a wrong proof: null, refused as a wrong password).
    assert.equal(scramServerFinal(x, final(Buffer.concat([header, binding]))), null);
    assert.throws(() => scramServerFinal(x, final(Buffer.concat([header, Buffer.alloc(32, 8)]))), /binding data does not match this connection/);
    assert.throws(() => scramServerFinal(x, final(header)), /channel binding check failed/);
  });

  it('the GS2 flag must agree with the mechanism, and a downgrade is refused', () => {
    refused('SCRAM-SHA-256-PLUS', 'n,,n=,r=abc', binding, '08P01', /selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data/);
    refused('SCRAM-SHA-256-PLUS', 'y,,n=,r=abc', binding, '08P01', /does not include channel binding data/);
    refused('SCRAM-SHA-256', 'p=tls-server-end-point,,n=,r=abc', binding, '08P01', /without channel binding, but the SCRAM message includes channel binding data/);
    refused('SCRAM-SHA-256-PLUS', 'p=tls-unique,,n=,r=abc', binding, '08P01', /unsupported SCRAM channel-binding type "tls-unique"/);
    refused('SCRAM-SHA-256-PLUS', 'p=tls-server-end-point,,n=,r=abc', null, '28000', /offered only over TLS/);
    // "y": the client could bind but believes the server cannot. Over TLS, where the server can, -PLUS
    // was removed from the offer on the way: refused. In cleartext it is what a TLS-capable client says.
    refused('SCRAM-SHA-256', 'y,,n=,r=abc', binding, '08P01', /negotiation error/);
    assert.doesNotThrow(() => scramServerFirst('SCRAM-SHA-256', 'y,,n=,r=abc', v, null));
    assert.doesNotThrow(() => scramServerFirst('SCRAM-SHA-256', 'n,,n=,r=abc', v, binding));
  });
});
