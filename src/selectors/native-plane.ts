// Sockets on the native addon (native/socket_engine.c): recv and send are system calls, readiness is read from shared memory.

import { addonBinding, platformConstants } from '../native/addon.js';
import { errorName } from '../core/errors.js';
import { BlockingIOError, fromSystemError, type OSError } from './errors.js';
import { READABLE, WRITABLE, type DataPlane } from './plane.js';
import type { ByteStream, Endpoint } from './stream.js';

type SocketsHandle = { readonly __brand: 'echoplex.native.sockets' };
type SocketHandle = { readonly __brand: 'echoplex.native.socket' };

interface NativeSocketsBinding {
  /** `onChanged(count)` (with `receiver` as `this`) runs once per turn with `count` slots at the start of `changed` (-1: rescan all). */
  createSockets(
    receiver: object,
    flags: Int32Array,
    changed: Int32Array,
    readBuffer: Buffer,
    onChanged: (count: number) => void,
  ): SocketsHandle;
  /** Takes over a duplicate of the connected socket `fd`, its readiness in `flags[slot]`; returns it and its descriptor. */
  adoptSocket(sockets: SocketsHandle, fd: number, slot: number): [SocketHandle, number];
  /** Bytes read into the start of the read buffer (0 at end of stream), or a negative errno. */
  socketRecv(socket: SocketHandle, bufsize: number): number;
  /** Bytes taken, or a negative errno. */
  socketSend(socket: SocketHandle, bytes: Uint8Array): number;
  /**
   * Asks the kernel whether WRITE still holds after a send; returns the slot's flags. From then
   * on the socket's sends are confirmed at the end of each turn, with the turn's others.
   */
  socketCheckWritable(socket: SocketHandle): number;
  socketShutdown(socket: SocketHandle, how: number): number;
  socketSetOption(socket: SocketHandle, level: number, option: number, value: number): number;
  /** The pending error as a negative errno, or 0. */
  socketError(socket: SocketHandle): number;
  socketClose(socket: SocketHandle): void;
}

const FUNCTIONS = [
  'createSockets',
  'adoptSocket',
  'socketRecv',
  'socketSend',
  'socketCheckWritable',
  'socketShutdown',
  'socketSetOption',
  'socketError',
  'socketClose',
] as const;
const binding = addonBinding<NativeSocketsBinding>(FUNCTIONS);

const READY_ERROR = 4;
const READY_WRITE_UNCHECKED = 8;
// The platform's values, from the addon that passes them to the kernel.
const constants = binding === undefined ? undefined : platformConstants();
/** Sockets open at once on the native plane; past this, new ones use the stream plane. */
const SLOTS = 1 << 16;
const CHANGED_PER_TURN = 4096;
/** The most one recv() returns, as a kernel read of a socket rarely gives more. */
const READ_BUFFER_BYTES = 64 * 1024;

let notifyingFromNative = false;

/**
 * Runs `callback` once this turn's reads are in: at the end of a batch of native readiness
 * changes, or after the turn's I/O callbacks (setImmediate) for streams, so that one select()
 * answer holds every socket ready in the turn, as one epoll_wait() does.
 */
export function afterThisTurnsReads(callback: () => void): void {
  if (notifyingFromNative) queueMicrotask(callback);
  else setImmediate(callback);
}

/** The shared readiness array and the socket in each slot. */
class NativeSockets {
  readonly flags = new Int32Array(SLOTS);
  readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  readonly #changed = new Int32Array(CHANGED_PER_TURN);
  readonly #planes: Array<NativePlane | undefined> = [];
  readonly #freeSlots: number[] = [];
  #nextSlot = 0;
  readonly handle: SocketsHandle;

  constructor(readonly binding: NativeSocketsBinding) {
    this.handle = binding.createSockets(this, this.flags, this.#changed, this.readBuffer, this.#onChanged);
  }

  /** A free slot, or -1 when all are taken. */
  allocate(plane: NativePlane): number {
    const slot = this.#freeSlots.pop() ?? (this.#nextSlot < SLOTS ? this.#nextSlot++ : -1);
    if (slot >= 0) this.#planes[slot] = plane;
    return slot;
  }

  release(slot: number): void {
    this.#planes[slot] = undefined;
    this.#freeSlots.push(slot);
  }

  readonly #onChanged = (count: number): void => {
    notifyingFromNative = true;
    try {
      const changed = this.#changed;
      if (changed[count - 1] === -1) {
        for (const plane of this.#planes) plane?.onChange();
      } else {
        for (let i = 0; i < count; i++) this.#planes[changed[i]!]?.onChange();
      }
    } finally {
      notifyingFromNative = false;
    }
  };
}

let sockets: NativeSockets | undefined;

/**
 * A connected socket on the addon. Python's semantics come from the kernel itself: partial
 * sends, full buffers, resets and half-closes are what the system calls report.
 */
export class NativePlane implements DataPlane {
  readonly #sockets: NativeSockets;
  readonly #binding: NativeSocketsBinding;
  #handle: SocketHandle | undefined;
  /** Our duplicate of the descriptor Node accepted or connected. */
  #fd = -1;
  #slot = -1;
  readonly #local: Endpoint | undefined;
  readonly onChange: () => void;

  /**
   * Moves a paused stream's connection onto the addon (the stream is destroyed; its descriptor
   * was duplicated). Undefined where the addon is absent or cannot take it: the stream is then
   * untouched.
   */
  static adopt(stream: ByteStream, onChange: () => void): NativePlane | undefined {
    const fd = stream.fd;
    if (binding === undefined || fd === undefined) return undefined;
    sockets ??= new NativeSockets(binding);
    const plane = new NativePlane(sockets, binding, stream.localEndpoint(), onChange);
    if (!plane.#adopt(fd)) return undefined;
    stream.destroy();
    return plane;
  }

  private constructor(
    nativeSockets: NativeSockets,
    nativeBinding: NativeSocketsBinding,
    local: Endpoint | undefined,
    onChange: () => void,
  ) {
    this.#sockets = nativeSockets;
    this.#binding = nativeBinding;
    this.#local = local;
    this.onChange = onChange;
  }

  get fd(): number {
    return this.#fd;
  }

  #adopt(fd: number): boolean {
    const slot = this.#sockets.allocate(this);
    if (slot < 0) return false;
    try {
      const [handle, ownFd] = this.#binding.adoptSocket(this.#sockets.handle, fd, slot);
      this.#handle = handle;
      this.#fd = ownFd;
      this.#slot = slot;
      return true;
    } catch {
      // Out of descriptors for the duplicate: the stream plane serves this one.
      this.#sockets.release(slot);
      return false;
    }
  }

  readiness(wanted: number): number {
    if (this.#slot < 0) return 0;
    let flags = this.#sockets.flags[this.#slot]!;
    // Only a question about writing pays for asking the kernel whether the last send left room.
    if ((flags & READY_WRITE_UNCHECKED) !== 0 && (wanted & WRITABLE) !== 0)
      flags = this.#binding.socketCheckWritable(this.#handle!);
    return flags & wanted & (READABLE | WRITABLE);
  }

  failed(): boolean {
    return this.#slot >= 0 && (this.#sockets.flags[this.#slot]! & READY_ERROR) !== 0;
  }

  takeError(): number {
    // The kernel's getsockopt(SO_ERROR), which clears what it reports.
    return this.#handle === undefined ? 0 : Math.abs(this.#binding.socketError(this.#handle));
  }

  recv(bufsize: number): Buffer {
    const result = this.#binding.socketRecv(this.#open(), Math.max(0, Math.floor(bufsize)));
    if (result < 0) throw this.#failure(result);
    const bytes = Buffer.allocUnsafe(result);
    this.#sockets.readBuffer.copy(bytes, 0, 0, result);
    return bytes;
  }

  send(bytes: Uint8Array): number {
    const result = this.#binding.socketSend(this.#open(), bytes);
    if (result >= 0) return result;
    throw this.#failure(result);
  }

  shutdown(how: number): void {
    const status = this.#binding.socketShutdown(this.#open(), how);
    if (status < 0) throw errnoError(status);
  }

  close(): void {
    if (this.#handle === undefined) return;
    this.#binding.socketClose(this.#handle);
    this.#handle = undefined;
    this.#sockets.release(this.#slot);
    this.#slot = -1;
  }

  setNoDelay(on: boolean): void {
    this.#setOption(constants!.IPPROTO_TCP, constants!.TCP_NODELAY, on);
  }

  setKeepAlive(on: boolean): void {
    // Python's SO_KEEPALIVE alone: the kernel's idle time before the first probe.
    this.#setOption(constants!.SOL_SOCKET, constants!.SO_KEEPALIVE, on);
  }

  localEndpoint(): Endpoint | undefined {
    return this.#local;
  }

  #setOption(level: number, option: number, on: boolean): void {
    if (this.#handle === undefined) return;
    const status = this.#binding.socketSetOption(this.#handle, level, option, on ? 1 : 0);
    if (status < 0) throw errnoError(status);
  }

  #open(): SocketHandle {
    if (this.#handle === undefined) throw errnoError(-constants!.EBADF);
    return this.#handle;
  }

  #failure(status: number): OSError {
    // What the system call said, this once: the kernel reports an error to one call only.
    return status === -constants!.EAGAIN ? new BlockingIOError() : errnoError(status);
  }
}

function errnoError(status: number): OSError {
  return fromSystemError(Object.assign(new Error(errorName(status)), { code: errorName(status), errno: status }));
}

/** Whether native sockets can be used here (the addon was built and is not turned off). */
export const nativeSocketsAvailable = binding !== undefined;
