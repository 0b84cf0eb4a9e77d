// Line mode: cut a byte stream into lines so a transform sees whole lines, however TCP splits them.

export const FRAMINGS = ['raw', 'line'] as const;
export type Framing = (typeof FRAMINGS)[number];

export const DEFAULT_MAX_LINE = 64 * 1024;
const NEWLINE = 0x0a;

/** What one chunk of input turned into. */
export interface SplitResult {
  /** Complete lines, each with its `\n`; they may share memory with the chunk given to `push`. */
  lines: Buffer[];
  /** A line grew past the limit before its `\n` arrived: the stream cannot go on. */
  overflow: boolean;
}

/**
 * Splits a stream into `\n`-terminated lines, keeping the unterminated tail between chunks.
 * The tail is copied, since the caller may reuse a chunk's memory once `push` returns.
 */
export class LineSplitter {
  readonly #maxLine: number;
  #tail: Buffer[] = [];
  #tailLength = 0;

  /** `maxLine` bounds a line's length without its `\n`. */
  constructor(maxLine: number) {
    this.#maxLine = maxLine;
  }

  /** Bytes held from an unfinished line. */
  get buffered(): number {
    return this.#tailLength;
  }

  push(chunk: Buffer): SplitResult {
    const lines: Buffer[] = [];
    let start = 0;
    for (let newline = chunk.indexOf(NEWLINE); newline >= 0; newline = chunk.indexOf(NEWLINE, start)) {
      if (this.#tailLength + newline - start > this.#maxLine) return { lines, overflow: true };
      const piece = chunk.subarray(start, newline + 1);
      lines.push(this.#tailLength === 0 ? piece : this.#takeTail(piece));
      start = newline + 1;
    }
    if (start < chunk.length) {
      if (this.#tailLength + chunk.length - start > this.#maxLine) return { lines, overflow: true };
      this.#tail.push(Buffer.from(chunk.subarray(start)));
      this.#tailLength += chunk.length - start;
    }
    return { lines, overflow: false };
  }

  /** The unterminated last line at end of stream, if any; it is echoed like any other. */
  flush(): Buffer | undefined {
    return this.#tailLength === 0 ? undefined : this.#takeTail();
  }

  #takeTail(last?: Buffer): Buffer {
    const line = Buffer.concat(last === undefined ? this.#tail : [...this.#tail, last]);
    this.#tail = [];
    this.#tailLength = 0;
    return line;
  }
}
