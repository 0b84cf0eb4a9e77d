// Which engine serves a listener: the table of what the native engine does, and the one function that picks.
//
// The portable engine does everything; the native one (C, no JavaScript per message) does what
// its row in NATIVE says, on the transports listed there. A feature it lacks sends that
// listener to the portable engine, and the reason is kept for the listening line and the
// `--engine native` warning. A new native path is a change to this table, nowhere else.

import type { EngineName } from '../../native/engine.js';

/** What a listener speaks. */
export type ListenerTransport = 'tcp' | 'tls' | 'ws' | 'wss' | 'udp' | 'unix';

/** What a server is asked to do, as far as the choice of engine goes. */
export interface ServingNeeds {
  /** A transform module (a function): only JavaScript can call it. */
  customTransform: boolean;
  lineMode: boolean;
  prefix: boolean;
  proxyProtocol: boolean;
  delay: boolean;
  faults: boolean;
  hello: boolean;
  /** A log line per chunk (`--log-level debug`). */
  perChunkLogs: boolean;
  /** permessage-deflate (`--ws-deflate`). */
  wsDeflate: boolean;
  /** A source allow-list, checked per datagram over UDP. */
  allowList: boolean;
  /** In a cluster worker without shared ports: the primary accepts and hands each connection over. */
  handedOver: boolean;
  /** In a cluster worker without shared ports: datagrams come to the primary's socket, which every worker reads. */
  clusterUdp: boolean;
}

type Need = keyof ServingNeeds;

/**
 * One row per need: the transports on which it leaves the native engine serving (because the
 * engine does it there, or because it does not apply there), and how the reason reads when it
 * does not. Transports the native engine never serves are in NATIVE_TRANSPORTS.
 */
const NATIVE: Record<Need, { on: readonly ListenerTransport[]; reason: string }> = {
  customTransform: { on: [], reason: 'a transform module' },
  // A datagram is one message however it is framed.
  lineMode: { on: ['udp'], reason: 'line mode' },
  prefix: { on: [], reason: '--prefix' },
  proxyProtocol: { on: ['udp'], reason: 'the PROXY protocol' },
  delay: { on: [], reason: '--delay' },
  faults: { on: [], reason: '--fault' },
  hello: { on: ['tcp', 'tls', 'ws', 'wss', 'udp'], reason: '--hello' },
  perChunkLogs: { on: [], reason: 'debug logs (a line per chunk)' },
  wsDeflate: { on: ['tcp', 'tls', 'udp'], reason: '--ws-deflate' },
  // Streams are admitted by address in JavaScript; datagrams are answered in C without asking.
  allowList: { on: ['tcp', 'tls', 'ws', 'wss'], reason: '--allow' },
  // Handed over one connection at a time, plain TCP is adopted by the native engine; TLS and
  // WebSocket it must accept itself, on a shared port (src/native/shared-port.ts).
  handedOver: { on: ['tcp', 'udp'], reason: 'connections handed over by the cluster primary' },
  clusterUdp: { on: ['tcp', 'tls', 'ws', 'wss'], reason: "UDP on the cluster primary's socket" },
};

/** Transports the native engine serves at all. */
const NATIVE_TRANSPORTS: readonly ListenerTransport[] = ['tcp', 'tls', 'ws', 'wss', 'udp'];

/** Transports that need TLS in C, on Node's OpenSSL. */
const NEEDS_TLS: readonly ListenerTransport[] = ['tls', 'wss'];

export interface EngineFit {
  engine: EngineName;
  /** Why the portable engine serves it, where the native one was asked for; empty otherwise. */
  portableBecause: string[];
}

/**
 * The engine for a listener of `transport`, given the engine chosen for the server (see
 * native/engine.ts) and `needs`. `tlsUnavailable` says why TLS cannot run in C here, if it cannot.
 */
export function pickEngine(
  chosen: EngineName,
  transport: ListenerTransport,
  needs: ServingNeeds,
  tlsUnavailable?: string,
): EngineFit {
  if (chosen === 'portable') return { engine: 'portable', portableBecause: [] };
  const reasons: string[] = [];
  if (!NATIVE_TRANSPORTS.includes(transport)) reasons.push(transport === 'unix' ? 'the Unix socket' : transport);
  if (NEEDS_TLS.includes(transport) && tlsUnavailable !== undefined) reasons.push(`TLS (${tlsUnavailable})`);
  for (const need of Object.keys(NATIVE) as Need[]) {
    if (needs[need] && !NATIVE[need].on.includes(transport)) reasons.push(NATIVE[need].reason);
  }
  return { engine: reasons.length === 0 ? 'native' : 'portable', portableBecause: reasons };
}
