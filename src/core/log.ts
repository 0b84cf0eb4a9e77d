// Event logging: one line per event, like the seed's prints; any pino-style logger plugs in.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

/** Structured fields attached to an event: connection id, peer, bytes, reason... */
export type LogFields = Record<string, unknown>;

/**
 * The logging surface the server needs; pino's loggers satisfy it as they are, so a caller can
 * pass one in. `enabled(level)` lets the hot path skip building fields nobody will see.
 */
export interface Logger {
  debug(fields: LogFields, message: string): void;
  info(fields: LogFields, message: string): void;
  warn(fields: LogFields, message: string): void;
  error(fields: LogFields, message: string): void;
  isLevelEnabled(level: Exclude<LogLevel, 'silent'>): boolean;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** Writes the human message, one line per event, to a stream (stderr by default). */
export class TextLogger implements Logger {
  readonly #threshold: number;
  readonly #out: NodeJS.WritableStream;
  readonly #tag: string;

  /** `tag` starts every line, e.g. `[worker 2] ` so that several processes' lines can be told apart. */
  constructor(level: LogLevel = 'info', out: NodeJS.WritableStream = process.stderr, tag = '') {
    this.#threshold = RANK[level];
    this.#out = out;
    this.#tag = tag;
  }

  isLevelEnabled(level: Exclude<LogLevel, 'silent'>): boolean {
    return RANK[level] >= this.#threshold;
  }

  debug(fields: LogFields, message: string): void {
    this.#write('debug', fields, message);
  }
  info(fields: LogFields, message: string): void {
    this.#write('info', fields, message);
  }
  warn(fields: LogFields, message: string): void {
    this.#write('warn', fields, message);
  }
  error(fields: LogFields, message: string): void {
    this.#write('error', fields, message);
  }

  #write(level: Exclude<LogLevel, 'silent'>, _fields: LogFields, message: string): void {
    if (RANK[level] < this.#threshold) return;
    const prefix = level === 'info' || level === 'debug' ? '' : `${level}: `;
    this.#out.write(`${this.#tag}${prefix}${message}\n`);
  }
}

/** A logger that drops everything: the library default, so embedding code stays silent. */
export const silentLogger: Logger = new TextLogger('silent');

/** Python's repr() of bytes, e.g. `b'hello\\n'`: how the seed's prints show data. */
export function reprBytes(bytes: Uint8Array): string {
  if (reprScratch.length < reprBytesMaxLength(bytes.length))
    reprScratch = Buffer.allocUnsafe(reprBytesMaxLength(bytes.length));
  // Written as ASCII bytes and decoded once: a string per byte would cost more than the echo.
  return reprScratch.toString('latin1', 0, writeReprBytes(bytes, reprScratch, 0));
}

/** The most bytes reprBytes can write for `length` bytes: \xNN for each, b and two quotes. */
export function reprBytesMaxLength(length: number): number {
  return length * 4 + 3;
}

/**
 * reprBytes written as ASCII into `out` at `at` (room for reprBytesMaxLength is the caller's
 * to make); returns where it ended. For output built as bytes, with no string in between.
 */
export function writeReprBytes(bytes: Uint8Array, out: Uint8Array, at: number): number {
  // Python picks double quotes when the bytes hold a ' but no ", so the ' needs no escape.
  const quote = bytes.includes(0x27) && !bytes.includes(0x22) ? 0x22 : 0x27;
  out[at++] = 0x62; // b
  out[at++] = quote;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (byte >= 0x20 && byte < 0x7f && byte !== 0x5c && byte !== quote) {
      out[at++] = byte;
      continue;
    }
    out[at++] = 0x5c; // backslash
    const short = SHORT_ESCAPE[byte]!;
    if (short !== 0) {
      out[at++] = short;
    } else {
      out[at++] = 0x78; // x
      out[at++] = HEX_DIGIT[byte >> 4]!;
      out[at++] = HEX_DIGIT[byte & 15]!;
    }
  }
  out[at++] = quote;
  return at;
}

let reprScratch = Buffer.allocUnsafe(4 * 1024);
const HEX_DIGIT = Buffer.from('0123456789abcdef', 'latin1');
/** The letter after the backslash for bytes with a short escape, 0 for \xNN. */
const SHORT_ESCAPE = new Uint8Array(256);
for (const [byte, letter] of [
  [0x5c, '\\'],
  [0x0a, 'n'],
  [0x0d, 'r'],
  [0x09, 't'],
  [0x27, "'"],
] as const) {
  SHORT_ESCAPE[byte] = letter.charCodeAt(0);
}

/** reprBytes of at most `limit` bytes, noting the full length when cut: for log lines. */
export function describeBytes(chunk: Buffer, limit = 64): string {
  const shown = reprBytes(chunk.subarray(0, limit));
  return chunk.length > limit ? `${shown}... (${chunk.length} bytes)` : shown;
}

export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
export const LOG_LEVEL_NAMES: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

/**
 * `text`: the human lines above. `json`: one JSON object per event via pino, written
 * asynchronously so logging never blocks the event loop under load (loaded only when asked).
 */
export async function createLogger(format: LogFormat, level: LogLevel, worker?: number): Promise<Logger> {
  if (format === 'text')
    return new TextLogger(level, process.stderr, worker === undefined ? '' : `[worker ${worker}] `);
  const { pino, destination } = await import('pino');
  const base = { pid: process.pid, ...(worker !== undefined && { worker }) };
  const logger: Logger = pino(
    { level, base, timestamp: pino.stdTimeFunctions.isoTime },
    destination({ fd: 2, sync: false }),
  );
  return logger;
}
