// Python's selectors module: SelectorKey, an abstract BaseSelector, and DefaultSelector on Node's event loop.

import {
  AlreadyRegisteredError,
  InvalidEventsError,
  InvalidFileObjectError,
  NotRegisteredError,
  SelectorClosedError,
} from './errors.js';
import { afterThisTurnsReads } from './native-plane.js';
import { isSelectable, kReadiness, kUnwatch, kWatch, socketForFd, type Selectable } from './socket.js';

/** Ready to read: `recv` would return data, end of stream or an error, or `accept` a connection. */
export const EVENT_READ = 1;
/** Ready to write: `send` would accept at least one byte. */
export const EVENT_WRITE = 2;

/** What can be registered: a socket, or the descriptor number of a live one. */
export type FileObject = Selectable | number;

/** A registration: read-only, like Python's namedtuple. */
export interface SelectorKey<T = unknown> {
  readonly fileobj: FileObject;
  readonly fd: number;
  readonly events: number;
  readonly data: T | undefined;
}

/** A `select()` result entry: the key and the events that are ready (masked by what it asked for). */
export type ReadyEvent<T = unknown> = [key: SelectorKey<T>, events: number];

/**
 * The selector interface, as Python's `selectors.BaseSelector`: registration by file object,
 * `select(timeout)` returning ready keys. `select` returns a Promise because waiting happens on
 * the event loop, never by blocking the thread.
 */
export abstract class BaseSelector<T = unknown> implements Disposable {
  /** Starts watching `fileobj` for `events` (EVENT_READ | EVENT_WRITE); `data` rides along in the key. */
  abstract register(fileobj: FileObject, events: number, data?: T): SelectorKey<T>;
  abstract unregister(fileobj: FileObject): SelectorKey<T>;
  /** Changes the events or data; the same as unregister + register, but keeps the registration order. */
  modify(fileobj: FileObject, events: number, data?: T): SelectorKey<T> {
    this.unregister(fileobj);
    return this.register(fileobj, events, data);
  }
  /**
   * Waits until at least one registered object is ready, or `timeout` seconds pass (fractions
   * allowed). `undefined` waits for the first event; `0` (or less) only polls. Resolves with
   * `[key, events]` pairs; an empty array means the timeout expired.
   */
  abstract select(timeout?: number): Promise<Array<ReadyEvent<T>>>;
  abstract close(): void;
  /** The key for `fileobj`; throws NotRegisteredError if it has none. */
  getKey(fileobj: FileObject): SelectorKey<T> {
    const key = this.getMap().get(resolveFd(fileobj));
    if (key === undefined) throw new NotRegisteredError(fileobj);
    return key;
  }
  /** Registered keys by descriptor. */
  abstract getMap(): ReadonlyMap<number, SelectorKey<T>>;
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * The selector for this platform: Node's event loop (epoll, kqueue or IOCP through libuv) tells
 * each socket when its state changes, and the selector keeps a ready list like epoll's, so a
 * `select()` costs in proportion to the ready keys, not to all of them, and an idle selector
 * costs nothing (no polling loop).
 */
export class DefaultSelector<T = unknown> extends BaseSelector<T> {
  #keys: Map<number, RegisteredKey<T>> | undefined = new Map();
  /** Keys that may be ready: every key whose socket changed, plus those found ready last time (level-triggered). */
  #candidates = new Set<RegisteredKey<T>>();
  #wake: (() => void) | undefined;
  #waiting = false;
  /** A wake-up is queued for the end of this turn's reads. */
  #wakeQueued = false;
  /** select() calls answered without yielding a turn of the event loop, since the last one that did. */
  #passesSinceTurn = 0;

  register(fileobj: FileObject, events: number, data?: T): SelectorKey<T> {
    const keys = this.#open();
    if (!Number.isInteger(events) || events === 0 || (events & ~(EVENT_READ | EVENT_WRITE)) !== 0)
      throw new InvalidEventsError(events);
    const selectable = resolveSelectable(fileobj);
    const fd = selectable.fileno();
    if (fd < 0) throw new InvalidFileObjectError(`Invalid file descriptor: ${fd}`);
    if (keys.has(fd)) throw new AlreadyRegisteredError(fileobj, fd);
    const key = new RegisteredKey(fileobj, fd, events, data, selectable, () => this.#changed(key));
    keys.set(fd, key);
    try {
      selectable[kWatch](key.onChange);
    } catch (err) {
      // Undo the half-done registration before re-raising, as selectors.py does.
      keys.delete(fd);
      throw err;
    }
    this.#changed(key);
    return key;
  }

  unregister(fileobj: FileObject): SelectorKey<T> {
    const keys = this.#open();
    const fd = this.#lookupFd(keys, fileobj);
    const key = keys.get(fd);
    if (key === undefined) throw new NotRegisteredError(fileobj);
    keys.delete(fd);
    this.#candidates.delete(key);
    key.selectable[kUnwatch](key.onChange);
    return key;
  }

  override modify(fileobj: FileObject, events: number, data?: T): SelectorKey<T> {
    const keys = this.#open();
    const fd = this.#lookupFd(keys, fileobj);
    const old = keys.get(fd);
    if (old === undefined) throw new NotRegisteredError(fileobj);
    // 0 is accepted here (not by register), as CPython's epoll selector accepts it: the key stays,
    // reported for nothing until modified again.
    if (!Number.isInteger(events) || (events & ~(EVENT_READ | EVENT_WRITE)) !== 0) throw new InvalidEventsError(events);
    old.selectable[kUnwatch](old.onChange);
    this.#candidates.delete(old);
    const key = new RegisteredKey(old.fileobj, fd, events, data, old.selectable, () => this.#changed(key));
    keys.set(fd, key);
    key.selectable[kWatch](key.onChange);
    this.#changed(key);
    return key;
  }

  async select(timeout?: number): Promise<Array<ReadyEvent<T>>> {
    this.#open();
    if (this.#waiting) throw new Error('select() is already waiting on this selector');
    if (timeout !== undefined && Number.isNaN(timeout)) throw new TypeError('timeout must be a number of seconds');
    this.#waiting = true;
    try {
      const deadline = timeout === undefined ? undefined : performance.now() + Math.max(0, timeout) * 1000;
      let woken = false;
      for (;;) {
        // Woken by I/O, the turn's reads are already in (see #changed): answer at once.
        // Otherwise yield a whole turn every few passes, so that I/O due gets in before
        // readiness is read: an always-writable socket must not starve everything else.
        if (!woken && this.#passesSinceTurn++ >= PASSES_BETWEEN_TURNS) {
          this.#passesSinceTurn = 0;
          await nextTurn();
        }
        woken = false;
        if (this.#keys === undefined) return [];
        const ready = this.#collectReady();
        if (ready.length > 0) return ready;
        const remaining = deadline === undefined ? undefined : deadline - performance.now();
        if (remaining !== undefined && remaining <= 0) return [];
        await this.#waitForChange(remaining);
        woken = true;
        this.#passesSinceTurn = 0;
      }
    } finally {
      this.#waiting = false;
    }
  }

  getMap(): ReadonlyMap<number, SelectorKey<T>> {
    return this.#open();
  }

  override getKey(fileobj: FileObject): SelectorKey<T> {
    const keys = this.#open();
    const key = keys.get(this.#lookupFd(keys, fileobj));
    if (key === undefined) throw new NotRegisteredError(fileobj);
    return key;
  }

  /**
   * The descriptor `fileobj` is registered under. A socket closed before it was unregistered
   * (fileno() is -1) is found by identity, as selectors.py's exhaustive search does, so that
   * closing first and unregistering second works as in Python and leaves no stale key behind.
   */
  #lookupFd(keys: Map<number, RegisteredKey<T>>, fileobj: FileObject): number {
    const fd = resolveFd(fileobj);
    if (fd >= 0) return fd;
    for (const key of keys.values()) if (key.fileobj === fileobj) return key.fd;
    throw new InvalidFileObjectError(`Invalid file descriptor: ${fd}`);
  }

  /** Unregisters everything; the selector cannot be used afterwards. A pending select() resolves to []. */
  close(): void {
    if (this.#keys === undefined) return;
    for (const key of this.#keys.values()) key.selectable[kUnwatch](key.onChange);
    this.#keys = undefined;
    this.#candidates.clear();
    this.#wake?.();
  }

  #collectReady(): Array<ReadyEvent<T>> {
    const ready: Array<ReadyEvent<T>> = [];
    for (const key of this.#candidates) {
      const events = key.selectable[kReadiness](key.events);
      if (events === 0) this.#candidates.delete(key);
      else ready.push([key, events]);
    }
    return ready;
  }

  #changed(key: RegisteredKey<T>): void {
    this.#candidates.add(key);
    // A waiting select() is woken once the event loop has read every socket that is ready in
    // this turn, so that one answer holds them all, as one epoll_wait() does. Woken at the first
    // change, it answered one key per pass, and the selectors port spent more CPU per message
    // (docs/performance-history.md).
    if (this.#wake !== undefined && !this.#wakeQueued) {
      this.#wakeQueued = true;
      afterThisTurnsReads(this.#wakeAfterReads);
    }
  }

  readonly #wakeAfterReads = (): void => {
    this.#wakeQueued = false;
    this.#wake?.();
  };

  #waitForChange(ms: number | undefined): Promise<void> {
    return new Promise((resolve) => {
      // Whichever comes first, the timeout or a wake-up, disarms the other.
      const finish = (): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = ms === undefined ? undefined : setTimeout(finish, ms);
      this.#wake = finish;
    });
  }

  #open(): Map<number, RegisteredKey<T>> {
    if (this.#keys === undefined) throw new SelectorClosedError();
    return this.#keys;
  }
}

class RegisteredKey<T> implements SelectorKey<T> {
  constructor(
    readonly fileobj: FileObject,
    readonly fd: number,
    readonly events: number,
    readonly data: T | undefined,
    readonly selectable: Selectable,
    readonly onChange: () => void,
  ) {
    Object.freeze(this);
  }

  toString(): string {
    return `SelectorKey(fileobj=${String(this.fileobj)}, fd=${this.fd}, events=${this.events}, data=${String(this.data)})`;
  }
}

function resolveSelectable(fileobj: FileObject): Selectable {
  if (typeof fileobj === 'number') {
    const socket = socketForFd(fileobj);
    if (socket === undefined) throw new InvalidFileObjectError(`Invalid file object: ${fileobj}`);
    return socket;
  }
  if (!isSelectable(fileobj)) throw new InvalidFileObjectError(`Invalid file object: ${String(fileobj)}`);
  return fileobj;
}

function resolveFd(fileobj: FileObject): number {
  if (typeof fileobj === 'number') return fileobj;
  if (!isSelectable(fileobj)) throw new InvalidFileObjectError(`Invalid file object: ${String(fileobj)}`);
  return fileobj.fileno();
}

/** How many select() calls in a row may answer from the ready list without a turn of the event loop. */
const PASSES_BETWEEN_TURNS = 8;

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
