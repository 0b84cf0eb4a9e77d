// Byte transforms the server applies to what it echoes back, built in or loaded from a module.

import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { UsageError } from '../core/errors.js';

/**
 * Maps one received chunk to the bytes to send back.
 * It may return the same Buffer after changing it in place: the server owns each received chunk.
 */
export type Transform = (chunk: Buffer) => Buffer;

/**
 * A transform as a user writes it (a library option, or a `--transform` module's default
 * export): a Uint8Array or a string (sent as UTF-8) will do as well as a Buffer.
 */
export type UserTransform = (chunk: Buffer) => Buffer | Uint8Array | string;

/** Thrown by a wrapped user transform that returned something other than bytes or a string. */
export class TransformResultError extends TypeError {
  readonly code = 'ERR_ECHOPLEX_TRANSFORM_RESULT';
  constructor(result: unknown) {
    super(`the transform returned ${describeValue(result)}; expected a Buffer, Uint8Array or string`);
    this.name = 'TransformResultError';
  }
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value instanceof Promise) return 'a Promise (transforms must be synchronous)';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return `an object (${value.constructor?.name ?? 'Object'})`;
  return typeof value === 'undefined' ? 'undefined' : `a ${typeof value}`;
}

/**
 * `user` as a Transform: its Uint8Arrays and strings become Buffers, and anything else throws a
 * TransformResultError, which closes only the connection it was answering.
 */
export function toTransform(user: UserTransform): Transform {
  return (chunk) => {
    const reply: unknown = user(chunk);
    if (Buffer.isBuffer(reply)) return reply;
    if (typeof reply === 'string') return Buffer.from(reply);
    if (reply instanceof Uint8Array) return Buffer.from(reply.buffer, reply.byteOffset, reply.byteLength);
    throw new TransformResultError(reply);
  };
}

export const TRANSFORM_NAMES = ['echo', 'upper'] as const;
export type TransformName = (typeof TRANSFORM_NAMES)[number];

/** Returns every byte unchanged (RFC 862 echo). */
export const echoTransform: Transform = (chunk) => chunk;

const LOWER_A = 0x61;
const LOWER_Z = 0x7a;
const CASE_BIT = 0x20;

/**
 * Uppercases ASCII a-z byte for byte, exactly like Python's `bytes.upper()`.
 * Every other byte, including each byte of a multi-byte UTF-8 sequence (all >= 0x80), passes
 * through, so binary data survives and a character split across two reads is never corrupted.
 * Works four bytes at a time (a SWAR test of each byte against a-z) on the aligned middle.
 */
export const upperTransform: Transform = (chunk) => {
  const length = chunk.length;
  let i = 0;
  // Bytes before the first 4-byte boundary, one at a time.
  const head = Math.min(length, (4 - (chunk.byteOffset & 3)) & 3);
  for (; i < head; i++) upperByteAt(chunk, i);
  const words = (length - i) >>> 2;
  if (words > 0) {
    const view = new Uint32Array(chunk.buffer, chunk.byteOffset + i, words);
    for (let w = 0; w < words; w++) view[w] = upperWord(view[w]!);
    i += words * 4;
  }
  for (; i < length; i++) upperByteAt(chunk, i);
  return chunk;
};

function upperByteAt(chunk: Buffer, i: number): void {
  const byte = chunk[i]!;
  if (byte >= LOWER_A && byte <= LOWER_Z) chunk[i] = byte ^ CASE_BIT;
}

/**
 * For each byte b of x: flips the case bit when 0x61 <= b <= 0x7a. Adding to the low seven
 * bits of each byte sets its top bit when b >= 'a' (+0x1f) and when b > 'z' (+0x05), with no
 * carry between bytes; bytes >= 0x80 are excluded by `~x`. Byte order does not matter.
 */
function upperWord(x: number): number {
  const low7 = x & 0x7f7f7f7f;
  const atLeastA = low7 + 0x1f1f1f1f;
  const aboveZ = low7 + 0x05050505;
  const isLower = (atLeastA ^ aboveZ) & ~x & 0x80808080;
  return (x ^ (isLower >>> 2)) >>> 0;
}

const BUILT_IN: Record<TransformName, Transform> = { echo: echoTransform, upper: upperTransform };

export function isTransformName(name: string): name is TransformName {
  return (TRANSFORM_NAMES as readonly string[]).includes(name);
}

export function builtInTransform(name: TransformName): Transform {
  return BUILT_IN[name];
}

/**
 * The default export of a transform module: receives each chunk (each line in line mode) and
 * returns the bytes to send back. It may change the chunk in place and return it.
 */
export type TransformModuleFunction = UserTransform;

/**
 * Loads `--transform ./my-transform.js`: a module whose default export is a
 * `TransformModuleFunction`. Strings it returns are sent as UTF-8. `flag` names the option in
 * errors (the bench loads the same modules for `--expect`).
 */
export async function loadTransformModule(path: string, flag = '--transform'): Promise<Transform> {
  const url = pathToFileURL(resolve(path)).href;
  let module: { default?: unknown };
  try {
    module = (await import(url)) as { default?: unknown };
  } catch (err) {
    // Node's message names the module that imported it (ours, in dist/): the user's path is enough.
    const missing = (err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND';
    throw new UsageError(`${flag}: cannot load ${path}: ${missing ? 'no such file' : (err as Error).message}`);
  }
  const fn = module.default;
  if (typeof fn !== 'function')
    throw new UsageError(`${flag}: ${path} has no default export function (export default (chunk) => chunk)`);
  return toTransform(fn as UserTransform);
}

/** A transform given on the command line: a built-in name, or a path to a module (has a `/` or ends in .js/.mjs). */
export function isTransformPath(value: string): boolean {
  return value.includes('/') || /\.(c|m)?js$/.test(value);
}

/**
 * A reply computed by a transform of your own, such as the module given to `echoplex serve
 * --transform`: applied to one message, it must give that message's reply (true of byte-for-byte
 * transforms, and of line transforms when every message is a line).
 */
export interface CustomExpectation {
  /** How reports name it, e.g. the module's path. */
  label: string;
  transform: Transform;
}
