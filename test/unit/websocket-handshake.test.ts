// The HTTP side of WebSocket for the native engine: request heads, the accept key, and refusals.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  answerUpgrade,
  MAX_REQUEST_HEAD,
  parseRequestHead,
  wantsUpgrade,
} from '../../src/protocol/websocket-handshake.js';

const UPGRADE =
  'GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n';

function head(text: string) {
  const result = parseRequestHead(Buffer.from(text));
  assert.equal(result.status, 'complete');
  return result.status === 'complete' ? result.head : assert.fail();
}

describe('WebSocket handshake', () => {
  it("answers RFC 6455's own example with its accept key and the first subprotocol", () => {
    const answer = answerUpgrade(head(UPGRADE));
    assert.ok(answer.ok);
    const text = answer.response.toString();
    assert.match(text, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(text, /\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/);
    assert.match(text, /\r\nSec-WebSocket-Protocol: chat\r\n\r\n$/);
  });

  it('waits for the rest of a head, and says where it ends', () => {
    assert.deepEqual(parseRequestHead(Buffer.from(UPGRADE.slice(0, 40))), { status: 'incomplete' });
    const result = parseRequestHead(Buffer.from(`${UPGRADE}\x81\x80`));
    assert.equal(result.status === 'complete' && result.length, UPGRADE.length);
  });

  it('refuses what ws refuses: no key, a bad key, another version, not a GET', () => {
    const without = (name: string) => UPGRADE.replace(new RegExp(`${name}: [^\\r]*\\r\\n`), '');
    for (const [request, reason] of [
      [without('Sec-WebSocket-Key'), /Sec-WebSocket-Key/],
      [UPGRADE.replace('dGhlIHNhbXBsZSBub25jZQ==', 'short=='), /Sec-WebSocket-Key/],
      [UPGRADE.replace('Version: 13', 'Version: 12'), /Sec-WebSocket-Version/],
      [UPGRADE.replace('GET', 'POST'), /GET/],
    ] as const) {
      const answer = answerUpgrade(head(request));
      assert.equal(answer.ok, false);
      assert.match(answer.response.toString(), /^HTTP\/1\.1 400 Bad Request\r\n/);
      assert.match(answer.ok ? '' : answer.reason, reason);
    }
  });

  it('tells a page request from an upgrade, and refuses a head too long or malformed', () => {
    assert.equal(wantsUpgrade(head('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), false);
    assert.equal(wantsUpgrade(head(UPGRADE)), true);
    assert.equal(parseRequestHead(Buffer.from('GET / HTTP/1.1\r\nno colon\r\n\r\n')).status, 'invalid');
    assert.equal(parseRequestHead(Buffer.from('HELLO\r\n\r\n')).status, 'invalid');
    assert.equal(parseRequestHead(Buffer.alloc(MAX_REQUEST_HEAD + 1, 'a')).status, 'invalid');
  });
});
