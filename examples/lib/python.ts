// Small stand-ins for Python built-ins the seed programs use: print, repr of bytes, input, argv port.

import readline from 'node:readline';
import { reprBytes, reprBytesMaxLength, upperTransform, writeReprBytes } from 'echoplex';

// Python buffers stdout by blocks when it is not a terminal, and by lines when it is; a write
// system call per print() would cost more than the echo itself. Text is joined as a string and
// encoded a block at a time; bytes are written into the block as their repr() in ASCII, with
// no string in between. (Encoding each line on its own costs more: measured in the selectors
// port, whose lines are all text.)
const BLOCK_BYTES = 8192;
const lineBuffered = process.stdout.isTTY === true;
let block = Buffer.allocUnsafe(2 * BLOCK_BYTES);
let used = 0;
/** Text printed after the block's bytes, not yet encoded. */
let text = '';
let flushScheduled = false;

/** Encodes the pending text into the block: in one pass, into room for the worst case (3 bytes per UTF-16 unit). */
function encodeText(): void {
  if (text.length === 0) return;
  reserve(text.length * 3);
  used += block.write(text, used);
  text = '';
}

/** Writes out the block's bytes, if any. */
function writeBlock(): void {
  if (used === 0) return;
  // The stream may still hold the block after write() returns: the next lines go to a new one.
  process.stdout.write(block.subarray(0, used));
  block = Buffer.allocUnsafe(2 * BLOCK_BYTES);
  used = 0;
}

function flush(): void {
  flushScheduled = false;
  encodeText();
  writeBlock();
}
process.on('exit', flush);

/** Makes room for `bytes` more in the block, writing it out first if they would not fit. */
function reserve(bytes: number): void {
  if (used + bytes <= block.length) return;
  writeBlock();
  if (bytes > block.length) block = Buffer.allocUnsafe(bytes);
}

/** Python's print(): arguments as strings, separated by spaces; buffered as Python buffers it. */
export function print(...values: unknown[]): void {
  // The line's text so far: appended to the pending text once, or encoded before bytes.
  let line = '';
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    const end = i < values.length - 1 ? ' ' : '\n';
    if (Buffer.isBuffer(value)) {
      text += line;
      line = '';
      encodeText();
      reserve(reprBytesMaxLength(value.length) + 1);
      used = writeReprBytes(value, block, used);
      block[used++] = end === ' ' ? 0x20 : 0x0a;
    } else {
      line += String(value) + end;
    }
  }
  text += values.length === 0 ? '\n' : line;
  if (lineBuffered || used + text.length >= BLOCK_BYTES) flush();
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

let reader: readline.Interface | undefined;
let lines: AsyncIterableIterator<string> | undefined;

/**
 * Python's input(prompt), awaited. Resolves null at end of input where Python raises EOFError.
 * The prompt is shown on a terminal only, so piped output holds just the replies. On a terminal
 * readline edits the line itself, as `echoplex client` does: the terminal's own line editing
 * would cut every line at 4095 characters.
 */
export async function input(prompt: string): Promise<string | null> {
  if (reader === undefined) {
    reader = readline.createInterface({
      input: process.stdin,
      output: process.stdout,
      terminal: process.stdin.isTTY === true,
    });
    lines = reader[Symbol.asyncIterator]();
  }
  if (process.stdin.isTTY) {
    reader.setPrompt(prompt);
    reader.prompt();
  }
  const next = await lines!.next();
  return next.done ? null : next.value;
}

/** Python's sys.exit(status): what was printed goes out, the terminal is given back, the program ends. */
export function exit(status = 0): never {
  reader?.close();
  flush();
  process.exit(status);
}
