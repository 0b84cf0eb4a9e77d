// UDP echo (RFC 862): one reply datagram per request datagram, with the same transform.

import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { listenFailure } from '../core/errors.js';
import { describeBytes, type Logger } from '../core/log.js';
import { formatEndpoint, formatHostPort, ipOf } from '../core/address.js';
import { DelayQueue } from './delay.js';
import { canonicalAddress } from './limits.js';
import type { Listener } from './listener.js';
import type { Faults } from './faults.js';
import { NativeUdp } from './engines/udp-native.js';
import { joinSharedDatagramPort } from '../native/shared-port.js';
import type { ServerStats } from './stats.js';
import type { Transform } from '../protocol/transforms.js';

export { MAX_UDP_PAYLOAD } from '../protocol/transports.js';

export interface UdpEchoOptions {
  host: string;
  port: number;
  transform: Transform;
  /** Put before each reply (line mode's --prefix; a datagram is one message). */
  prefix: Buffer | undefined;
  /** Milliseconds each reply waits before it is sent; 0: none. */
  delayMs: number;
  /** Faults on purpose: datagrams dropped, replies delayed. */
  faults: Faults | undefined;
  /** Answer in C (see engines/udp-native.ts), where the addon can take the socket. */
  native: { upper: boolean } | undefined;
  /**
   * In a cluster worker: bind a socket of this process's own, shared with the other workers
   * (SO_REUSEPORT, src/native/shared-port.ts), instead of reading the primary's.
   */
  sharedPort?: boolean;
  /** Source addresses the allow-list lets in; others' datagrams are dropped. */
  allows(address: string): boolean;
  stats: ServerStats;
  log: Logger;
  logEvents: boolean;
  /** One `debug` line per datagram. */
  logData: boolean;
}

export async function listenUdp(options: UdpEchoOptions): Promise<Listener> {
  const { host, port } = options;
  const endpoint = formatEndpoint('udp', host, port);
  const ip = await ipOf(host).catch((err: unknown) => {
    throw listenFailure(endpoint, err);
  });
  // libuv reads into a 64 KiB buffer, so every datagram up to the protocol's limit arrives whole;
  // the kernel buffers are raised so that a burst of large ones is not dropped on arrival.
  const socket = dgram.createSocket({
    type: isIPv6(ip) ? 'udp6' : 'udp4',
    recvBufferSize: 4 * 1024 * 1024,
    sendBufferSize: 4 * 1024 * 1024,
  });
  const delayed =
    options.delayMs > 0 || options.faults !== undefined
      ? new DelayQueue<DelayedReply>(
          options.delayMs,
          (item) => item.reply.length,
          (due) => due.forEach((item) => item.send()),
        )
      : undefined;
  socket.on('message', (message, remote) => echoDatagram(socket, message, remote, options, delayed));
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(listenFailure(endpoint, err));
    socket.once('error', onError);
    const onBound = () => {
      socket.off('error', onError);
      socket.on('error', (err) => {
        options.stats.errors.udp++;
        options.log.warn({ event: 'error', kind: 'udp', err: err.message }, `UDP socket error: ${err.message}`);
      });
      resolve();
    };
    if (options.sharedPort !== true) {
      socket.bind(port, ip, onBound);
      return;
    }
    try {
      socket.bind({ fd: joinSharedDatagramPort(ip, port), exclusive: true }, onBound);
    } catch (err) {
      onError(err as Error);
    }
  });
  const bound = socket.address();
  const address = { host: bound.address, port: bound.port, family: bound.family };
  const native =
    options.native === undefined ? undefined : NativeUdp.adopt(socket, options.native.upper, MAX_WAITING_BYTES);
  let open = true;
  return {
    address,
    engine: native === undefined ? 'portable' : 'native',
    close: () => {
      if (!open) return;
      open = false;
      // Adopted, Node's socket is already closed: the engine holds the port.
      if (native !== undefined) return native.close();
      delayed?.clear();
      socket.close();
    },
    ...(native !== undefined && { addTotalsTo: (stats: ServerStats) => native.addTotalsTo(stats) }),
  };
}

/**
 * Replies waiting, out --delay or for room in the socket's send buffer (on either engine): past
 * this many bytes waiting, a reply is dropped and counted, as a full socket buffer would drop
 * it, so that a flood, or a path that holds replies back, cannot grow the server's memory
 * without bound.
 */
const MAX_WAITING_BYTES = 4 * 1024 * 1024;

interface DelayedReply {
  reply: Buffer;
  send(): void;
}

function echoDatagram(
  socket: dgram.Socket,
  message: Buffer,
  remote: dgram.RemoteInfo,
  options: UdpEchoOptions,
  delayed: DelayQueue<DelayedReply> | undefined,
): void {
  const { stats, log } = options;
  const address = canonicalAddress(remote.address);
  const peer = formatHostPort(address, remote.port);
  if (!options.allows(address)) {
    stats.rejected.not_allowed++;
    if (options.logEvents)
      log.info(
        { event: 'reject', transport: 'udp', peer, reason: 'not_allowed' },
        `dropped a datagram from ${peer}: address not in --allow`,
      );
    return;
  }
  stats.bytesReceived += message.length;
  stats.messages.udp++;
  if (options.logData) {
    log.debug(
      { event: 'data', transport: 'udp', peer, bytes: message.length },
      `received ${message.length} bytes by UDP from ${peer}: ${describeBytes(message)}`,
    );
  }
  if (options.faults?.dropsDatagram()) {
    stats.faults.drop++;
    if (options.logData)
      log.debug(
        { event: 'fault', kind: 'drop', transport: 'udp', peer },
        `fault on purpose: dropped a datagram from ${peer}`,
      );
    return;
  }
  let reply: Buffer;
  try {
    // Each datagram arrives in a Buffer of its own, so the transform may change it in place.
    reply = options.transform(message);
  } catch (err) {
    stats.errors.transform++;
    log.error(
      { event: 'error', kind: 'transform', transport: 'udp', peer, err: String(err) },
      `transform failed for a datagram from ${peer}, dropped: ${String(err)}`,
    );
    return;
  }
  if (options.prefix !== undefined) reply = Buffer.concat([options.prefix, reply]);
  const send = () => {
    // What libuv holds after the socket refused it: sent in order once there is room.
    if (socket.getSendQueueSize() + reply.length > MAX_WAITING_BYTES) {
      stats.errors.udp++;
      if (options.logData)
        log.debug(
          { event: 'error', kind: 'udp', peer, err: 'send queue full' },
          `dropped the reply to ${peer}: more than ${MAX_WAITING_BYTES} bytes of replies wait for room in the socket's buffer`,
        );
      return;
    }
    stats.bytesSent += reply.length;
    socket.send(reply, remote.port, remote.address, (err) => {
      if (err === null || err === undefined) return;
      stats.bytesSent -= reply.length;
      stats.errors.udp++;
      log.warn(
        { event: 'error', kind: 'udp', peer, err: err.message },
        `could not send ${reply.length} bytes by UDP to ${peer}: ${err.message}`,
      );
    });
  };
  const faultDelayMs = options.faults?.delayMs() ?? 0;
  if (faultDelayMs > 0) stats.faults.delay++;
  if (delayed === undefined || options.delayMs + faultDelayMs === 0) return send();
  if (delayed.bytes + reply.length <= MAX_WAITING_BYTES) {
    delayed.push({ reply, send }, options.delayMs + faultDelayMs);
  } else {
    stats.errors.udp++;
    log.debug(
      { event: 'error', kind: 'udp', peer, err: 'delay queue full' },
      `dropped a datagram from ${peer}: more than ${MAX_WAITING_BYTES} bytes of replies wait out --delay`,
    );
  }
}
