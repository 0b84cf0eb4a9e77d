// Byte transforms the server applies to what it echoes back.

/**
 * Maps one received chunk to the bytes to send back.
 * It may return the same Buffer after changing it in place: the server owns each received chunk.
 */
export type Transform = (chunk: Buffer) => Buffer;

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
 */
export const upperTransform: Transform = (chunk) => {
  for (let i = 0; i < chunk.length; i++) {
    const byte = chunk[i]!;
    if (byte >= LOWER_A && byte <= LOWER_Z) chunk[i] = byte ^ CASE_BIT;
  }
  return chunk;
};

const BUILT_IN: Record<TransformName, Transform> = { echo: echoTransform, upper: upperTransform };

export function isTransformName(name: string): name is TransformName {
  return (TRANSFORM_NAMES as readonly string[]).includes(name);
}

export function builtInTransform(name: TransformName): Transform {
  return BUILT_IN[name];
}
