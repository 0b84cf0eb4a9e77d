// The least a Node program can do per echoed message, as a peer: libuv's TCP handles through
// process.binding (internal to Node; echoplex itself never uses it), one shared read buffer, a
// copy per read, a write per read. No limits, counters, backpressure or shutdown: a floor to
// measure against, not a server to deploy. Usage: node node-raw-echo.mjs PORT
/* eslint-disable no-restricted-properties -- a reference peer measuring JavaScript's floor, not echoplex code */
const { TCP, constants } = process.binding('tcp_wrap');
const { WriteWrap, streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = process.binding('stream_wrap');
/* eslint-enable no-restricted-properties */

const readBuffer = Buffer.allocUnsafe(64 * 1024);
// A write the kernel takes at once leaves its request unbound, so it can carry the next one.
let request = new WriteWrap();
const ignoreCompletion = () => {};

function onRead() {
  const nread = streamBaseState[kReadBytesOrError];
  if (nread < 0) return this.close();
  if (nread === 0) return;
  // Copied: a write libuv finishes later still points at its bytes.
  const reply = Buffer.from(readBuffer.subarray(0, nread));
  request.handle = this;
  request.oncomplete = ignoreCompletion;
  if (this.writeBuffer(request, reply) < 0) return this.close();
  if (streamBaseState[kLastWriteWasAsync]) {
    request.buffer = reply;
    request = new WriteWrap();
  }
}

const server = new TCP(constants.SERVER);
const port = Number(process.argv[2] ?? 1234);
if (server.bind('127.0.0.1', port) < 0 || server.listen(511) < 0) throw new Error(`cannot listen on ${port}`);
server.onconnection = (status, handle) => {
  if (status < 0) return;
  handle.setNoDelay(true);
  handle.useUserBuffer(readBuffer);
  handle.onread = onRead;
  handle.readStart();
};
console.log(`listening ${port}`);
