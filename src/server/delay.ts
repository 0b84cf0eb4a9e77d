// --delay: received chunks held for a fixed time before they are answered, in arrival order.

/**
 * Chunks that wait a fixed time before they are answered, oldest first, on one timer per
 * connection at a time (armed for the oldest chunk).
 */
export class DelayQueue {
  readonly #delayMs: number;
  readonly #onDue: (chunks: Buffer[]) => void;
  #chunks: Buffer[] = [];
  #dueAt: number[] = [];
  #timer: NodeJS.Timeout | undefined;
  bytes = 0;
  /** The connection was aborted or closed: nothing more is answered. */
  cleared = false;

  constructor(delayMs: number, onDue: (chunks: Buffer[]) => void) {
    this.#delayMs = delayMs;
    this.#onDue = onDue;
  }

  push(chunk: Buffer): void {
    if (this.cleared) return;
    this.#chunks.push(chunk);
    this.#dueAt.push(performance.now() + this.#delayMs);
    this.bytes += chunk.length;
    this.#timer ??= setTimeout(this.#fire, this.#delayMs);
  }

  clear(): void {
    this.cleared = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#chunks = [];
    this.#dueAt = [];
    this.bytes = 0;
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    // A timer may fire a fraction of a millisecond before performance.now() says it is due.
    const now = performance.now() + 1;
    let count = 0;
    while (count < this.#dueAt.length && this.#dueAt[count]! <= now) count++;
    const due = this.#chunks.splice(0, count);
    this.#dueAt.splice(0, count);
    for (const chunk of due) this.bytes -= chunk.length;
    if (this.#dueAt.length > 0) this.#timer = setTimeout(this.#fire, Math.max(1, this.#dueAt[0]! - performance.now()));
    this.#onDue(due);
  };
}
