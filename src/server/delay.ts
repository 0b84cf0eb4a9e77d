// --delay: what was received held for a fixed time before it is answered, in arrival order.

/**
 * Items (a connection's chunks, or a UDP socket's replies) that wait a fixed time, oldest first,
 * on one timer at a time armed for the oldest; `bytes` is what they hold, for backpressure.
 */
export class DelayQueue<T> {
  readonly #delayMs: number;
  readonly #sizeOf: (item: T) => number;
  readonly #onDue: (items: T[]) => void;
  #items: T[] = [];
  #dueAt: number[] = [];
  #timer: NodeJS.Timeout | undefined;
  bytes = 0;
  /** Cleared on abort or close: nothing more is queued or handed on. */
  cleared = false;

  constructor(delayMs: number, sizeOf: (item: T) => number, onDue: (items: T[]) => void) {
    this.#delayMs = delayMs;
    this.#sizeOf = sizeOf;
    this.#onDue = onDue;
  }

  /** Queues `item` for `delayMs` (default: the queue's), never before an item queued earlier. */
  push(item: T, delayMs = this.#delayMs): void {
    if (this.cleared) return;
    const now = performance.now();
    const due = Math.max(now + delayMs, this.#dueAt[this.#dueAt.length - 1] ?? 0);
    this.#items.push(item);
    this.#dueAt.push(due);
    this.bytes += this.#sizeOf(item);
    this.#timer ??= setTimeout(this.#fire, Math.max(1, due - now));
  }

  clear(): void {
    this.cleared = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#items = [];
    this.#dueAt = [];
    this.bytes = 0;
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    // A timer may fire a fraction of a millisecond before performance.now() says it is due.
    const now = performance.now() + 1;
    let count = 0;
    while (count < this.#dueAt.length && this.#dueAt[count]! <= now) count++;
    const due = this.#items.splice(0, count);
    this.#dueAt.splice(0, count);
    for (const item of due) this.bytes -= this.#sizeOf(item);
    if (this.#dueAt.length > 0) this.#timer = setTimeout(this.#fire, Math.max(1, this.#dueAt[0]! - performance.now()));
    this.#onDue(due);
  };
}
