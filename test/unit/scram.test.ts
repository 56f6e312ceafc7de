// SCRAM-SHA-256 both ways: the proxy's client against its own server side (the admin console's), and
// the server side against what a wrong password, a changed nonce or channel binding look like.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { MessageReader, parseSaslInitialResponse, parseSaslResponse, ProtocolError } from '../../src/proxy/protocol.js';
import { ScramClient, scramServerFinal, scramServerFirst, scramVerifier } from '../../src/proxy/scram.js';

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
  const x = scramServerFirst(data, scramVerifier(serverPassword));
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

it('a changed nonce, a changed binding, channel binding and malformed messages are protocol errors', () => {
  const { x, clientFinal } = exchange('p', 'p');
  assert.throws(() => scramServerFinal(x, clientFinal.replace(/r=[^,]+/, 'r=other')), /nonce does not match/);
  assert.throws(() => scramServerFinal(x, clientFinal.replace('c=biws', 'c=eSws')), /channel binding does not match/);
  assert.throws(() => scramServerFinal(x, 'nonsense'), /malformed SCRAM client-final-message/);
  const v = scramVerifier('p');
  assert.throws(() => scramServerFirst('p=tls-server-end-point,,n=,r=abc', v), (e: unknown) => e instanceof ProtocolError && e.code === '28000' && /channel binding is not offered/.test(e.message));
  assert.throws(() => scramServerFirst('n,a=admin,n=,r=abc', v), /authorization identities/);
  assert.throws(() => scramServerFirst('hello', v), /malformed SCRAM client-first-message/);
});
