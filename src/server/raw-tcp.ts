// libuv's TCP handles, the layer under net.Socket, reached through process.binding behind a check.
//
// net.Socket costs several microseconds per message in stream bookkeeping (bench:peers: 17 us
// of server CPU per 64-byte echo against 10 for a C epoll server). Talking to the handle
// directly removes that layer. These bindings are undocumented, so everything they must offer
// is checked once at load; if anything is missing the server uses net.Socket instead.

import { getSystemErrorName } from 'node:util';

/** The parts of TCPWrap we use. Return values are 0 or a negative libuv error. */
export interface TcpHandle {
  /** The socket's descriptor (-1 where the platform has none to show). */
  readonly fd: number;
  bind(address: string, port: number): number;
  bind6(address: string, port: number, flags: number): number;
  listen(backlog: number): number;
  getsockname(out: Record<string, unknown>): number;
  getpeername(out: Record<string, unknown>): number;
  setNoDelay(enable: boolean): number;
  /** SO_KEEPALIVE, and with it the idle seconds before the first probe (at least 1). */
  setKeepAlive(enable: boolean, idleSeconds: number): number;
  readStart(): number;
  readStop(): number;
  writeBuffer(req: WriteRequest, data: Uint8Array): number;
  shutdown(req: ShutdownRequest): number;
  close(callback?: () => void): void;
  connect(req: ConnectRequest, address: string, port: number): number;
  connect6(req: ConnectRequest, address: string, port: number): number;
  onread: ((this: TcpHandle, buffer: ArrayBuffer | undefined) => void) | null;
  onconnection: ((status: number, handle?: TcpHandle) => void) | null;
  useUserBuffer(buffer: Uint8Array): void;
}

export interface WriteRequest {
  handle: TcpHandle;
  oncomplete: (this: WriteRequest, status: number) => void;
  /** Ours: the bytes this request carries, and the buffer kept alive until it completes. */
  bytes: number;
  buffer: Uint8Array | null;
  owner: unknown;
}

export interface ConnectRequest {
  oncomplete: (status: number, handle: TcpHandle, req: ConnectRequest, readable: boolean, writable: boolean) => void;
}

export interface ShutdownRequest {
  handle: TcpHandle;
  oncomplete: (this: ShutdownRequest, status: number) => void;
  owner: unknown;
}

export interface RawTcp {
  newServerHandle(): TcpHandle;
  /** A client socket handle, for `connect`/`connect6` with a `newConnectRequest()`. */
  newClientHandle(): TcpHandle;
  newConnectRequest(): ConnectRequest;
  newWriteRequest(): WriteRequest;
  newShutdownRequest(): ShutdownRequest;
  /** After `writeBuffer`: bytes read by the last read (in onread), or a negative error. */
  lastReadResult(): number;
  /** After `writeBuffer`: whether the write is still in flight (libuv will call oncomplete). */
  lastWriteWasAsync(): boolean;
  /** libuv's end-of-stream code. */
  readonly EOF: number;
}

interface TcpWrapBinding {
  TCP: new (type: number) => TcpHandle;
  TCPConnectWrap: new () => ConnectRequest;
  constants: { SERVER: number; SOCKET: number };
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteRequest;
  ShutdownWrap: new () => ShutdownRequest;
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kLastWriteWasAsync: number;
}

/** libuv's UV_EOF: the same on every platform. */
const UV_EOF = -4095;

function load(): RawTcp | undefined {
  if (process.env['ECHOPLEX_NO_RAW_TCP']) return undefined;
  try {
    const binding = (process as unknown as { binding?: (name: string) => unknown }).binding;
    if (typeof binding !== 'function') return undefined;
    const tcp = binding('tcp_wrap') as Partial<TcpWrapBinding>;
    const stream = binding('stream_wrap') as Partial<StreamWrapBinding>;
    const { TCP, TCPConnectWrap, constants } = tcp;
    const { WriteWrap, ShutdownWrap, streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = stream;
    if (typeof TCP !== 'function' || typeof TCPConnectWrap !== 'function' || !constants || typeof WriteWrap !== 'function' || typeof ShutdownWrap !== 'function') return undefined;
    if (!(streamBaseState instanceof Int32Array) || typeof kReadBytesOrError !== 'number' || typeof kLastWriteWasAsync !== 'number') return undefined;
    const probe = new TCP(constants.SERVER);
    const methods = ['bind', 'bind6', 'listen', 'getsockname', 'readStart', 'readStop', 'writeBuffer', 'shutdown', 'close', 'setNoDelay', 'setKeepAlive', 'getpeername', 'useUserBuffer', 'connect', 'connect6'] as const;
    const complete = methods.every((name) => typeof (probe as unknown as Record<string, unknown>)[name] === 'function');
    probe.close();
    if (!complete || getSystemErrorName(UV_EOF) !== 'EOF') return undefined;
    return {
      newServerHandle: () => new TCP(constants.SERVER),
      newClientHandle: () => new TCP(constants.SOCKET),
      newConnectRequest: () => new TCPConnectWrap(),
      newWriteRequest: () => new WriteWrap(),
      newShutdownRequest: () => new ShutdownWrap(),
      lastReadResult: () => streamBaseState[kReadBytesOrError]!,
      lastWriteWasAsync: () => streamBaseState[kLastWriteWasAsync] !== 0,
      EOF: UV_EOF,
    };
  } catch {
    return undefined;
  }
}

/** The raw TCP layer, or undefined where this Node does not offer it (use net instead). */
export const rawTcp: RawTcp | undefined = load();

/** `ECONNRESET` for -104, and so on. */
export function errorName(status: number): string {
  try {
    return getSystemErrorName(status);
  } catch {
    return `E${-status}`;
  }
}

/** `writeToHandle` finished at once: the kernel took every byte. */
export const WRITE_DONE = 0;
/** `writeToHandle` left the rest to libuv: `oncomplete` runs later with the request, which holds the bytes. */
export const WRITE_PENDING = 1;

let spareWriteRequest: WriteRequest | undefined;

/**
 * Writes `bytes` to `handle`; returns WRITE_DONE, WRITE_PENDING or a negative libuv error. A
 * write the kernel takes at once never binds its request object, so one spare serves every
 * such write; only a write libuv must finish later (or one that failed after binding) keeps
 * its request, and with it `bytes`.
 */
export function writeToHandle(
  raw: RawTcp,
  handle: TcpHandle,
  bytes: Buffer,
  owner: unknown,
  oncomplete: (this: WriteRequest, status: number) => void,
): number {
  const req = (spareWriteRequest ??= raw.newWriteRequest());
  req.handle = handle;
  req.oncomplete = oncomplete;
  req.owner = owner;
  req.bytes = bytes.length;
  const status = handle.writeBuffer(req, bytes);
  if (status === 0 && !raw.lastWriteWasAsync()) return WRITE_DONE;
  spareWriteRequest = undefined;
  if (status < 0) return status;
  req.buffer = bytes;
  return WRITE_PENDING;
}
