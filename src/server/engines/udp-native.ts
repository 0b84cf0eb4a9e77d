// The native UDP engine (native/udp_engine.c): C answers a bound socket's datagrams in batches; JavaScript reads its counters.

import type dgram from 'node:dgram';
import { addonBinding } from '../../native/addon.js';
import { datagramDescriptorOf } from '../../native/descriptor.js';
import type { ServerStats } from '../stats.js';

type UdpHandle = { readonly __brand: 'echoplex.native.udp' };

interface UdpBinding {
  /** Echoes on a duplicate of the bound socket `fd`; replies wait up to `maxPending` bytes. Throws if it cannot. */
  createUdp(fd: number, upper: boolean, maxPending: number): UdpHandle;
  /** Fills `out` with datagrams, bytes received, bytes sent, replies dropped. */
  udpTotals(engine: UdpHandle, out: Float64Array): void;
  closeUdp(engine: UdpHandle): void;
}

const binding = addonBinding<UdpBinding>(['createUdp', 'udpTotals', 'closeUdp']);

/** A bound socket's datagrams answered in C. */
export class NativeUdp {
  readonly #binding: UdpBinding;
  readonly #engine: UdpHandle;
  readonly #totals = new Float64Array(4);

  /**
   * Takes over `socket` (bound, and closed here once the engine holds its own duplicate).
   * Undefined, with the socket untouched, where the addon or the descriptor is not there.
   */
  static adopt(socket: dgram.Socket, upper: boolean, maxPending: number): NativeUdp | undefined {
    const fd = datagramDescriptorOf(socket);
    if (binding === undefined || fd === undefined) return undefined;
    let engine: UdpHandle;
    try {
      engine = binding.createUdp(fd, upper, maxPending);
    } catch {
      return undefined;
    }
    // The engine's duplicate keeps the port bound: Node's socket stops reading and goes.
    socket.close();
    return new NativeUdp(binding, engine);
  }

  private constructor(udpBinding: UdpBinding, engine: UdpHandle) {
    this.#binding = udpBinding;
    this.#engine = engine;
  }

  /** Adds the engine's counts to `stats` (a copy being reported). */
  addTotalsTo(stats: ServerStats): void {
    this.#binding.udpTotals(this.#engine, this.#totals);
    stats.messages.udp += this.#totals[0]!;
    stats.bytesReceived += this.#totals[1]!;
    stats.bytesSent += this.#totals[2]!;
    stats.errors.udp += this.#totals[3]!;
  }

  close(): void {
    this.#binding.closeUdp(this.#engine);
  }
}
