// Event logging: one line per event, as text (like the seed's prints) or as JSON objects.

import { format } from 'node:util';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

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

  constructor(level: LogLevel = 'info', out: NodeJS.WritableStream = process.stderr) {
    this.#threshold = RANK[level];
    this.#out = out;
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
    this.#out.write(`${prefix}${message}\n`);
  }
}

/** A logger that drops everything: the library default, so embedding code stays silent. */
export const silentLogger: Logger = new TextLogger('silent');

/** Renders a value for a text log line the way Python's repr() would show bytes. */
export function describeBytes(chunk: Buffer, limit = 64): string {
  const shown = chunk.subarray(0, limit);
  let text = '';
  for (const byte of shown) {
    if (byte === 0x5c) text += '\\\\';
    else if (byte === 0x27) text += "\\'";
    else if (byte >= 0x20 && byte < 0x7f) text += String.fromCharCode(byte);
    else if (byte === 0x0a) text += '\\n';
    else if (byte === 0x0d) text += '\\r';
    else if (byte === 0x09) text += '\\t';
    else text += `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return format("b'%s'%s", text, chunk.length > limit ? `... (${chunk.length} bytes)` : '');
}
