// Small stand-ins for Python built-ins the seed programs use: print, repr of bytes, input, argv port.

import readline from 'node:readline';
import { reprBytes, reprBytesMaxLength, upperTransform, writeReprBytes } from 'echoplex';

// Python buffers stdout by blocks when it is not a terminal, and by lines when it is; a write
// system call per print() would cost more than the echo itself. Lines are encoded straight into
// the block, bytes as their repr() in ASCII, so no line is built as a string first.
const BLOCK_BYTES = 8192;
const lineBuffered = process.stdout.isTTY === true;
let block = Buffer.allocUnsafe(2 * BLOCK_BYTES);
let used = 0;
let flushScheduled = false;

function flush(): void {
  flushScheduled = false;
  if (used === 0) return;
  // The stream may still hold the block after write() returns: the next lines go to a new one.
  process.stdout.write(block.subarray(0, used));
  block = Buffer.allocUnsafe(2 * BLOCK_BYTES);
  used = 0;
}
process.on('exit', flush);

/** Makes room for `bytes` more in the block, flushing it first if they would not fit. */
function reserve(bytes: number): void {
  if (used + bytes <= block.length) return;
  flush();
  if (bytes > block.length) block = Buffer.allocUnsafe(bytes);
}

/** Python's print(): arguments as strings, separated by spaces; buffered as Python buffers it. */
export function print(...values: unknown[]): void {
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    // One byte for the separator or the newline; UTF-8 takes at most 3 bytes per UTF-16 unit.
    if (Buffer.isBuffer(value)) {
      reserve(reprBytesMaxLength(value.length) + 1);
      used = writeReprBytes(value, block, used);
    } else {
      const text = String(value);
      reserve(text.length * 3 + 1);
      used += block.write(text, used);
    }
    block[used++] = i < values.length - 1 ? 0x20 : 0x0a;
  }
  if (values.length === 0) {
    reserve(1);
    block[used++] = 0x0a;
  }
  if (lineBuffered || used >= BLOCK_BYTES) flush();
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
