// A custom transform for `echoplex serve --transform ./examples/transforms/reverse.js --framing line`:
// each line comes back reversed, its newline kept at the end ("hello\n" -> "olleh\n").
// The default export receives a Buffer (a line in line mode, a chunk otherwise) and returns
// a Buffer, Uint8Array or string. It may change the Buffer in place. If it throws, only
// that connection is closed and the error is logged.

/** @type {import('echoplex').TransformModuleFunction} */
export default function reverse(line) {
  const end = line.at(-1) === 0x0a ? line.length - 1 : line.length;
  line.subarray(0, end).reverse();
  return line;
}
