// Python's select.select(rlist, wlist, xlist, timeout), without the 1024-descriptor limit.

import { InvalidFileObjectError, ValueError } from './errors.js';
import {
  isSelectable,
  kPendingError,
  kReadiness,
  kUnwatch,
  kWatch,
  READABLE,
  socketForFd,
  WRITABLE,
  type Selectable,
} from './socket.js';

type Watchable = Selectable | number;

/**
 * Waits until some of `rlist` are ready to read, `wlist` to write, or `xlist` have a pending
 * error, or `timeout` seconds pass (`undefined` waits forever, `0` polls). Resolves with the
 * three ready sublists, each in its input order, like Python's `select.select`.
 */
export async function select<R extends Watchable, W extends Watchable, X extends Watchable>(
  rlist: readonly R[],
  wlist: readonly W[],
  xlist: readonly X[],
  timeout?: number,
): Promise<[R[], W[], X[]]> {
  if (timeout !== undefined && (Number.isNaN(timeout) || timeout < 0))
    throw new ValueError('timeout must be non-negative');
  const deadline = timeout === undefined ? undefined : performance.now() + timeout * 1000;
  for (;;) {
    // Let due I/O land before reading readiness (and never starve the loop on always-ready lists).
    await new Promise((resolve) => setImmediate(resolve));
    const r = rlist.filter((item) => toSelectable(item)[kReadiness](READABLE) !== 0);
    const w = wlist.filter((item) => toSelectable(item)[kReadiness](WRITABLE) !== 0);
    const x = xlist.filter((item) => toSelectable(item)[kPendingError]());
    if (r.length + w.length + x.length > 0) return [r, w, x];
    const remaining = deadline === undefined ? undefined : deadline - performance.now();
    if (remaining !== undefined && remaining <= 0) return [r, w, x];
    await anyChange([rlist, wlist, xlist], remaining);
  }
}

/** Resolves when any of the sockets changes state, or after `ms`. Built only when nothing is ready. */
function anyChange(lists: ReadonlyArray<readonly Watchable[]>, ms: number | undefined): Promise<void> {
  const watched = new Set<Selectable>();
  for (const list of lists) for (const item of list) watched.add(toSelectable(item));
  return new Promise((resolve) => {
    const timer = ms === undefined ? undefined : setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      for (const selectable of watched) selectable[kUnwatch](done);
      resolve();
    }
    for (const selectable of watched) selectable[kWatch](done);
  });
}

function toSelectable(item: Watchable): Selectable {
  if (typeof item === 'number') {
    const socket = socketForFd(item);
    if (socket === undefined) throw new InvalidFileObjectError(`file descriptor ${item} is not an open socket`);
    return socket;
  }
  if (!isSelectable(item)) throw new InvalidFileObjectError(`Invalid file object: ${String(item)}`);
  // Python raises ValueError for a closed socket (fileno() == -1) in any list.
  if (item.fileno() < 0) throw new InvalidFileObjectError('file descriptor cannot be a negative integer (-1)');
  return item;
}
