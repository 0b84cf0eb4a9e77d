// The seed's selectors server (port 1234), ported statement by statement to echoplex/selectors.
// Fixes are marked "seed flaw:". Run: npm run selectors-server -- [port]

import {
  DefaultSelector,
  EVENT_READ,
  EVENT_WRITE,
  socket,
  BlockingIOError,
  OSError,
  type Address,
  type Socket,
} from 'echoplex/selectors';
import { portArgument, print, repr } from './lib/python.js';

type Callback = (sock: Socket, mask: number) => void;

const sel = new DefaultSelector<Callback>();
// seed flaw: conn.send(data) "Hope it won't block" drops whatever a partial send did not take.
// Bytes not yet sent wait here, and the connection is watched for WRITE instead of READ until
// they are out, which also stops a client that never reads from growing our memory.
const unsent = new Map<Socket, Buffer>();

function accept(sock: Socket, _mask: number): void {
  // seed flaw: one accept() per readiness event makes a burst of new clients wait a pass each;
  // take every connection that is waiting.
  for (;;) {
    let accepted: [Socket, Address];
    try {
      accepted = sock.accept();
    } catch (err) {
      if (err instanceof BlockingIOError) return;
      throw err;
    }
    const [conn, addr] = accepted;
    print('accepted', conn, 'from', `('${addr[0]}', ${addr[1]})`);
    conn.setblocking(false);
    sel.register(conn, EVENT_READ, read);
  }
}

function read(conn: Socket, _mask: number): void {
  try {
    const data = conn.recv(1000);
    if (data.length > 0) {
      print('echoing', repr(data), 'to', conn);
      sendOrQueue(conn, data);
    } else {
      print('Client closed.', conn);
      sel.unregister(conn);
      conn.close();
    }
  } catch (err) {
    if (!(err instanceof OSError)) throw err; // ConnectionResetError and its kin
    print('Client forcibly closed.', conn);
    sel.unregister(conn);
    conn.close();
  }
}

function write(conn: Socket, _mask: number): void {
  try {
    sendOrQueue(conn, unsent.get(conn)!);
  } catch (err) {
    // seed flaw: a peer that resets while we still owe it bytes raised out of the loop.
    print('Client forcibly closed.', conn);
    unsent.delete(conn);
    sel.unregister(conn);
    conn.close();
  }
}

function sendOrQueue(conn: Socket, data: Buffer): void {
  // A full send buffer raises BlockingIOError: nothing was sent, all of it waits.
  let sent = 0;
  try {
    sent = conn.send(data);
  } catch (err) {
    if (!(err instanceof BlockingIOError)) throw err;
  }
  if (sent < data.length) {
    if (!unsent.has(conn)) sel.modify(conn, EVENT_WRITE, write);
    unsent.set(conn, data.subarray(sent));
  } else if (unsent.delete(conn)) {
    sel.modify(conn, EVENT_READ, read);
  }
}

const sock = socket();
sock.bind(['localhost', portArgument(1234)]);
await sock.listen(100);
sock.setblocking(false);
sel.register(sock, EVENT_READ, accept);
// seed flaw: none here, but note what changed underneath: DefaultSelector has no 1024-socket
// limit, and select() is awaited so the event loop can do the I/O it reports.
for (;;) {
  const events = await sel.select();
  for (const [key, mask] of events) {
    const callback = key.data!;
    callback(key.fileobj as Socket, mask);
  }
}
