// The one place that picks an engine per listener: each row of its table, and the reasons it gives.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pickEngine, type ServingNeeds } from '../../src/server/engines/choice.js';

const NOTHING: ServingNeeds = {
  customTransform: false,
  lineMode: false,
  prefix: false,
  proxyProtocol: false,
  delay: false,
  faults: false,
  hello: false,
  perChunkLogs: false,
  wsDeflate: false,
  allowList: false,
  handedOver: false,
  clusterUdp: false,
};

describe('pickEngine', () => {
  it('serves TCP, TLS, WebSocket, wss and UDP natively when nothing else is asked', () => {
    for (const transport of ['tcp', 'tls', 'ws', 'wss', 'udp'] as const) {
      assert.deepEqual(pickEngine('native', transport, NOTHING), { engine: 'native', portableBecause: [] });
    }
  });

  it('keeps Unix sockets, and everything when portable was chosen, on the portable engine', () => {
    assert.deepEqual(pickEngine('native', 'unix', NOTHING), {
      engine: 'portable',
      portableBecause: ['the Unix socket'],
    });
    assert.deepEqual(pickEngine('portable', 'tcp', NOTHING), { engine: 'portable', portableBecause: [] });
  });

  it('sends TLS and wss to the portable engine, saying why, where OpenSSL cannot be reached from C', () => {
    const why = "this Node.js does not export OpenSSL's SSL_new";
    assert.deepEqual(pickEngine('native', 'wss', NOTHING, why), {
      engine: 'portable',
      portableBecause: [`TLS (${why})`],
    });
    assert.equal(pickEngine('native', 'ws', NOTHING, why).engine, 'native');
  });

  it('names every feature that needs JavaScript, on the transports where it does', () => {
    const all: ServingNeeds = Object.fromEntries(
      Object.keys(NOTHING).map((key) => [key, true]),
    ) as unknown as ServingNeeds;
    assert.deepEqual(pickEngine('native', 'tcp', all).portableBecause, [
      'a transform module',
      'line mode',
      '--prefix',
      'the PROXY protocol',
      '--delay',
      '--fault',
      'debug logs (a line per chunk)',
    ]);
    // Over UDP a datagram is a message, and streams' admission rules do not apply.
    assert.deepEqual(pickEngine('native', 'udp', { ...NOTHING, lineMode: true, proxyProtocol: true, hello: true }), {
      engine: 'native',
      portableBecause: [],
    });
    assert.deepEqual(pickEngine('native', 'udp', { ...NOTHING, allowList: true, clusterUdp: true }).portableBecause, [
      '--allow',
      "UDP on the cluster primary's socket",
    ]);
    assert.deepEqual(pickEngine('native', 'ws', { ...NOTHING, wsDeflate: true }).portableBecause, ['--ws-deflate']);
  });

  it('serves a cluster worker natively on every stream transport where its port is shared, and only plain TCP where connections are handed over', () => {
    const worker = { ...NOTHING, clusterUdp: true };
    for (const transport of ['tcp', 'tls', 'ws', 'wss'] as const)
      assert.equal(pickEngine('native', transport, worker).engine, 'native', transport);
    const handedOver = { ...worker, handedOver: true };
    assert.deepEqual(pickEngine('native', 'tls', handedOver).portableBecause, [
      'connections handed over by the cluster primary',
    ]);
    assert.equal(pickEngine('native', 'tcp', { ...handedOver, hello: true }).engine, 'native');
  });
});
