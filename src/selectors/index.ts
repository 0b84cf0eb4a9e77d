// `echoplex/selectors`: Python's select and selectors modules, and non-blocking sockets, for TypeScript.

export { BaseSelector, DefaultSelector, EVENT_READ, EVENT_WRITE } from './selector.js';
export type { SelectorKey, ReadyEvent, FileObject } from './selector.js';
export { select } from './select.js';
export {
  socket,
  Socket,
  AF_INET,
  AF_INET6,
  AF_UNIX,
  SOCK_STREAM,
  SHUT_RD,
  SHUT_WR,
  SHUT_RDWR,
  SOCKET_BUFFER_BYTES,
  SOL_SOCKET,
  SO_REUSEADDR,
  SO_TYPE,
  SO_ERROR,
  SO_KEEPALIVE,
  IPPROTO_TCP,
  TCP_NODELAY,
  useEngine,
} from './socket.js';
export type { EngineChoice } from '../native/engine.js';
export type { Address, Selectable } from './socket.js';
export {
  OSError,
  BlockingIOError,
  ConnectionResetError,
  ConnectionRefusedError,
  BrokenPipeError,
  TimeoutError,
  ValueError,
  InvalidEventsError,
  InvalidFileObjectError,
  AlreadyRegisteredError,
  NotRegisteredError,
  SelectorClosedError,
  ERRNO,
} from './errors.js';
