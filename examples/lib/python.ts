// Small stand-ins for Python built-ins the seed programs use: print, repr of bytes, input, argv port.

import readline from 'node:readline';
import { reprBytes, upperTransform } from 'echoplex';

// Python buffers stdout by blocks when it is not a terminal, and by lines when it is; a write
// system call per print() would cost more than the echo itself. Lines are joined as a string and
// encoded once per block (measured: cheaper than encoding each line into a Buffer).
const BLOCK_CHARS = 8192;
const lineBuffered = process.stdout.isTTY === true;
let pending = '';
let flushScheduled = false;

function flush(): void {
  flushScheduled = false;
  if (pending.length === 0) return;
  // Encoded in one pass into room for the worst case (3 bytes per UTF-16 unit): writing the
  // string would measure its UTF-8 length first, twice the work for the seed's Chinese lines.
  const block = Buffer.allocUnsafe(pending.length * 3);
  const length = block.write(pending);
  pending = '';
  process.stdout.write(block.subarray(0, length));
}
process.on('exit', flush);

/** Python's print(): arguments as strings, separated by spaces; buffered as Python buffers it. */
export function print(...values: unknown[]): void {
  let line = '';
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    line += `${i > 0 ? ' ' : ''}${Buffer.isBuffer(value) ? repr(value) : String(value)}`;
  }
  pending += `${line}\n`;
  if (lineBuffered || pending.length >= BLOCK_CHARS) flush();
  else if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
}

/** Python's repr() of bytes: b'hello\n'. */
export const repr = reprBytes;

/** Python's bytes.upper(): a copy with ASCII a-z made A-Z, every other byte untouched. */
export function upper(bytes: Buffer): Buffer {
  return upperTransform(Buffer.from(bytes));
}

/** `int(sys.argv[1]) if len(sys.argv) > 1 else fallback`, as the seed programs take their port. */
export function portArgument(fallback: number): number {
  const arg = process.argv[2];
  return arg === undefined ? fallback : Number.parseInt(arg, 10);
}

let lines: AsyncIterableIterator<string> | undefined;

/**
 * Python's input(prompt), awaited. Resolves null at end of input where Python raises EOFError.
 * The prompt is shown on a terminal only, so piped output holds just the replies.
 */
export async function input(prompt: string): Promise<string | null> {
  if (lines === undefined) {
    const rl = readline.createInterface({ input: process.stdin, terminal: false });
    lines = rl[Symbol.asyncIterator]();
  }
  if (process.stdin.isTTY) process.stdout.write(prompt);
  const next = await lines.next();
  return next.done ? null : next.value;
}
