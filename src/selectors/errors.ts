// Python's socket and selector exceptions as typed errors, each with a stable `code`.

import { EchoplexError } from '../core/errors.js';

/** Python's OSError: `errno` is the number, `code` the symbolic name (EAGAIN, ECONNRESET...). */
export class OSError extends EchoplexError {
  readonly errno: number;
  constructor(code: string, errno: number, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.errno = errno;
  }
}

/**
 * Nothing to receive yet, or no room to send: try again after `select()` says ready. Also a
 * non-blocking connect under way (`EINPROGRESS`): `select()` says WRITE when it is done.
 */
export class BlockingIOError extends OSError {
  constructor(message = 'Resource temporarily unavailable', code: 'EAGAIN' | 'EINPROGRESS' = 'EAGAIN') {
    super(code, ERRNO[code], `[Errno ${ERRNO[code]}] ${message}`);
  }
}

/** Python's TimeoutError (`socket.timeout`): a call on a socket with `settimeout(t)` waited t seconds. */
export class TimeoutError extends OSError {
  constructor() {
    super('ETIMEDOUT', ERRNO.ETIMEDOUT, 'timed out');
  }
}

/** Python's ValueError, for arguments no call can take (a negative timeout): a RangeError in JavaScript terms. */
export class ValueError extends RangeError {
  readonly code = 'ERR_VALUE';
  constructor(message: string) {
    super(message);
    this.name = 'ValueError';
  }
}

export class ConnectionResetError extends OSError {
  constructor(options?: { cause?: unknown }) {
    super('ECONNRESET', ERRNO.ECONNRESET, `[Errno ${ERRNO.ECONNRESET}] Connection reset by peer`, options);
  }
}

export class BrokenPipeError extends OSError {
  constructor(options?: { cause?: unknown }) {
    super('EPIPE', ERRNO.EPIPE, `[Errno ${ERRNO.EPIPE}] Broken pipe`, options);
  }
}

export class ConnectionRefusedError extends OSError {
  constructor(options?: { cause?: unknown }) {
    super('ECONNREFUSED', ERRNO.ECONNREFUSED, `[Errno ${ERRNO.ECONNREFUSED}] Connection refused`, options);
  }
}

/** Python's ValueError for a mask that is empty or has bits other than READ and WRITE. */
export class InvalidEventsError extends EchoplexError {
  constructor(events: unknown) {
    super('ERR_SELECTOR_INVALID_EVENTS', `Invalid events: ${String(events)}`);
  }
}

/** Python's ValueError for something that is not a socket or has no descriptor (closed). */
export class InvalidFileObjectError extends EchoplexError {
  constructor(detail: string) {
    super('ERR_SELECTOR_INVALID_FILEOBJ', detail);
  }
}

/** Python's KeyError "... is already registered". */
export class AlreadyRegisteredError extends EchoplexError {
  constructor(fileobj: unknown, fd: number) {
    super('ERR_SELECTOR_ALREADY_REGISTERED', `${String(fileobj)} (FD ${fd}) is already registered`);
  }
}

/** Python's KeyError "... is not registered". */
export class NotRegisteredError extends EchoplexError {
  constructor(fileobj: unknown) {
    super('ERR_SELECTOR_NOT_REGISTERED', `${String(fileobj)} is not registered`);
  }
}

/** Python's RuntimeError/ValueError for a selector used after close(). */
export class SelectorClosedError extends EchoplexError {
  constructor() {
    super('ERR_SELECTOR_CLOSED', 'Selector is closed');
  }
}

/** Linux errno values, so `err.errno` reads as it would in Python. */
export const ERRNO = {
  EBADF: 9,
  EAGAIN: 11,
  EPIPE: 32,
  EINVAL: 22,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ECONNRESET: 104,
  EISCONN: 106,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  ENOPROTOOPT: 92,
  EINPROGRESS: 115,
  EACCES: 13,
} as const;

/** Turns a Node system error into the matching Python-shaped OSError subclass. */
export function fromSystemError(err: NodeJS.ErrnoException): OSError {
  switch (err.code) {
    case 'ECONNRESET':
      return new ConnectionResetError({ cause: err });
    case 'EPIPE':
      return new BrokenPipeError({ cause: err });
    case 'ECONNREFUSED':
      return new ConnectionRefusedError({ cause: err });
    default: {
      const code = err.code ?? 'EIO';
      const errno = (ERRNO as Record<string, number>)[code] ?? Math.abs(err.errno ?? 5);
      return new OSError(code, errno, `[Errno ${errno}] ${err.message}`, { cause: err });
    }
  }
}
